"""Local geometry of a point cloud: normals, curvature, plane residual, density, surface variation (FPFH:
:mod:`agent3d.features`).

Every quantity uses k-nearest-neighbour neighbourhoods in the full cloud, so nothing depends on
the cloud's units. Computations are vectorized over points (batched 3x3 eigen-decompositions).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from agent3d.sampling import MAX_WORKING_POINTS, working_cloud

_OPEN3D = threading.RLock()


@contextmanager
def open3d_serial(seed: int | None = None) -> Iterator[None]:
    """Run the block as the process's only open3d computation, with its random generator seeded when ``seed`` is
    given. RANSAC (registration, plane fitting) and mesh sampling draw from one process-wide generator, and
    open3d's TBB reductions (ICP) are split differently while other threads' open3d work shares the pool: two
    threads at once consumed each other's draws, and a registration next to another thread's FPFH ended a few
    ICP iterations elsewhere (scores 0.1 % of their 99th percentile off). Serialized, every thread gets the serial
    result. Re-entrant."""
    import open3d as o3d

    with _OPEN3D:
        if seed is not None:
            o3d.utility.random.seed(seed)
        yield


FPFH_SCALES = (16, 32, 64)  # neighbours per scale for multi-scale FPFH
NORMAL_NEIGHBOURS = 16


@dataclass
class LocalGeometry:
    """Per-point summaries of the surface around each query point.

    Attributes
    ----------
    normals : ndarray of shape (n, 3), float64
        Unit normals (eigenvector of the smallest eigenvalue), oriented away from the cloud's centroid.
    curvature : ndarray of shape (n,), float64
        Surface variation lambda_0 / (lambda_0 + lambda_1 + lambda_2), in [0, 1/3]
        (Pauly, Gross & Kobbelt, IEEE Vis 2002).
    residual : ndarray of shape (n,), float64
        RMS distance of the neighbours to their best-fit plane divided by the mean neighbour
        distance (unit-free roughness).
    density : ndarray of shape (n,), float64
        Cloud-wide median neighbour distance divided by the local mean neighbour distance
        (> 1: more crowded than usual).
    """

    normals: np.ndarray
    curvature: np.ndarray
    residual: np.ndarray
    density: np.ndarray


def local_geometry(points: np.ndarray, query: np.ndarray, k: int = NORMAL_NEIGHBOURS, seed: int = 0,
                   tree: cKDTree | None = None) -> LocalGeometry:
    """Summaries for the query points, from their k nearest neighbours in the full cloud.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        The full cloud.
    query : ndarray of shape (n_query,), int64
        Indices of the points to summarise.
    k : int, default 16
        Neighbourhood size (the point itself included).
    seed : int, default 0
        Chooses the 4096 points on which the cloud-wide spacing for ``density`` is measured.
    tree : scipy.spatial.cKDTree, optional
        A tree over ``points`` to reuse.

    Returns
    -------
    LocalGeometry
        Arrays in the order of ``query``.
    """
    tree = tree or cKDTree(points)
    k = min(k, points.shape[0])
    distance, neighbours = tree.query(points[query], k=k, workers=-1)
    eigenvalues, eigenvectors = _local_pca(points[neighbours])
    normals = eigenvectors[:, :, 0]
    outward = np.sum(normals * (points[query] - points.mean(axis=0)), axis=1) < 0
    normals[outward] *= -1
    spacing = np.maximum(distance[:, 1:].mean(axis=1), 1e-300)
    rng = np.random.default_rng(seed)
    probe = rng.choice(points.shape[0], size=min(4096, points.shape[0]), replace=False)
    typical = float(np.median(tree.query(points[probe], k=k, workers=-1)[0][:, 1:].mean(axis=1)))
    return LocalGeometry(normals=normals, curvature=_variation(eigenvalues),
                         residual=np.sqrt(np.maximum(eigenvalues[:, 0], 0)) / spacing,
                         density=typical / spacing)


@dataclass
class CloudContext:
    """What the stages of one detection share about a cloud, computed once and only when first asked for: its
    k-d tree, median point spacing, bounding-box diagonal, and the local geometry of every sample (memoized).

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    seed : int, default 0
        Seeds the spacing probe and the geometry's density probe.

    Attributes
    ----------
    tree : scipy.spatial.cKDTree
    spacing : float
        Median nearest-neighbour distance, in the cloud's units.
    diagonal : float
        Bounding-box diagonal, in the cloud's units.
    """

    points: np.ndarray
    seed: int = 0

    def __post_init__(self):
        self._geometry: dict[bytes, LocalGeometry] = {}

    @cached_property
    def tree(self) -> cKDTree:
        return cKDTree(self.points)

    @cached_property
    def spacing(self) -> float:
        return median_spacing(self.points, self.tree, self.seed)

    @cached_property
    def diagonal(self) -> float:
        return float(np.linalg.norm(np.ptp(self.points, axis=0)))

    def geometry(self, indices: np.ndarray) -> LocalGeometry:
        """:func:`local_geometry` of ``indices`` (shape (n,), int64), computed once per distinct sample."""
        key = np.asarray(indices, dtype=np.int64).tobytes()
        if key not in self._geometry:
            self._geometry[key] = local_geometry(self.points, indices, seed=self.seed, tree=self.tree)
        return self._geometry[key]


def _local_pca(neighbourhoods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the covariance of each neighbourhood, eigenvalues ascending.

    neighbourhoods : (n, k, 3) -> eigenvalues (n, 3), eigenvectors (n, 3, 3) as columns.
    """
    centred = neighbourhoods - neighbourhoods.mean(axis=1, keepdims=True)
    covariance = np.einsum("nki,nkj->nij", centred, centred) / neighbourhoods.shape[1]
    return np.linalg.eigh(covariance)


def _variation(eigenvalues: np.ndarray) -> np.ndarray:
    """Surface variation lambda_0 / (lambda_0 + lambda_1 + lambda_2) of ascending eigenvalues (n, 3) -> (n,)."""
    return eigenvalues[:, 0] / np.maximum(eigenvalues.sum(axis=1), 1e-300)


def median_spacing(points: np.ndarray, tree: cKDTree | None = None, seed: int = 0, n_probe: int = 4096) -> float:
    """Median distance from a point to its nearest neighbour, measured on up to ``n_probe`` seeded points.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    tree : scipy.spatial.cKDTree, optional
        A tree over ``points`` to reuse.

    Returns
    -------
    float
        In the cloud's units.
    """
    tree = tree or cKDTree(points)
    probe = np.random.default_rng(seed).choice(points.shape[0], size=min(n_probe, points.shape[0]), replace=False)
    return float(np.median(tree.query(points[probe], k=2, workers=-1)[0][:, 1]))


def surface_variation(points: np.ndarray, k: int = 128, max_points: int = MAX_WORKING_POINTS, seed: int = 0,
                      chunk: int = 16384) -> np.ndarray:
    """Every point's surface variation over a wide neighbourhood: lambda_0 / (lambda_0 + lambda_1 + lambda_2) of its
    ``k`` nearest neighbours (Pauly, Gross & Kobbelt, IEEE Vis 2002), a cheap anomaly score of the whole cloud.

    Clouds above ``max_points`` are measured on their working cloud (:func:`agent3d.sampling.working_cloud`) with
    ``k`` scaled by its share of the points (the same neighbourhood in the cloud's units), and every point takes its
    nearest working point's value.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    k : int, default 128
        Neighbours at the cloud's full density.
    max_points : int, default 100000
    seed : int, default 0
        Of the working cloud.
    chunk : int, default 16384
        Points per batch (bounds memory: chunk x k x 3 float64).

    Returns
    -------
    ndarray of shape (n_points,), float64
        In [0, 1/3].
    """
    work = working_cloud(points, max_points, seed)
    sub = points[work]
    k = max(3, min(len(sub), int(round(k * len(sub) / len(points)))))
    tree = cKDTree(sub)
    variation = np.empty(len(sub))
    for start in range(0, len(sub), chunk):
        _, neighbours = tree.query(sub[start:start + chunk], k=k, workers=-1)
        eigenvalues, _ = _local_pca(sub[np.asarray(neighbours).reshape(-1, k)])
        variation[start:start + chunk] = _variation(eigenvalues)
    if len(sub) == len(points):
        return variation
    return variation[tree.query(points, workers=-1)[1]]
