"""agent3d: can a language model, reading a point cloud as text, point at the defect?

The names a script needs, imported on first use (``import agent3d`` stays light):
:func:`read_cloud`, :class:`PointCloud`, :class:`DetectConfig`, :class:`BackendConfig`, :func:`detect`,
:class:`Detection`, :func:`evaluate`, :func:`evaluate_budgets`, :func:`summary_frame`, :func:`build_scorer`,
:class:`InputError`, :class:`DefectSpec` (see :mod:`agent3d.api` and the documentation, "Python API").
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agent3d")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {"read_cloud": "agent3d.io", "PointCloud": "agent3d.cloud", "Detection": "agent3d.cloud",
            "DetectConfig": "agent3d.config", "BackendConfig": "agent3d.config", "detect": "agent3d.api",
            "evaluate": "agent3d.api", "evaluate_budgets": "agent3d.api", "summary_frame": "agent3d.api",
            "build_scorer": "agent3d.scoring", "InputError": "agent3d.file_checks", "DefectSpec": "agent3d.spec"}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agent3d' has no attribute {name!r}")
