"""Reading point clouds and ground truth, writing results.

Readers accept ``.ply`` and ``.pcd`` (open3d), ``.obj`` vertices, text clouds
(``.xyz .txt .csv .pts``: whitespace or comma separated, optional header, optional fourth
column ``label``) and NumPy ``.npy`` / ``.npz``. Every problem with an input file raises
one :class:`InputError` naming the file and the reason. Writers are atomic: a result file
either appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from agent3d.cloud import MIN_POINTS, PointCloud

TEXT_EXTENSIONS = (".xyz", ".txt", ".csv", ".pts")
CLOUD_EXTENSIONS = (".ply", ".pcd", ".obj", ".npy", ".npz", *TEXT_EXTENSIONS)
_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2,
              "uint16": 2, "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4,
              "double": 8, "float64": 8}


class InputError(ValueError):
    """A file that cannot be used, with the file and the reason in one line.

    Parameters
    ----------
    path : str or Path
        The offending file.
    reason : str
        What is wrong with it, in a few words.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_cloud(path: str | os.PathLike) -> PointCloud:
    """Read a point cloud, with labels when the file carries them.

    Parameters
    ----------
    path : str or Path
        A ``.ply``, ``.pcd``, ``.obj``, ``.xyz``, ``.txt``, ``.csv``, ``.pts``, ``.npy`` or
        ``.npz`` file. Text files have 3 columns (x y z) or 4 (x y z label); ``.npy`` holds an
        array of shape (n, 3) or (n, 4); ``.npz`` holds ``points`` (or ``xyz``) and optionally
        ``labels``; a PLY vertex property ``label`` is read as labels.

    Returns
    -------
    PointCloud
        ``points`` of shape (n_points, 3), float64; ``labels`` of shape (n_points,), uint8 or None.

    Raises
    ------
    InputError
        Missing file, unknown extension, unreadable or truncated file, wrong column count,
        fewer than 16 points, non-finite coordinates, labels outside {0, 1}.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    ext = path.suffix.lower()
    if ext not in CLOUD_EXTENSIONS:
        raise InputError(path, f"unknown extension '{ext}' (expected one of {', '.join(CLOUD_EXTENSIONS)})")
    if ext in (".ply", ".pcd"):
        points, labels = _read_open3d(path)
    elif ext == ".obj":
        points, labels = _read_obj(path), None
    elif ext in (".npy", ".npz"):
        points, labels = _read_numpy(path)
    else:
        points, labels = _split_label_column(path, _read_table(path))
    return _validated(path, points, labels)


def read_references(paths: list[str | os.PathLike]) -> list[PointCloud]:
    """Read reference clouds of normal parts.

    Parameters
    ----------
    paths : list of str or Path
        Files, or folders whose cloud files (any extension of ``CLOUD_EXTENSIONS``) are all read,
        in sorted order.

    Returns
    -------
    list of PointCloud

    Raises
    ------
    InputError
        A path that does not exist, a folder with no cloud file, or any unreadable cloud.
    """
    clouds = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CLOUD_EXTENSIONS)
            if not files:
                raise InputError(path, "folder holds no point cloud file")
            clouds.extend(read_cloud(f) for f in files)
        else:
            clouds.append(read_cloud(path))
    return clouds


def read_gt(path: str | os.PathLike, points: np.ndarray) -> np.ndarray:
    """Read a ground-truth mask and match it to a cloud by nearest neighbour.

    Accepts the Real3D-AD ``gt/*.txt`` format (space separated ``x y z label``) and the
    Anomaly-ShapeNet ``GT/*.txt`` format (comma separated ``x,y,z,label``, rows in another
    order than the cloud). Each cloud point takes the label of its nearest GT row.

    Parameters
    ----------
    path : str or Path
        The GT file.
    points : ndarray of shape (n_points, 3), float64
        The cloud the mask belongs to.

    Returns
    -------
    labels : ndarray of shape (n_points,), uint8

    Raises
    ------
    InputError
        Unreadable file, not 4 columns, labels outside {0, 1}, or GT points farther than
        1 % of the bounding-box diagonal from the cloud (a GT of another cloud).
    """
    from scipy.spatial import cKDTree

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    table = _read_table(path)
    if table.shape[1] != 4:
        raise InputError(path, f"ground truth needs 4 columns (x y z label), found {table.shape[1]}")
    gt_points, gt_labels = _split_label_column(path, table)
    gt_points = _validated(path, gt_points, gt_labels).points
    distance, nearest = cKDTree(gt_points).query(points, workers=-1)
    diagonal = float(np.linalg.norm(np.ptp(points, axis=0)))
    if float(np.max(distance)) > 0.01 * diagonal:
        raise InputError(path, f"ground truth does not match the cloud (a point lies {np.max(distance):.4g} "
                               f"from the nearest GT row, diagonal {diagonal:.4g})")
    return gt_labels[nearest]


def read_ply_fields(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points and per-point scalar fields of a PLY file (e.g. a ``scores.ply`` written by ``detect``).

    Returns
    -------
    points : ndarray of shape (n, 3), float64
    fields : dict of str to ndarray of shape (n,)
        Every vertex property but the coordinates and normals.

    Raises
    ------
    InputError
        Missing, truncated or empty file.
    """
    import open3d as o3d

    path = Path(path)
    points, _ = _read_open3d(path) if path.is_file() else (None, None)
    if points is None:
        raise InputError(path, "no such file")
    cloud = o3d.t.io.read_point_cloud(str(path))
    fields = {key: cloud.point[key].numpy().reshape(len(points), -1)[:, 0]
              for key in cloud.point if key not in ("positions", "normals")}
    return points.astype(np.float64), fields


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Write ``obj`` as indented JSON, atomically (a temporary file renamed into place)."""
    _atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


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

    _atomic_write(Path(path), write)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _validated(path: Path, points: np.ndarray, labels: np.ndarray | None) -> PointCloud:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(path, f"expected points of shape (n, 3), got {points.shape}")
    if points.shape[0] == 0:
        raise InputError(path, "empty cloud (no points)")
    if points.shape[0] < MIN_POINTS:
        raise InputError(path, f"only {points.shape[0]} points, at least {MIN_POINTS} are needed")
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise InputError(path, f"{int(bad.sum())} points have NaN or infinite coordinates "
                               f"(first at row {int(np.argmax(bad))})")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (points.shape[0],):
            raise InputError(path, f"labels of shape {labels.shape} do not match {points.shape[0]} points")
        if not np.isin(labels, (0, 1)).all():
            odd = np.unique(labels[~np.isin(labels, (0, 1))])[:5]
            raise InputError(path, f"labels must be 0 or 1, found {', '.join(map(str, odd))}")
        labels = labels.astype(np.uint8)
    return PointCloud(points=points, labels=labels, source=str(path))


def _split_label_column(path: Path, table: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if table.shape[1] == 3:
        return table, None
    if table.shape[1] == 4:
        return table[:, :3], table[:, 3]
    raise InputError(path, f"expected 3 columns (x y z) or 4 (x y z label), found {table.shape[1]}")


_NUMBER = re.compile(r"^[\s,;]*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _read_table(path: Path) -> np.ndarray:
    """Numeric rows of a text file: optional header lines, whitespace or comma separated."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = [handle.readline() for _ in range(5)]
    except OSError as error:
        raise InputError(path, f"cannot read ({error.strerror})") from None
    skip = 0
    for line in head:
        if line and (not _NUMBER.match(line) or len(line.replace(",", " ").split()) == 1):
            skip += 1  # a header, or a .pts point count
        else:
            break
    data_line = head[skip] if skip < len(head) else ""
    if not data_line.strip():
        raise InputError(path, "empty cloud (no points)")
    delimiter = "," if "," in data_line else None
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise InputError(path, f"not a numeric table ({str(error).splitlines()[0]})") from None
    return table


def _read_obj(path: Path) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("v "):
                parts = line.split()
                try:
                    rows.append([float(v) for v in parts[1:4]])
                except ValueError:
                    raise InputError(path, f"bad vertex on line {number}") from None
                if len(parts) < 4:
                    raise InputError(path, f"vertex on line {number} has fewer than 3 coordinates")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _read_numpy(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(path, f"not a readable NumPy file ({error})") from None
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise InputError(path, f"expected an array of shape (n, 3) or (n, 4), got {data.shape}")
        return _split_label_column(path, data)
    with data:
        key = next((k for k in ("points", "xyz") if k in data.files), None)
        if key is None:
            raise InputError(path, f"no 'points' array in the archive (found: {', '.join(data.files)})")
        labels = data["labels"] if "labels" in data.files else None
        return data[key], labels


def _read_open3d(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import open3d as o3d

    if path.suffix.lower() == ".ply":
        _check_ply_size(path)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    cloud = o3d.t.io.read_point_cloud(str(path))
    if "positions" not in cloud.point:
        raise InputError(path, "empty cloud (no points)")
    points = cloud.point.positions.numpy().astype(np.float64)
    labels = cloud.point["label"].numpy().reshape(-1) if "label" in cloud.point else None
    return points, labels


def _check_ply_size(path: Path) -> None:
    """Raise InputError when a binary PLY holds fewer bytes than its header promises."""
    with open(path, "rb") as handle:
        if handle.readline().strip() != b"ply":
            raise InputError(path, "not a PLY file (no 'ply' magic line)")
        header = []
        while True:
            line = handle.readline()
            if not line:
                raise InputError(path, "PLY header has no end_header line")
            if line.strip() == b"end_header":
                break
            header.append(line.split())
        data_bytes = os.fstat(handle.fileno()).st_size - handle.tell()
    fmt = next((h[1] for h in header if h and h[0] == b"format"), b"")
    if fmt == b"ascii":
        return
    elements = []  # [count, bytes per item, has a list property]
    for words in header:
        if words and words[0] == b"element":
            elements.append([int(words[2]), 0, False])
        elif words and words[0] == b"property" and elements:
            if words[1] == b"list":
                elements[-1][2] = True
            else:
                elements[-1][1] += _PLY_SIZES.get(words[1].decode(), 0)
    needed = 0
    for count, stride, has_list in elements:
        if has_list:  # variable-size elements: only what precedes them can be checked
            break
        needed += count * stride
    if data_bytes < needed:
        raise InputError(path, f"truncated binary PLY ({data_bytes} bytes of data, header needs {needed})")
