"""Per-cloud scoring state: what scoring a cloud needs whatever points are scored — the working cloud, its k-d
tree, normals and each point's FPFH (:class:`agent3d.features.CloudFeatures`), a scorer's bank drawn from the cloud,
and the raw (unsmoothed) score of every point already scored — computed once, when first asked for, and reused by
every call on that cloud: the coarse pass, growth rounds, re-scoring under other guidance. Smoothing over the scored
set stays a cheap last step of each call, so a call costs in proportion to the points it adds."""

from __future__ import annotations

from collections import Counter

import numpy as np

from agent3d.features import CloudFeatures
from agent3d.sampling import MAX_WORKING_POINTS, working_cloud


class WorkingState:
    """The state of one working cloud (:func:`agent3d.sampling.working_cloud`) of a cloud.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        The full cloud.
    index : ndarray of shape (n_work,), int64
        Its working points (all of them for clouds up to the working size).
    seed : int

    Attributes
    ----------
    points : ndarray of shape (n_work, 3), float64
    features : CloudFeatures
        Tree, spacing, normals and FPFH of the working points.
    subsampled : bool
    """

    def __init__(self, points: np.ndarray, index: np.ndarray, seed: int):
        self.index, self.subsampled = index, len(index) < len(points)
        self.points = points[index] if self.subsampled else points
        self.features = CloudFeatures(self.points, seed)
        self._memos: dict = {}
        self._raw: dict = {}

    def local(self, points: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """The working points that stand for ``indices`` of the full cloud ``points``: themselves, or for a subsampled
        cloud each one's nearest working point; unique, int64."""
        if not self.subsampled:
            return np.unique(indices)
        return np.unique(self.features.tree.query(points[indices], workers=-1)[1]).astype(np.int64)

    def memo(self, key: tuple, make):
        """``make()``, computed the first time ``key`` is asked for (counted under ``key[0]``) and kept."""
        if key not in self._memos:
            self._memos[key] = make()
            self.features.counts[key[0]] += 1
        return self._memos[key]

    def raw(self, key: tuple) -> np.ndarray:
        """The raw scores kept under ``key`` (a scorer and its parameters): ndarray of shape (n_work,), float64, NaN
        where not scored yet; the caller fills it in place."""
        if key not in self._raw:
            self._raw[key] = np.full(len(self.points), np.nan)
        return self._raw[key]


class ScoringState:
    """Everything scoring one cloud computes once (see the module).

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        The cloud every call with this state scores.

    Attributes
    ----------
    counts : collections.Counter
        What was computed, for tests and benchmarks: ``"normals"``, ``"fpfh"`` (points featurized), and one entry per
        kept item (e.g. ``"self-reference bank"``), summed over working clouds.
    """

    def __init__(self, points: np.ndarray):
        self.points = points
        self._working: dict[tuple[int, int], WorkingState] = {}

    def working(self, points: np.ndarray, max_points: int, seed: int) -> WorkingState:
        """The state of the working cloud of at most ``max_points`` points drawn with ``seed``.

        Raises
        ------
        ValueError
            ``points`` is not the cloud this state belongs to.
        """
        if points is not self.points and (points.shape != self.points.shape or not np.array_equal(points,
                                                                                                     self.points)):
            raise ValueError("a scoring state serves only the cloud it was made for")
        key = (max_points, seed)
        if key not in self._working:
            self._working[key] = WorkingState(points, working_cloud(points, max_points, seed), seed)
        return self._working[key]

    @property
    def counts(self) -> Counter:
        total: Counter = Counter()
        for work in self._working.values():
            total.update(work.features.counts)
        return total
