"""agent3d: can a language model, reading a point cloud as text, point at the defect?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agent3d")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
