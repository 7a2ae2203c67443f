"""Metrics of 3D anomaly detection, as defined in docs/design.md, "Metrics" (anomalib naming).

- P-AUROC: ``roc_auc_score`` over all points of all test samples of a class pooled; mean over classes.
- O-AUROC: one score per sample, ``roc_auc_score`` per class (null unless the class has normal and
  anomalous samples); mean over the classes where it is defined.
- AP: ``average_precision_score`` over the pooled points of a class.
- AUPRO: GT regions are connected components of anomalous points on a radius graph (radius =
  2.5 x the median 6-NN spacing of the sample); the per-region overlap is averaged over regions, the
  false-positive rate is taken over normal points, the PRO curve is integrated up to FPR 0.3 and
  divided by 0.3 (Bergmann et al., MVTec AD / MVTec 3D-AD, adapted to point clouds).
- suspect recall: fraction of GT regions with at least one suspect within the region radius.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from sklearn.metrics import average_precision_score, roc_auc_score

REGION_RADIUS = 2.5
FPR_LIMIT = 0.3


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None when ``labels`` hold a single class."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision, or None without anomalous points."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() == 0:
        return None
    return float(average_precision_score(labels, scores))


def region_radius(points: np.ndarray) -> float:
    """``REGION_RADIUS`` x the median over points of the mean distance to their 6 nearest neighbours."""
    distance, _ = cKDTree(points).query(points, k=min(7, len(points)), workers=-1)
    return REGION_RADIUS * float(np.median(distance[:, 1:].mean(axis=1)))


def gt_regions(points: np.ndarray, labels: np.ndarray, radius: float) -> np.ndarray:
    """Connected component id of each point (-1 for normal points).

    Parameters
    ----------
    points : ndarray of shape (n, 3), float64
    labels : ndarray of shape (n,), {0, 1}
    radius : float
        Edge length of the radius graph, in the cloud's units.

    Returns
    -------
    ndarray of shape (n,), int64
    """
    region = np.full(len(points), -1, dtype=np.int64)
    anomalous = np.flatnonzero(labels)
    if len(anomalous):
        pairs = cKDTree(points[anomalous]).query_pairs(radius, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(anomalous),) * 2)
        region[anomalous] = connected_components(graph, directed=False)[1]
    return region


def aupro(regions: list[np.ndarray], scores: list[np.ndarray], fpr_limit: float = FPR_LIMIT) -> float | None:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit``, pooled over samples.

    Computed exactly at every distinct score: sorting all points by descending score, the FPR and
    the mean per-region overlap are cumulative sums (each anomalous point adds
    1 / (size of its region x number of regions)).

    Parameters
    ----------
    regions : list of ndarray of shape (n_i,), int64
        Region ids per sample (:func:`gt_regions`), -1 for normal points.
    scores : list of ndarray of shape (n_i,), float
    fpr_limit : float, default 0.3

    Returns
    -------
    float in [0, 1], or None without regions or without normal points.
    """
    weights, normal, values = [], [], []
    n_regions = sum(int(r.max()) + 1 for r in regions if len(r) and r.max() >= 0)
    if n_regions == 0:
        return None
    for region, score in zip(regions, scores):
        sizes = np.bincount(region[region >= 0]) if (region >= 0).any() else np.zeros(0)
        weight = np.zeros(len(region))
        weight[region >= 0] = 1.0 / (sizes[region[region >= 0]] * n_regions)
        weights.append(weight)
        normal.append(region < 0)
        values.append(np.asarray(score, dtype=np.float64))
    weight, normal, value = np.concatenate(weights), np.concatenate(normal), np.concatenate(values)
    if not normal.any():
        return None
    order = np.argsort(-value, kind="stable")
    value = value[order]
    last_of_tie = np.r_[value[1:] != value[:-1], True]
    fpr = np.r_[0.0, (np.cumsum(normal[order]) / normal.sum())[last_of_tie]]
    pro = np.r_[0.0, np.cumsum(weight[order])[last_of_tie]]
    keep = fpr <= fpr_limit
    fpr_cut, pro_cut = fpr[keep], pro[keep]
    if fpr_cut[-1] < fpr_limit:  # interpolate the curve at the limit
        after = np.searchsorted(fpr, fpr_limit)
        step = (fpr_limit - fpr[after - 1]) / (fpr[after] - fpr[after - 1])
        fpr_cut = np.r_[fpr_cut, fpr_limit]
        pro_cut = np.r_[pro_cut, pro[after - 1] + step * (pro[after] - pro[after - 1])]
    return float(np.trapezoid(pro_cut, fpr_cut) / fpr_limit)


def suspect_recall(points: np.ndarray, regions: np.ndarray, suspects: np.ndarray, radius: float) -> tuple[int, int]:
    """GT regions hit by at least one suspect (within ``radius`` of a region point), and all regions.

    Parameters
    ----------
    points : ndarray of shape (n, 3), float64
    regions : ndarray of shape (n,), int64
        From :func:`gt_regions`.
    suspects : ndarray of shape (n_suspects,), int64
        Full-cloud indices of the suspects.
    radius : float

    Returns
    -------
    (hit, total) : tuple of int
    """
    total = int(regions.max()) + 1 if len(regions) else 0
    if total <= 0 or len(suspects) == 0:
        return 0, max(total, 0)
    anomalous = np.flatnonzero(regions >= 0)
    near = cKDTree(points[anomalous]).query_ball_point(points[np.asarray(suspects)], r=radius)
    hit = {int(regions[anomalous[i]]) for found in near for i in found}
    return len(hit), total


@dataclass
class GroundTruth:
    """A labeled cloud's ground-truth regions, against which every run on it is judged (evaluate's records and
    detect's verdict).

    Attributes
    ----------
    points : ndarray of shape (n_points, 3), float64
    radius : float
        :func:`region_radius` of the cloud, in its units.
    regions : ndarray of shape (n_points,), int64
        :func:`gt_regions` (-1 for normal points).
    """

    points: np.ndarray
    radius: float
    regions: np.ndarray

    @classmethod
    def of(cls, points: np.ndarray, labels: np.ndarray) -> "GroundTruth":
        """The regions of ``labels`` (shape (n_points,), {0, 1}) on ``points``."""
        radius = region_radius(points)
        return cls(points, radius, gt_regions(points, labels, radius))

    def regions_hit(self, seeds) -> tuple[int, int]:
        """Regions with a seed (full-cloud indices, int64) within the radius, and regions in all
        (:func:`suspect_recall`)."""
        return suspect_recall(self.points, self.regions, np.asarray(seeds, dtype=np.int64), self.radius)
