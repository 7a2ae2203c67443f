"""Classical anomaly scoring of the gated points, and propagation to the whole cloud.

The self-reference scorer needs no normal reference cloud: a point is anomalous when its
multi-scale FPFH is rare within its own cloud, i.e. far (in feature space) from the features
of a memory bank sampled from the same cloud, excluding the bank points in the point's own
spatial surroundings (so a defect cannot vouch for itself). It follows the nearest-neighbour
memory-bank scoring of PatchCore (Roth et al., CVPR 2022) and BTF (Horwitz & Hoshen, CVPRW
2023), with the bank taken from the test cloud itself.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from agent3d.geometry import fpfh
from agent3d.sampling import farthest_point_sampling

CHUNK = 16384  # query points per batch, bounds memory on large clouds


class SelfReferenceScorer:
    """FPFH rarity within the cloud itself (no reference needed).

    Parameters
    ----------
    bank_size : int, default 4096
        Points in the memory bank, chosen by farthest point sampling over the cloud.
    n_neighbours : int, default 3
        Score = mean feature distance to this many nearest bank features.
    exclusion : float, default 10.0
        Bank points closer than ``exclusion`` x the bank spacing (median distance between
        neighbouring bank points) to the scored point are ignored.
    smoothing : int, default 8
        Scores are averaged over this many nearest scored points (the point included).
    seed : int, default 0
        Seeds the farthest point sampling of the bank.

    Attributes
    ----------
    name : str
        ``"self-reference"``.
    """

    name = "self-reference"

    def __init__(self, bank_size: int = 4096, n_neighbours: int = 3, exclusion: float = 10.0,
                 smoothing: int = 8, seed: int = 0):
        self.bank_size, self.n_neighbours, self.exclusion = bank_size, n_neighbours, exclusion
        self.smoothing, self.seed = smoothing, seed

    def fit(self, points: np.ndarray) -> "SelfReferenceScorer":
        """Build the memory bank from the cloud to be scored.

        Parameters
        ----------
        points : ndarray of shape (n_points, 3), float64

        Returns
        -------
        self
        """
        self.points_ = points
        self.bank_index_ = np.sort(farthest_point_sampling(points, self.bank_size, seed=self.seed))
        self.bank_ = fpfh(points, self.bank_index_)
        self.bank_tree_ = cKDTree(self.bank_)
        spatial = cKDTree(points[self.bank_index_])
        self.radius_ = self.exclusion * float(np.median(spatial.query(points[self.bank_index_], k=2)[0][:, 1]))
        self.spatial_tree_ = spatial
        return self

    def score(self, indices: np.ndarray) -> np.ndarray:
        """Anomaly scores of the given points (higher = more anomalous).

        Parameters
        ----------
        indices : ndarray of shape (n_scored,), int64
            Points of the fitted cloud to score.

        Returns
        -------
        scores : ndarray of shape (n_scored,), float64
            Smoothed mean distance to the nearest allowed bank features (unit-free).
        """
        if len(indices) == 0:
            return np.empty(0)
        features = fpfh(self.points_, indices)
        rarity = np.concatenate([self._rarity(indices[i:i + CHUNK], features[i:i + CHUNK])
                                 for i in range(0, len(indices), CHUNK)])
        return smooth(self.points_[indices], rarity, self.smoothing)

    def _rarity(self, indices: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Mean feature distance to the nearest bank entries outside the exclusion radius."""
        centres = self.points_[indices]
        # ask for enough feature neighbours that every spatially close bank entry can be skipped
        excluded = self.spatial_tree_.query_ball_point(centres, r=self.radius_, return_length=True)
        n_ask = int(min(len(self.bank_index_), self.n_neighbours + excluded.max()))
        distance, neighbour = self.bank_tree_.query(features, k=n_ask, workers=-1)
        distance, neighbour = distance.reshape(len(indices), -1), neighbour.reshape(len(indices), -1)
        near = np.linalg.norm(self.points_[self.bank_index_][neighbour] - centres[:, None, :], axis=2) < self.radius_
        nearest = np.sort(np.where(near, np.inf, distance), axis=1)[:, : self.n_neighbours]
        short = ~np.isfinite(nearest).all(axis=1)
        nearest[short] = distance[short, : self.n_neighbours]  # tiny clouds: exclusion would leave too few
        return nearest.mean(axis=1)


def smooth(points: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Mean of each point's score and its k-1 nearest neighbours' scores.

    Parameters
    ----------
    points : ndarray of shape (n, 3), float64
    scores : ndarray of shape (n,), float64
    k : int
        Neighbourhood size, the point included; 1 or less returns ``scores`` unchanged.

    Returns
    -------
    ndarray of shape (n,), float64
    """
    k = min(k, len(scores))
    if k <= 1:
        return scores.astype(np.float64)
    _, neighbours = cKDTree(points).query(points, k=k, workers=-1)
    return scores[neighbours].mean(axis=1)


def propagate(n_points: int, indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores for every point of the full cloud: scored points keep theirs, the rest get the floor.

    Parameters
    ----------
    n_points : int
        Size of the full cloud.
    indices : ndarray of shape (n_scored,), int64
    scores : ndarray of shape (n_scored,), float64

    Returns
    -------
    ndarray of shape (n_points,), float64
        The floor is the lowest score given (0 when nothing was scored).
    """
    floor = float(scores.min()) if len(scores) else 0.0
    full = np.full(n_points, floor)
    full[indices] = scores
    return full
