"""Labeled data on demand: synthetic defects planted on clean scans.

Defect models (sizes relative to the bounding-box diagonal D of the source; label = the points a
defect moved, added, or bordered):

- ``bulge`` / ``dent``: smooth displacement along the centre's normal, outwards / inwards, height
  ``depth * D`` with a (1 - (d/r)^2)^2 profile inside radius ``radius * D``; Anomaly-ShapeNet's
  bulge / concavity (Li et al., NeurIPS 2023) and Real3D-AD's bulge / sink (Liu et al., NeurIPS 2023).
- ``crack``: a groove ``width * D`` wide and ``depth * D`` deep (V profile) along a random walk on the
  surface of length ``length * D``; Anomaly-ShapeNet's crack.
- ``scratch``: the same groove, half as wide, a quarter as deep, 1.5x longer; MVTec 3D-AD-like surface scratches.
- ``hole``: points within ``radius * D`` removed, the ring up to 1.3x that radius labeled; Anomaly-ShapeNet's hole.
- ``contamination``: a blob of extra points (a hemisphere shell of radius ``radius * D / 2``) resting on
  the surface; MVTec 3D-AD's contamination. The added points are labeled.

Every sample, normal or not, is then given sensor-like Gaussian noise (``noise`` x the median point
spacing) and a random rigid pose, and written in the labeled-folder layout of docs/design.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from agent3d.geometry import local_geometry, median_spacing, open3d_serial
from agent3d.cloud import MIN_POINTS
from agent3d.file_checks import InputError, check_file
from agent3d.io import CLOUD_EXTENSIONS, read_cloud
from agent3d.outputs import check_output, staged_folder, write_json

DEFECTS = ("bulge", "dent", "crack", "scratch", "hole", "contamination")
MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off")


@dataclass
class DefectParams:
    """Sizes of a defect, as fractions of the bounding-box diagonal.

    Attributes
    ----------
    radius : float, default 0.06
        Bulge, dent, hole and contamination radius.
    depth : float, default 0.012
        Bulge and dent height, crack depth.
    width : float, default 0.03
        Crack width (a scratch is half as wide).
    length : float, default 0.25
        Crack length.
    """

    radius: float = 0.06
    depth: float = 0.012
    width: float = 0.03
    length: float = 0.25


def load_surface(source: str | Path, n_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points and unit normals of a source: a mesh sampled uniformly by area, or a point cloud.

    Parameters
    ----------
    source : str or Path
        ``.obj .ply .stl .off`` mesh (open3d ``sample_points_uniformly``), or any cloud
        :func:`agent3d.io.read_cloud` reads (subsampled to ``n_points`` if larger).
    n_points : int
    seed : int, default 0

    Returns
    -------
    points : ndarray of shape (n, 3), float64
    normals : ndarray of shape (n, 3), float64

    Raises
    ------
    InputError
        Unreadable source, or a mesh with faces outside its vertices (:func:`check_mesh`).
    """
    import open3d as o3d

    source = check_file(source)
    if source.suffix.lower() in MESH_EXTENSIONS:
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        mesh = o3d.io.read_triangle_mesh(str(source))
        if len(mesh.triangles):
            check_mesh(source, np.asarray(mesh.vertices), np.asarray(mesh.triangles))
            with open3d_serial(seed):
                sampled = mesh.sample_points_uniformly(number_of_points=n_points)
            points = np.asarray(sampled.points)
            return points, local_geometry(points, np.arange(len(points))).normals
        if source.suffix.lower() not in CLOUD_EXTENSIONS:
            raise InputError(source, f"no triangles could be read (not a valid {source.suffix.lower()[1:].upper()} mesh)")
    points = read_cloud(source).points
    if len(points) > n_points:
        points = points[np.sort(np.random.default_rng(seed).choice(len(points), n_points, replace=False))]
    return points, local_geometry(points, np.arange(len(points))).normals


def check_mesh(source: Path, vertices: np.ndarray, triangles: np.ndarray) -> None:
    """Refuse a mesh whose faces name vertices it does not have (open3d reads negative or too large OFF/OBJ
    indices as they are, and sampling them reads memory outside the vertex array) or whose vertices are not
    finite.

    Parameters
    ----------
    source : Path
    vertices : ndarray of shape (n_vertices, 3), float64
    triangles : ndarray of shape (n_triangles, 3), int32

    Raises
    ------
    InputError
    """
    bad = (triangles < 0) | (triangles >= len(vertices))
    if bad.any():
        face = int(np.argmax(bad.any(axis=1)))
        raise InputError(source, f"face {face} names vertex {int(triangles[bad][0])}; the mesh has "
                                 f"{len(vertices)} vertices (0 to {len(vertices) - 1})")
    if not np.isfinite(vertices).all():
        raise InputError(source, f"{int((~np.isfinite(vertices).all(axis=1)).sum())} vertices have NaN or "
                                 "infinite coordinates")


def bump(points, normals, centre, radius, height) -> tuple[np.ndarray, np.ndarray]:
    """Smooth displacement by ``height`` (negative: a dent) along the centre's normal within ``radius``."""
    distance = np.linalg.norm(points - points[centre], axis=1)
    inside = distance < radius
    moved = points.copy()
    moved[inside] += (height * (1 - (distance[inside] / radius) ** 2) ** 2)[:, None] * normals[centre]
    return moved, inside.astype(np.uint8)


def groove(points, normals, centre, length, width, depth, rng) -> tuple[np.ndarray, np.ndarray]:
    """A V-shaped groove along a random walk on the surface starting at ``centre``."""
    tree = cKDTree(points)
    step = width / 2
    position, direction, path = points[centre], np.cross(normals[centre], rng.normal(size=3)), []
    for _ in range(max(2, int(length / step))):
        nearest = tree.query(position)[1]
        path.append(points[nearest])
        normal = normals[nearest]
        direction = direction - direction.dot(normal) * normal + 0.3 * rng.normal(size=3) * np.linalg.norm(direction)
        direction -= direction.dot(normal) * normal  # stay in the tangent plane
        direction /= np.linalg.norm(direction) + 1e-300
        position = points[nearest] + step * direction
    distance, _ = cKDTree(np.array(path)).query(points)
    inside = distance < width / 2
    moved = points.copy()
    moved[inside] -= (depth * (1 - distance[inside] / (width / 2)))[:, None] * normals[inside]
    return moved, inside.astype(np.uint8)


def hole(points, centre, radius) -> tuple[np.ndarray, np.ndarray]:
    """Remove the points within ``radius``; label the ring out to 1.3 x ``radius``."""
    distance = np.linalg.norm(points - points[centre], axis=1)
    keep = distance >= radius
    return points[keep], (distance[keep] < 1.3 * radius).astype(np.uint8)


def contamination(points, normals, centre, radius, spacing, rng) -> tuple[np.ndarray, np.ndarray]:
    """Add a half-ellipsoid blob of points resting on the surface at ``centre``; label the added points."""
    n_extra = max(16, int(2 * np.pi * (radius / 2) ** 2 / spacing**2))
    direction = rng.normal(size=(n_extra, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    along = direction @ normals[centre]
    direction -= 2 * np.minimum(along, 0)[:, None] * normals[centre]  # mirror into the outer half-space
    extra = points[centre] + 0.5 * radius * direction
    labels = np.r_[np.zeros(len(points), dtype=np.uint8), np.ones(n_extra, dtype=np.uint8)]
    return np.vstack([points, extra]), labels


def plant(kind: str, points: np.ndarray, normals: np.ndarray, params: DefectParams,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Plant one defect of ``kind`` at a random surface point.

    Parameters
    ----------
    kind : one of ``DEFECTS``
    points : ndarray of shape (n, 3), float64
    normals : ndarray of shape (n, 3), float64
    params : DefectParams
    rng : numpy.random.Generator

    Returns
    -------
    points : ndarray of shape (m, 3), float64
        Fewer points for ``hole``, more for ``contamination``.
    labels : ndarray of shape (m,), uint8
    record : dict
        The parameters used, in the source's units.

    Raises
    ------
    ValueError
        Unknown kind.
    """
    diagonal = float(np.linalg.norm(np.ptp(points, axis=0)))
    centre = int(rng.integers(len(points)))
    radius, depth = params.radius * diagonal, params.depth * diagonal
    record = {"type": kind, "centre": points[centre].tolist()}
    if kind in ("bulge", "dent"):
        out = bump(points, normals, centre, radius, depth if kind == "bulge" else -depth)
        record.update(radius=radius, height=depth if kind == "bulge" else -depth)
    elif kind in ("crack", "scratch"):
        narrow, shallow = (1.0, 1.0) if kind == "crack" else (0.5, 0.25)
        length = params.length * diagonal * (1.0 if kind == "crack" else 1.5)
        width = params.width * diagonal * narrow
        out = groove(points, normals, centre, length, width, depth * shallow, rng)
        record.update(length=length, width=width, depth=depth * shallow)
    elif kind == "hole":
        out = hole(points, centre, radius)
        record.update(radius=radius)
    elif kind == "contamination":
        out = contamination(points, normals, centre, radius, median_spacing(points), rng)
        record.update(radius=radius / 2)
    else:
        raise InputError("--defects", f"unknown defect '{kind}' (expected one of {', '.join(DEFECTS)})")
    record["n_labeled"] = int(out[1].sum())
    return out[0], out[1], record


def sensor_pose(points: np.ndarray, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Gaussian noise of ``noise`` x the median spacing, then a random rotation and a translation of up to
    half the diagonal."""
    sigma = noise * median_spacing(points)
    rotation = Rotation.random(random_state=int(rng.integers(2**31)))
    shift = rng.uniform(-0.5, 0.5, size=3) * float(np.linalg.norm(np.ptp(points, axis=0)))
    noisy = points + rng.normal(scale=sigma, size=points.shape)
    return rotation.apply(noisy) + shift, {"noise_sigma": sigma, "rotation_quat": rotation.as_quat().tolist(),
                                           "translation": shift.tolist()}


def make_dataset(source: str | Path, out: str | Path, n: int = 20, defects: tuple[str, ...] = DEFECTS[:5],
                 n_points: int = 20000, normal_fraction: float = 0.25, n_references: int = 3,
                 noise: float = 0.1, params: DefectParams | None = None, seed: int = 0) -> dict:
    """Write a labeled-folder dataset of synthetic defects on ``source``.

    Parameters
    ----------
    source : str or Path
        Clean mesh or point cloud.
    out : str or Path
        Output folder: ``NNN_KIND.txt`` (x y z label) test samples, ``references/ref_K.xyz``, ``manifest.json``.
    n : int, default 20
        Test samples; ``round(n * normal_fraction)`` of them are normal, the rest cycle through ``defects``.
    defects : tuple of str
    n_points : int, default 20000
        Points sampled per cloud (each sample is an independent sampling of the surface).
    normal_fraction : float, default 0.25
    n_references : int, default 3
    noise : float, default 0.1
        Sensor noise, in median point spacings.
    params : DefectParams, optional
    seed : int, default 0

    Returns
    -------
    dict
        The manifest (also written to ``out/manifest.json``).

    Raises
    ------
    ValueError
        Unknown defect or bad counts.
    InputError
        Unreadable source.
    """
    unknown = [d for d in defects if d not in DEFECTS]
    if unknown or not defects or n < 1:
        raise InputError("--defects/--n", f"defects must be among {', '.join(DEFECTS)} and n >= 1 "
                                          f"(got {', '.join(unknown) or n})")
    if n_points < MIN_POINTS or n_references < 0 or noise < 0 or not 0 <= normal_fraction <= 1:
        raise InputError("--n-points/--references/--noise", f"--n-points must be at least {MIN_POINTS}, "
                         f"--references and --noise at least 0 (got {n_points}, {n_references}, {noise})")
    params = params or DefectParams()
    if min(params.radius, params.depth, params.width, params.length) <= 0 or params.radius > 0.5:
        raise InputError("--radius/--depth/--width/--length", f"defect sizes must be positive and the radius at "
                                                              f"most 0.5 (got {params})")
    out = Path(out)
    check_output(out, folder=True, keep="manifest.json")
    load_surface(source, MIN_POINTS, seed)  # an unreadable source is refused before anything is written
    with staged_folder(out) as staging:
        return _write_dataset(source, staging, n, defects, n_points, normal_fraction, n_references, noise,
                              params, seed)


def _write_dataset(source, out: Path, n, defects, n_points, normal_fraction, n_references, noise, params,
                   seed) -> dict:
    (out / "references").mkdir()
    rng = np.random.default_rng(seed)
    n_normal = int(round(n * normal_fraction))
    kinds = ["good"] * n_normal + [defects[i % len(defects)] for i in range(n - n_normal)]
    samples = []
    for index, kind in enumerate(kinds):
        points, normals = load_surface(source, n_points, seed=int(rng.integers(2**31)))
        if kind == "good":
            labels, record = np.zeros(len(points), dtype=np.uint8), {"type": "good", "n_labeled": 0}
        else:
            points, labels, record = plant(kind, points, normals, params, rng)
        points, pose = sensor_pose(points, noise, rng)
        name = f"{index:03d}_{kind}.txt"
        np.savetxt(out / name, np.column_stack([points, labels]), fmt="%.6f %.6f %.6f %d")
        samples.append({"file": name, **record, **pose})
    references = []
    for k in range(n_references):
        points, _ = load_surface(source, n_points, seed=int(rng.integers(2**31)))
        points, pose = sensor_pose(points, noise, rng)
        np.savetxt(out / "references" / f"ref_{k}.xyz", points, fmt="%.6f")
        references.append({"file": f"references/ref_{k}.xyz", **pose})
    manifest = {"source": str(source), "seed": seed, "n": n, "n_points": n_points, "defects": list(defects),
                "normal_fraction": normal_fraction, "noise": noise, "params": asdict(params),
                "samples": samples, "references": references}
    write_json(out / "manifest.json", manifest)
    return manifest
