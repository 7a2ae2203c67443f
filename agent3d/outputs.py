"""Writing results: every file appears whole or not at all (a temporary file renamed into place), every output
location is checked before any work, and a command that fails leaves no half-written folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from agent3d.file_checks import InputError, writable_place


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Write ``obj`` as indented JSON, atomically (a temporary file renamed into place)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8), atomically."""
    atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_ply(path: str | os.PathLike, points: np.ndarray, fields: dict[str, np.ndarray]) -> None:
    """Write a binary PLY point cloud with per-point scalar fields, atomically.

    Parameters
    ----------
    path : str or Path
        Destination ``.ply`` file. Opens in open3d, CloudCompare and MeshLab.
    points : ndarray of shape (n_points, 3), float64
    fields : dict of str to ndarray of shape (n_points,)
        Scalar fields (e.g. ``anomaly_score``, ``suspect``, ``label``), written as float32.
    """
    import open3d as o3d

    cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(np.asarray(points, dtype=np.float64)))
    for name, values in fields.items():
        cloud.point[name] = o3d.core.Tensor(np.asarray(values, dtype=np.float32).reshape(-1, 1))

    def write(tmp: Path) -> None:
        if not o3d.t.io.write_point_cloud(str(tmp), cloud, write_ascii=False):
            raise OSError(f"{path}: open3d could not write the PLY file")

    atomic_write(Path(path), write)


def check_output(path: str | os.PathLike, folder: bool, keep: str | None = None) -> Path:
    """Check, before any work, that results can be written at ``path``.

    Parameters
    ----------
    path : str or Path
    folder : bool
        True for an output folder, False for an output file.
    keep : str, optional
        For a folder: a file whose presence marks an earlier result of the same command, which may
        be replaced; a folder holding other (not hidden) files without it is refused. ``None`` accepts any
        existing folder.

    Raises
    ------
    InputError
        A folder where a file is wanted or the reverse, a non-empty foreign folder, or a location that
        cannot be created or written.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise InputError(path, "exists and is a folder, a file is needed" if path.is_dir()
                         else "exists and is not a folder")
    if path.exists() and not folder and not path.is_file():
        raise InputError(path, "exists and is not a regular file (a FIFO, socket or device)")
    visible = [p for p in path.iterdir() if not p.name.startswith(".")] if folder and path.is_dir() else []
    if keep and visible and not (path / keep).exists():
        raise InputError(path, f"folder exists and holds other files (no {keep}); choose another --out")
    below = [path] if folder else []  # a file is written beside itself (replaced whole), a folder's files in it
    parent = next(p for p in [*below, *path.parents] if p.exists() or p == Path(p.anchor or "."))
    if parent.exists() and not parent.is_dir():
        raise InputError(parent, "is not a writable folder")
    if parent.exists():
        writable_place(parent, path)
    return path


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write into; renamed to ``out`` (replacing it) when the block
    ends without error, removed otherwise, so a failed command leaves nothing behind. A symbolic link to a folder is
    followed: the folder it names is replaced, the link stays.

    Raises
    ------
    InputError
        Nothing can be made beside ``out``.
    """
    out = out.resolve() if out.is_symlink() else out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    except OSError as error:
        raise InputError(out, f"cannot be written ({(error.strerror or 'error').lower()})") from None
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        os.chmod(out, 0o755)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place (mode 0644), so
    ``path`` appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # results are for sharing (mkstemp makes them private)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
