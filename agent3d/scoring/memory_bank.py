"""Memory-bank scorer: multi-scale FPFH averaged over local groups, a memory bank of the references' group
features reduced by a greedy k-centre coreset, score = nearest-neighbour distance to the bank. BTF (Horwitz &
Hoshen, CVPRW 2023) and PatchCore (Roth et al., CVPR 2022), in Simple3D's training-free form. FPFH is rotation
invariant, so no registration is needed."""

from __future__ import annotations

import math

import numpy as np

from agent3d.features import group_centres, group_features, group_means
from agent3d.sampling import MAX_WORKING_POINTS, farthest_first, working_cloud
from agent3d.scoring.common import (
    ScorerBase,
    at_working_resolution,
    nearest_neighbours,
)
from agent3d.scoring.state import ScoringState, WorkingState


class MemoryBankScorer(ScorerBase):
    """Nearest-neighbour distance to a coreset memory bank of normal group features.

    Parameters
    ----------
    coreset_fraction : float, default 0.1
        Fraction of the references' group features kept in the bank (PatchCore uses 1-10 %).
    coreset_cap : int, default 10000
        At most this many bank entries.
    group_size : int, default 32
        Points per local group (see :func:`agent3d.geometry.group_features`).
    stride : int, default 8
        About one group centre per ``stride`` points.
    n_neighbours : int, default 1
        Score = mean distance to this many nearest bank entries (PatchCore: 1).
    max_points : int, default 100000
        Larger clouds (references and test) are featurized on a random working subsample of this
        size (:func:`agent3d.sampling.working_cloud`); scores are interpolated back to every point.
    seed : int, default 0
        Seeds the coreset start and its random projection.

    Attributes
    ----------
    bank_ : ndarray of shape (n_bank, 99), float32
        The coreset, after :meth:`fit`.
    n_features_ : int
        Group features before the coreset reduction.
    sources_ : list of str
        Sources of the reference clouds (for the detection record).
    """

    name = "memory-bank"

    def __init__(self, coreset_fraction: float = 0.1, coreset_cap: int = 10000, group_size: int = 32,
                 stride: int = 8, n_neighbours: int = 1, max_points: int = MAX_WORKING_POINTS, seed: int = 0):
        if not 0 < coreset_fraction <= 1:
            raise ValueError(f"coreset_fraction must be in (0, 1], got {coreset_fraction}")
        self.coreset_fraction, self.coreset_cap = coreset_fraction, coreset_cap
        self.group_size, self.stride, self.n_neighbours = group_size, stride, n_neighbours
        self.max_points, self.seed = max_points, seed

    def fit(self, references: list[np.ndarray], sources: list[str] | None = None) -> "MemoryBankScorer":
        """Build the memory bank from clouds of normal parts.

        Parameters
        ----------
        references : list of ndarray of shape (n_points_i, 3), float64
            One or more normal clouds; poses need not match the test cloud.
        sources : list of str, optional
            Their paths, recorded in ``sources_``.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If no reference is given.
        """
        if not references:
            raise ValueError("the memory bank needs at least one reference cloud")
        works = [r[working_cloud(r, self.max_points, self.seed)] for r in references]
        features = np.vstack([group_features(w, np.arange(len(w)), self.group_size, self.stride, self.seed)[1]
                              for w in works])
        n_keep = min(self.coreset_cap, max(1, math.ceil(self.coreset_fraction * len(features))))
        self.n_features_ = len(features)
        self.bank_ = features[greedy_coreset(features, n_keep, seed=self.seed)]
        self.index_ = nearest_neighbours(self.bank_)
        self.sources_ = list(sources or [])
        return self

    def score_samples(self, points: np.ndarray, indices: np.ndarray,
                      state: ScoringState | None = None) -> np.ndarray:
        """Anomaly scores of the given points: group distances to the bank, interpolated to the points.

        Parameters
        ----------
        points : ndarray of shape (n_points, 3), float64
            The full test cloud.
        indices : ndarray of shape (n_scored,), int64
            Points to score; groups are centred among them, features use the full cloud.
        state : ScoringState, optional
            The cloud's scoring state: features and every group's distance already computed are reused; the same
            scores as a fresh state.

        Returns
        -------
        scores : ndarray of shape (n_scored,), float64
            Inverse-distance weighted mean of the 3 nearest group scores (a smoothing over neighbours).
        """
        return at_working_resolution(points, indices, self.max_points, self._score_working, self.seed, state)

    def _score_working(self, work: WorkingState, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centres = group_centres(work.points, local, work.features.spacing, self.stride)
        distances = work.raw(("memory-bank", id(self.bank_), self.group_size, self.n_neighbours))
        fresh = centres[np.isnan(distances[centres])]
        if len(fresh):
            features = group_means(work.features, fresh, self.group_size)
            distance, _ = self.index_.kneighbors(features, n_neighbors=min(self.n_neighbours, len(self.bank_)))
            distances[fresh] = distance.mean(axis=1)
        return work.points[centres], distances[centres]


def greedy_coreset(features: np.ndarray, n_keep: int, seed: int = 0, projection_dim: int = 32) -> np.ndarray:
    """Greedy k-centre coreset: repeatedly keep the feature farthest from those kept so far
    (:func:`agent3d.sampling.farthest_first` in the projected feature space).

    As in PatchCore (Roth et al., CVPR 2022): distances are computed after a seeded Gaussian random
    projection to ``projection_dim`` dimensions (Johnson-Lindenstrauss) for speed.

    Parameters
    ----------
    features : ndarray of shape (n, d), float
    n_keep : int
        Coreset size; all rows are kept when ``n_keep >= n``.
    seed : int, default 0
        Chooses the projection and the first row.
    projection_dim : int, default 32
        No projection when ``d <= projection_dim``.

    Returns
    -------
    indices : ndarray of shape (min(n_keep, n),), int64
        Rows of ``features``, in the order they were chosen.
    """
    n, dim = features.shape
    if n_keep >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    projected = np.asarray(features, dtype=np.float32)
    if dim > projection_dim:
        projected = projected @ (rng.normal(size=(dim, projection_dim)) / np.sqrt(projection_dim)).astype(np.float32)
    norms = np.einsum("ij,ij->i", projected, projected)

    def squared_distance(chosen: int) -> np.ndarray:  # |a - c|^2 = |a|^2 + |c|^2 - 2 a.c : one product per step
        return norms + norms[chosen] - 2.0 * (projected @ projected[chosen])

    return farthest_first(n, n_keep, int(rng.integers(n)), squared_distance, dtype=np.float32)
