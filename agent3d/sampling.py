"""Choosing points: the ones the language model sees (voxel downsampling, farthest point sampling) and the working
cloud of a large scan that features are computed on.

Every sampler returns indices into the full cloud, so each sampled point keeps its identity.
"""

from __future__ import annotations

import numpy as np

from agent3d.base import SAMPLERS

MAX_WORKING_POINTS = 100_000


def working_cloud(points: np.ndarray, max_points: int = MAX_WORKING_POINTS, seed: int = 0) -> np.ndarray:
    """Indices of the points features are computed on: all of them, or for large scans a seeded
    uniform random subsample of ``max_points`` (features describe local shape, which a fifth of a
    dense scan still carries; O(n), unlike a voxel grid whose size must be searched for).

    Returns
    -------
    ndarray of shape (min(max_points, n_points),), int64, sorted
    """
    if len(points) <= max_points:
        return np.arange(len(points), dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(len(points), size=max_points, replace=False))


def farthest_point_sampling(points: np.ndarray, n_samples: int, seed: int = 0) -> np.ndarray:
    """Greedy farthest point sampling (FPS).

    Starts at a seeded random point, then repeatedly adds the point farthest from the
    points chosen so far (PointNet++: Qi et al., NeurIPS 2017). O(n_points * n_samples).

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    n_samples : int
        How many points to keep; all points are kept when ``n_samples >= n_points``.
    seed : int, default 0
        Chooses the first point.

    Returns
    -------
    indices : ndarray of shape (min(n_samples, n_points),), int64
        Indices into ``points``, in the order they were chosen.
    """
    n = points.shape[0]
    if n_samples >= n:
        return np.arange(n, dtype=np.int64)
    columns = [np.ascontiguousarray(points[:, axis], dtype=np.float64) for axis in range(3)]
    squared, difference = np.empty(n), np.empty(n)

    def squared_distance(chosen: int) -> np.ndarray:
        squared.fill(0.0)
        for axis in range(3):  # in-place arithmetic: no temporaries of shape (n, 3)
            np.subtract(columns[axis], points[chosen, axis], out=difference)
            np.multiply(difference, difference, out=difference)
            np.add(squared, difference, out=squared)
        return squared

    return farthest_first(n, n_samples, int(np.random.default_rng(seed).integers(n)), squared_distance)


def farthest_first(n: int, n_keep: int, first: int, distance_to, dtype=np.float64) -> np.ndarray:
    """Greedy farthest-first selection (Gonzalez's k-centre heuristic, 1985): start at ``first``, then repeatedly
    keep the item farthest from those kept so far. Farthest point sampling and the memory bank's coreset are
    this loop over two distances.

    Parameters
    ----------
    n : int
        Items to choose from.
    n_keep : int
        Items kept (at most ``n``).
    first : int
        The first item kept.
    distance_to : callable
        ``distance_to(i)`` -> ndarray of shape (n,): any monotone distance of every item to item ``i``.
    dtype : numpy dtype, default float64
        Of the running minimum distance.

    Returns
    -------
    ndarray of shape (n_keep,), int64
        Items in the order they were kept.
    """
    chosen = np.empty(n_keep, dtype=np.int64)
    chosen[0] = first
    distance = np.full(n, np.inf, dtype=dtype)
    for i in range(n_keep):
        if i:
            chosen[i] = int(np.argmax(distance))
        np.minimum(distance, distance_to(chosen[i]), out=distance)
    return chosen


def voxel_keys(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """One int64 key per point naming its voxel (edge ``voxel_size``, grid anchored at the minimum corner).

    Raises
    ------
    ValueError
        If ``voxel_size`` is not positive or the grid would have more than 2**62 cells.
    """
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    cells = np.floor((points - points.min(axis=0)) / voxel_size).astype(np.int64)
    dims = cells.max(axis=0) + 1
    if float(np.prod(dims.astype(np.float64))) > 2.0**62:
        raise ValueError(f"voxel_size {voxel_size:g} is too small for this cloud")
    return (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """One point per occupied voxel: the point nearest the voxel's centroid.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    voxel_size : float
        Edge of the cubic voxels, in the cloud's units; must be > 0.

    Returns
    -------
    indices : ndarray of shape (n_voxels,), int64
        Indices into ``points``, sorted.

    Raises
    ------
    ValueError
        If ``voxel_size`` is not positive (or absurdly small, see :func:`voxel_keys`).
    """
    _, voxel, counts = np.unique(voxel_keys(points, voxel_size), return_inverse=True, return_counts=True)
    centroids = np.column_stack([np.bincount(voxel, weights=points[:, axis]) for axis in range(3)]) / counts[:, None]
    distance = np.sum((points - centroids[voxel]) ** 2, axis=1)
    order = np.lexsort((distance, voxel))  # by voxel, nearest first
    first = np.r_[True, voxel[order][1:] != voxel[order][:-1]]
    return np.sort(order[first])


def voxel_downsample_to(points: np.ndarray, n_target: int) -> np.ndarray:
    """Voxel downsampling with the voxel size found by bisection to give at most ``n_target`` points.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    n_target : int
        Wanted number of points; the result has at most this many (within 3 % below when possible).

    Returns
    -------
    indices : ndarray of shape (<= n_target,), int64
    """
    if n_target >= points.shape[0]:
        return np.arange(points.shape[0], dtype=np.int64)
    low, high = 0.0, float(np.ptp(points, axis=0).max())
    for _ in range(40):
        size = 0.5 * (low + high)
        try:
            occupied = len(np.unique(voxel_keys(points, size)))
        except ValueError:  # grid too fine: go coarser
            low = size
            continue
        if occupied > n_target:
            low = size
        else:
            high = size
            if occupied >= 0.97 * n_target:
                break
    return voxel_downsample(points, high)


def sample(points: np.ndarray, n_points: int, method: str = "fps", seed: int = 0) -> np.ndarray:
    """Indices of the points shown to the language model.

    Parameters
    ----------
    points : ndarray of shape (n_points_full, 3), float64
    n_points : int
        Target count (``--n-points``; 256 by default in the CLI).
    method : {"fps", "voxel"}, default "fps"
        Farthest point sampling (exact count) or voxel downsampling (at most ``n_points``).
    seed : int, default 0
        Used by FPS; voxel downsampling is deterministic.

    Returns
    -------
    indices : ndarray of shape (n_sampled,), int64

    Raises
    ------
    ValueError
        Unknown method or ``n_points < 1``.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    if method == "fps":
        return farthest_point_sampling(points, n_points, seed=seed)
    if method == "voxel":
        return voxel_downsample_to(points, n_points)
    raise ValueError(f"unknown sampling method '{method}' (expected one of {', '.join(SAMPLERS)})")
