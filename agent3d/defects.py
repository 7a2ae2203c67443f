"""What kind a defect is: raised (a bump), sunk (a pit) or flat, from geometry alone.

The signed displacement of a point is its height above a quadratic surface ``h = a + b u + c v + d u^2 + e u v +
f v^2`` fitted, by least squares in a local frame (PCA of the neighbourhood: normal and two tangents), to the points
around it — the local height-field fit of Moving Least Squares (Alexa et al., "Computing and rendering point set
surfaces", IEEE TVCG 2003), with the surface's normal oriented:

- a height field (a scanned sheet, a freeform surface seen from one side: most local normals within 60 degrees of
  the z axis): toward +z, the sensor's side;
- any other cloud (a closed object): away from the cloud's centroid.

A ground-truth region (a connected component of anomalous points, :func:`agent3d.evaluation.metrics.gt_regions`)
is fitted on the normal points around it, so the defect does not pull the surface toward itself; its
displacement is the signed mean of the quarter of its points displaced most, in point spacings
(:func:`agent3d.geometry.median_spacing`); |displacement| < 2 spacings is ``flat``. Without ground truth
(:func:`signed_displacement`) each point is fitted on a ring of neighbours (its nearest ``k_inner`` excluded), so a
defect up to that size stands out of its own fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from agent3d.evaluation.metrics import gt_regions, region_radius
from agent3d.geometry import median_spacing

KINDS = ("raised", "sunk", "flat")
FLAT_SPACINGS = 2.0  # |displacement| below this many point spacings: flat
HEIGHT_FIELD_SHARE = 0.9  # share of local normals within 60 degrees of z that makes a cloud a height field


@dataclass(frozen=True)
class DefectRegion:
    """One ground-truth region and its kind.

    Attributes
    ----------
    region : int
        Its id in :func:`agent3d.evaluation.metrics.gt_regions`.
    n_points : int
    kind : {"raised", "sunk", "flat"}
    displacement : float
        Signed, in point spacings (positive: out of the surface, along the oriented normal).
    radius : float
        Largest distance of its points from its centroid, in point spacings.
    """

    region: int
    n_points: int
    kind: str
    displacement: float
    radius: float


def is_height_field(points: np.ndarray, k: int = 16, n_probe: int = 2048, seed: int = 0) -> bool:
    """Whether most local normals of ``points`` (ndarray of shape (n, 3), float64) lie within 60 degrees of z."""
    tree = cKDTree(points)
    probe = np.random.default_rng(seed).choice(len(points), size=min(n_probe, len(points)), replace=False)
    _, neighbours = tree.query(points[probe], k=min(k, len(points)), workers=-1)
    normals = _frames(points[neighbours])[:, 2]
    return float(np.mean(np.abs(normals[:, 2]) > 0.5)) >= HEIGHT_FIELD_SHARE


def region_kinds(points: np.ndarray, labels: np.ndarray, spacing: float | None = None) -> tuple[np.ndarray,
                                                                                                  list[DefectRegion]]:
    """Every ground-truth region of a labelled cloud with its kind, displacement and radius.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    labels : ndarray of shape (n_points,), {0, 1}
    spacing : float, optional
        Point spacing in the cloud's units; :func:`agent3d.geometry.median_spacing` by default.

    Returns
    -------
    regions : ndarray of shape (n_points,), int64
        Region id per point (-1: normal), as :func:`agent3d.evaluation.metrics.gt_regions` with the metrics' radius.
    defects : list of DefectRegion
        One per region id, in id order.
    """
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    spacing = spacing or median_spacing(points)
    regions = gt_regions(points, labels, region_radius(points))
    normal = np.flatnonzero(~labels)
    normal_tree = cKDTree(points[normal])
    height_field, centroid = is_height_field(points), points.mean(axis=0)
    defects = []
    for region in range(regions.max() + 1):
        members = points[regions == region]
        centre = members.mean(axis=0)
        extent = float(np.linalg.norm(members - centre, axis=1).max())
        k = int(min(len(normal), max(64, 4 * len(members))))
        _, ring = normal_tree.query(centre, k=k)
        heights = _heights(points[normal[ring]], members, height_field, centroid)
        top = heights[np.argsort(-np.abs(heights))[:max(1, len(heights) // 4)]]
        displacement = float(top.mean()) / spacing
        kind = "flat" if abs(displacement) < FLAT_SPACINGS else "raised" if displacement > 0 else "sunk"
        defects.append(DefectRegion(region, len(members), kind, displacement, extent / spacing))
    return regions, defects


def signed_displacement(points: np.ndarray, query: np.ndarray, k_inner: int = 48, k_outer: int = 192,
                        spacing: float | None = None) -> np.ndarray:
    """Signed height of each queried point above the surface fitted to its ring of neighbours, in point spacings.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    query : ndarray of shape (n_query,), int64
        Indices of the points to measure.
    k_inner, k_outer : int, default 48 and 192
        The ring: neighbours ``k_inner`` to ``k_outer`` by distance (the nearest ones, which a defect of up to about
        ``k_inner`` points would fill, are left out of the fit).
    spacing : float, optional
        :func:`agent3d.geometry.median_spacing` by default.

    Returns
    -------
    ndarray of shape (n_query,), float64
        Positive out of the surface (toward +z for a height field, away from the centroid otherwise).
    """
    points = np.asarray(points, dtype=np.float64)
    query = np.asarray(query, dtype=np.int64)
    spacing = spacing or median_spacing(points)
    k_outer = min(k_outer, len(points))
    _, neighbours = cKDTree(points).query(points[query], k=k_outer, workers=-1)
    height_field, centroid = is_height_field(points), points.mean(axis=0)
    heights = np.empty(len(query))
    for start in range(0, len(query), 4096):  # bounded memory: (block, k, 6) design matrices
        block = slice(start, start + 4096)
        ring = points[neighbours[block, min(k_inner, k_outer - 10):]]
        frames = _oriented(_frames(ring), ring.mean(axis=1), height_field, centroid)
        heights[block] = _fit_heights(ring, points[query[block], None], frames)[:, 0]
    return heights / spacing


def dominant_displacement(points: np.ndarray, displacement: np.ndarray, k: int = 32) -> np.ndarray:
    """Per point, the signed displacement of largest magnitude among its ``k`` nearest neighbours (itself
    included): the rim of a bump, which its own fit sees as level or slightly below, takes the sign of the bump's top.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    displacement : ndarray of shape (n_points,), float64
        :func:`signed_displacement` of every point.
    k : int, default 32

    Returns
    -------
    ndarray of shape (n_points,), float64
    """
    _, neighbours = cKDTree(points).query(points, k=min(k, len(points)), workers=-1)
    values = displacement[neighbours]
    return values[np.arange(len(points)), np.argmax(np.abs(values), axis=1)]


def surface_displacement(points: np.ndarray) -> np.ndarray:
    """Every point's :func:`dominant_displacement` of the :func:`signed_displacement` of all points (default sizes):
    what guidance weights by (:mod:`agent3d.guidance`). ndarray of shape (n_points,), float64, point spacings."""
    return dominant_displacement(points, signed_displacement(points, np.arange(len(points))))


def _frames(neighbourhoods: np.ndarray) -> np.ndarray:
    """Per neighbourhood (m, k, 3): rows u, v, n of a PCA frame (shape (m, 3, 3)), n the smallest axis."""
    centred = neighbourhoods - neighbourhoods.mean(axis=1, keepdims=True)
    _, vectors = np.linalg.eigh(np.einsum("mki,mkj->mij", centred, centred))
    return np.stack([vectors[:, :, 2], vectors[:, :, 1], vectors[:, :, 0]], axis=1)


def _oriented(frames: np.ndarray, centres: np.ndarray, height_field: bool, centroid: np.ndarray) -> np.ndarray:
    """``frames`` with each normal flipped to +z (height field) or away from ``centroid``."""
    outward = np.tile([0.0, 0.0, 1.0], (len(frames), 1)) if height_field else centres - centroid
    flip = np.where(np.einsum("mi,mi->m", frames[:, 2], outward) < 0, -1.0, 1.0)
    frames = frames.copy()
    frames[:, 2] *= flip[:, None]
    return frames


def _heights(surface: np.ndarray, measured: np.ndarray, height_field: bool, centroid: np.ndarray) -> np.ndarray:
    """Heights of ``measured`` (m, 3) above the quadratic fitted to ``surface`` (k, 3), in the cloud's units."""
    frame = _oriented(_frames(surface[None]), surface.mean(axis=0)[None], height_field, centroid)
    return _fit_heights(surface[None], measured[None], frame)[0]


def _fit_heights(surfaces: np.ndarray, measured: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Heights of points above quadratics fitted by least squares (normal equations), batched: surfaces (m, k, 3),
    measured (m, p, 3), frames (m, 3, 3) with rows u, v, n; returns (m, p)."""
    origin = surfaces.mean(axis=1, keepdims=True)
    local = np.einsum("mki,mji->mkj", surfaces - origin, frames)
    points = np.einsum("mpi,mji->mpj", measured - origin, frames)
    design = _design(local)
    normal = np.einsum("mki,mkj->mij", design, design) + 1e-12 * np.eye(6)
    coefficients = np.linalg.solve(normal, np.einsum("mki,mk->mi", design, local[..., 2])[..., None])[..., 0]
    return points[..., 2] - np.einsum("mpi,mi->mp", _design(points), coefficients)


def _design(local: np.ndarray) -> np.ndarray:
    """Quadratic design matrix ``[1, u, v, u^2, u v, v^2]`` over the last axis of ``local`` (..., 3)."""
    u, v = local[..., 0], local[..., 1]
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)
