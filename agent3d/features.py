"""Shape features the scorers compare: multi-scale FPFH of points and its mean over local groups, and a cloud's
features computed once (:class:`CloudFeatures`: normals on first use, each point's FPFH the first time it is asked
for), so scoring a batch after another costs only the batch's new points."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import sparse

from agent3d.geometry import FPFH_SCALES, NORMAL_NEIGHBOURS, CloudContext, open3d_serial
from agent3d.sampling import voxel_downsample


def normals_cloud(points: np.ndarray):
    """An open3d tensor point cloud of ``points`` (shape (n_points, 3), float64) with normals estimated from
    ``NORMAL_NEIGHBOURS`` nearest neighbours (what :func:`fpfh_of` reads)."""
    import open3d as o3d

    with open3d_serial():
        cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float64)))
        cloud.estimate_normals(max_nn=NORMAL_NEIGHBOURS)
    return cloud


def fpfh_of(cloud, query: np.ndarray | None = None, scales: tuple[int, ...] = FPFH_SCALES) -> np.ndarray:
    """Multi-scale FPFH of the ``query`` points (all when None) of a cloud from :func:`normals_cloud`; see
    :func:`fpfh`. A point's feature depends only on its neighbourhood, not on the other points asked for."""
    import open3d as o3d

    indices = None if query is None else o3d.core.Tensor(np.asarray(query, dtype=np.int64))
    parts = []
    with open3d_serial():
        for k in scales:
            feature = o3d.t.pipelines.registration.compute_fpfh_feature(cloud, max_nn=int(k), radius=None,
                                                                        indices=indices)
            parts.append(feature.numpy().astype(np.float32) / 200.0)
    return np.concatenate(parts, axis=1)


def fpfh(points: np.ndarray, query: np.ndarray | None = None, scales: tuple[int, ...] = FPFH_SCALES) -> np.ndarray:
    """Multi-scale Fast Point Feature Histograms of the query points.

    FPFH: Rusu, Blodow & Beetz, ICRA 2009, computed by open3d on k-nearest-neighbour
    neighbourhoods of the full cloud (normals from ``NORMAL_NEIGHBOURS`` neighbours), one
    33-bin histogram per scale, concatenated; as used by BTF (Horwitz & Hoshen, CVPRW 2023)
    and Simple3D.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        The full cloud.
    query : ndarray of shape (n_query,), int64, optional
        Points whose features are wanted; all points when None.
    scales : tuple of int, default (16, 32, 64)
        Neighbours per scale.

    Returns
    -------
    features : ndarray of shape (n_query, 33 * len(scales)), float32
        Divided by 200, so each of the three 11-bin sub-histograms per scale sums to 1 (open3d's
        FPFH adds the point's SPFH, which sums to 100, to the weighted mean of its neighbours').
    """
    return fpfh_of(normals_cloud(points), query, scales)


class CloudFeatures(CloudContext):
    """One cloud's features, each computed once and only when first asked for: the k-d tree and spacing
    (:class:`agent3d.geometry.CloudContext`), the normals (:func:`normals_cloud`) and every point's multi-scale FPFH
    (:func:`fpfh_of`). Equal to computing them in one pass (a point's FPFH depends only on its neighbourhood).

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    seed : int, default 0

    Attributes
    ----------
    counts : collections.Counter
        What was computed: ``"normals"`` (estimations: 1 after the first FPFH), ``"fpfh"`` (points featurized; a
        point asked for again is not counted again).
    """

    def __post_init__(self):
        super().__post_init__()
        self.counts: Counter = Counter()
        self._normals = None
        self._fpfh: np.ndarray | None = None  # (n_points, 99) float32, where _done
        self._done = np.zeros(len(self.points), dtype=bool)

    def fpfh(self, query: np.ndarray) -> np.ndarray:
        """Multi-scale FPFH of ``query`` (shape (n_query,), int64): ndarray of shape (n_query, 99), float32 (as
        :func:`fpfh`); only points never asked for before are computed."""
        query = np.asarray(query, dtype=np.int64)
        if self._fpfh is None:
            self._fpfh = np.zeros((len(self.points), 33 * len(FPFH_SCALES)), dtype=np.float32)
        missing = np.unique(query[~self._done[query]])
        if len(missing):
            if self._normals is None:
                self._normals = normals_cloud(self.points)
                self.counts["normals"] += 1
            self._fpfh[missing] = fpfh_of(self._normals, missing)
            self._done[missing] = True
            self.counts["fpfh"] += len(missing)
        return self._fpfh[query]


def group_centres(points: np.ndarray, indices: np.ndarray, spacing: float, stride: int = 8) -> np.ndarray:
    """Centres of the groups covering ``indices`` (shape (n_indices,), int64) at about one per ``stride`` points:
    one per occupied voxel of edge ``sqrt(stride)`` x ``spacing`` (the point nearest the voxel's centroid; a
    linear-time stand-in for farthest point sampling, which is quadratic and too slow at 500k points); int64
    indices into ``points`` (shape (n_points, 3), float64)."""
    return np.asarray(indices)[voxel_downsample(points[indices], np.sqrt(stride) * spacing)]


def group_means(features: CloudFeatures, centres: np.ndarray, group_size: int = 32) -> np.ndarray:
    """Mean FPFH of each centre's ``group_size`` nearest neighbours (the centre included): ndarray of shape
    (n_centres, 99), float32, for ``centres`` of shape (n_centres,), int64."""
    points = features.points
    _, groups = features.tree.query(points[centres], k=min(group_size, points.shape[0]), workers=-1)
    groups = np.asarray(groups).reshape(len(centres), -1)
    members, position = np.unique(groups, return_inverse=True)
    n_groups, size = groups.shape
    # the mean over each group as a sparse (n_groups, n_members) averaging matrix: no (n, k, d) array
    average = sparse.csr_matrix((np.full(groups.size, 1.0 / size, dtype=np.float32),
                                 (np.repeat(np.arange(n_groups), size), position.ravel())),
                                shape=(n_groups, len(members)))
    return np.asarray(average @ features.fpfh(members), dtype=np.float32)


def group_features(points: np.ndarray, indices: np.ndarray, group_size: int = 32, stride: int = 8,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multi-scale FPFH averaged over local groups, as in Simple3D / M3DM point-group features.

    Group centres cover the given points (:func:`group_centres`, the cloud's median spacing); each group is the
    centre's ``group_size`` nearest neighbours in the full cloud; its feature is the mean FPFH (:func:`fpfh`) of
    its members (:func:`group_means`).

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        The full cloud.
    indices : ndarray of shape (n_indices,), int64
        The points to cover (all points, or the gated ones).
    group_size : int, default 32
    stride : int, default 8
        About how many covered points per centre.
    seed : int, default 0
        Of the spacing probe.

    Returns
    -------
    centres : ndarray of shape (n_groups,), int64
        Indices of the group centres in ``points``.
    features : ndarray of shape (n_groups, 33 * len(FPFH_SCALES)), float32
    """
    cloud = CloudFeatures(points, seed)
    centres = group_centres(points, indices, cloud.spacing, stride)
    return centres, group_means(cloud, centres, group_size)
