"""Reading point clouds and ground truth.

Readers accept ``.ply`` and ``.pcd`` (open3d), ``.obj`` vertices, text clouds
(``.xyz .txt .csv .pts``: whitespace or comma separated, optional header, optional fourth
column ``label``) and NumPy ``.npy`` / ``.npz``. Every problem with an input file raises
one :class:`InputError` naming the file and the reason. Writers live in :mod:`agent3d.outputs`.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from agent3d.cloud import MIN_POINTS, PointCloud
from agent3d.file_checks import InputError, check_file, check_numpy_file, check_pcd, check_ply

TEXT_EXTENSIONS = (".xyz", ".txt", ".csv", ".pts")
ORGANIZED_EXTENSIONS = (".tiff", ".tif")
CLOUD_EXTENSIONS = (".ply", ".pcd", ".obj", ".npy", ".npz", *TEXT_EXTENSIONS, *ORGANIZED_EXTENSIONS)
MAX_COORDINATE = 1e12  # squared distances of larger coordinates lose all precision or overflow


def read_cloud(path: str | os.PathLike, remove_plane: bool = True) -> PointCloud:
    """Read a point cloud, with labels when the file carries them.

    Parameters
    ----------
    path : str or Path
        A ``.ply``, ``.pcd``, ``.obj``, ``.xyz``, ``.txt``, ``.csv``, ``.pts``, ``.npy`` or
        ``.npz`` file. Text files have 3 columns (x y z) or 4 (x y z label); ``.npy`` holds an
        array of shape (n, 3) or (n, 4); ``.npz`` holds ``points`` (or ``xyz``) and optionally
        ``labels``; a PLY vertex property ``label`` is read as labels; ``.tiff`` is an organized MVTec 3D-AD
        ``xyz`` image (:func:`agent3d.organized.read_organized`).
    remove_plane : bool, default True
        For organized clouds: drop the background plane.

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
    path = check_file(path)
    ext = path.suffix.lower()
    if ext not in CLOUD_EXTENSIONS:
        raise InputError(path, f"unknown extension '{ext}' (expected one of {', '.join(CLOUD_EXTENSIONS)})")
    if ext in (".ply", ".pcd"):
        points, labels = _read_open3d(path)
    elif ext == ".obj":
        points, labels = _read_obj(path), None
    elif ext in (".npy", ".npz"):
        points, labels = _read_numpy(path)
    elif ext in ORGANIZED_EXTENSIONS:
        from agent3d.organized import read_organized

        points, labels = read_organized(path, remove_plane=remove_plane).points, None
    else:
        points, labels = _split_label_column(path, _read_table(path))
    return _validated(path, points, labels)


def read_references(paths: list[str | os.PathLike], remove_plane: bool = True) -> list[PointCloud]:
    """Read reference clouds of normal parts.

    Parameters
    ----------
    paths : list of str or Path
        Files, or folders whose cloud files (any extension of ``CLOUD_EXTENSIONS``) are all read,
        in sorted order.
    remove_plane : bool, default True
        For organized clouds: drop the background plane.

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
            clouds.extend(read_cloud(f, remove_plane) for f in files)
        else:
            clouds.append(read_cloud(path, remove_plane))
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

    path = check_file(path)
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
        Missing, truncated or empty file; coordinates or fields that are not finite.
    """
    path = check_file(path)
    cloud = _open3d_cloud(path)
    points = _validated(path, cloud.point.positions.numpy(), None).points
    fields = {key: cloud.point[key].numpy().reshape(len(points), -1)[:, 0]
              for key in cloud.point if key not in ("positions", "normals")}
    for key, values in fields.items():
        if not np.isfinite(values).all():
            raise InputError(path, f"{int((~np.isfinite(values)).sum())} values of {key} are NaN or infinite")
    return points, fields


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
    largest = float(np.abs(points).max())
    if largest > MAX_COORDINATE:
        raise InputError(path, f"coordinates reach {largest:.3g}; at most {MAX_COORDINATE:.0e} is supported "
                               "(check the units)")
    if not np.ptp(points, axis=0).any():
        raise InputError(path, "all points coincide (a degenerate cloud)")
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
        with open(path, "rb") as handle:
            if b"\0" in handle.read(4096):
                raise InputError(path, "binary data, not a numeric text table")
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
        raise InputError(path, "empty cloud (no points)" if not "".join(head).strip()
                         else f"not a numeric table (no numeric row in the first {len(head)} lines)")
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
    check_numpy_file(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(path, f"not a readable NumPy file ({error})") from None
    if isinstance(data, np.ndarray):
        _check_dtype(path, data)
        if data.ndim != 2:
            raise InputError(path, f"expected an array of shape (n, 3) or (n, 4), got {data.shape}")
        return _split_label_column(path, data)
    with data:
        key = next((k for k in ("points", "xyz") if k in data.files), None)
        if key is None:
            raise InputError(path, f"no 'points' array in the archive (found: {', '.join(data.files)})")
        try:
            points, labels = data[key], (data["labels"] if "labels" in data.files else None)
        except (ValueError, OSError, EOFError, AttributeError, zipfile.BadZipFile) as error:  # pickles, damage
            raise InputError(path, f"unreadable array in the archive ({str(error).splitlines()[0]})") from None
    for array in (points, labels):
        if array is not None:
            _check_dtype(path, array)
    return points, labels


def _check_dtype(path: Path, array: np.ndarray) -> None:
    """Refuse arrays that are not real numbers (strings, objects, complex values, records)."""
    if not isinstance(array, np.ndarray):
        raise InputError(path, "an archive member is not a NumPy array")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == np.bool_):
        raise InputError(path, f"holds {array.dtype} values, expected real numbers")


def _read_open3d(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    cloud = _open3d_cloud(path)
    points = cloud.point.positions.numpy().astype(np.float64)
    labels = cloud.point["label"].numpy().reshape(-1) if "label" in cloud.point else None
    return points, labels


def _open3d_cloud(path: Path):
    """The file as an open3d tensor point cloud, its header checked against its data first (one read)."""
    import open3d as o3d

    (check_ply if path.suffix.lower() == ".ply" else check_pcd)(path)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    cloud = o3d.t.io.read_point_cloud(str(path))
    if "positions" not in cloud.point:
        raise InputError(path, "empty cloud (no points)")
    return cloud
