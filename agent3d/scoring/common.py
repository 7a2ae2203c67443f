"""What every scorer shares: the estimator base, scoring at the working cloud's resolution, nearest-neighbour
indices over features, interpolation of scores to other points, and smoothing over neighbours."""

from __future__ import annotations

import os

import numpy as np
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors

from agent3d.scoring.state import ScoringState

CHUNK = 16384  # query points per batch, bounds memory on large clouds


class ScorerBase(BaseEstimator):
    """A scikit-learn-style scorer: constructor arguments are its parameters (``get_params``, ``clone``),
    ``fit(references, sources)`` returns self, fitted attributes end in ``_``, and
    ``score_samples(points, indices, state=None)`` writes nothing on ``self``, so one fitted scorer serves many
    threads; what it computes of a cloud whatever is scored goes to that cloud's
    :class:`~agent3d.scoring.state.ScoringState`, so later calls with it pay only for their new points.

    Attributes
    ----------
    name : str
        One of ``agent3d.config.SCORERS`` (not ``auto``).
    sources_ : list of str
        Sources of the reference clouds it was fitted on (empty for self-reference and before ``fit``).
    """

    name = ""
    sources_: list[str] = []

    def register(self, points: np.ndarray):
        """The rigid alignment of ``points`` (shape (n_points, 3), float64) to the references that scoring
        uses, or None for a scorer that registers nothing."""
        return None

    def score_samples(self, points: np.ndarray, indices: np.ndarray,
                      state: ScoringState | None = None) -> np.ndarray:
        """Anomaly scores (higher = more anomalous) of ``points[indices]``: ndarray of shape (n_scored,),
        float64, for ``points`` of shape (n_points, 3), float64 and ``indices`` of shape (n_scored,), int64;
        ``state`` (:class:`~agent3d.scoring.state.ScoringState` of ``points``) keeps what the cloud costs once
        (the same scores as without it)."""
        raise NotImplementedError


def at_working_resolution(points: np.ndarray, indices: np.ndarray, max_points: int, score_working,
                          seed: int = 0, state: ScoringState | None = None) -> np.ndarray:
    """Score ``indices`` of a cloud by scoring its working cloud near them, then interpolating back.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    indices : ndarray of shape (n_scored,), int64
    max_points : int
        Working-cloud size limit (see :func:`agent3d.sampling.working_cloud`).
    score_working : callable
        ``score_working(work, local) -> (positions (m, 3), scores (m,))`` scores the working points ``local`` of
        ``work`` (:class:`agent3d.scoring.state.WorkingState`; the nearest working point of every scored point).
    seed : int, default 0
    state : ScoringState, optional
        This cloud's scoring state, reused across calls; a fresh one when None (the same scores).

    Returns
    -------
    ndarray of shape (n_scored,), float64
        Inverse-distance interpolation of the working scores (exact where a point is a working point).
    """
    if len(indices) == 0:
        return np.empty(0)
    work = (state or ScoringState(points)).working(points, max_points, seed)
    positions, scores = score_working(work, work.local(points, indices))
    return interpolate(positions, scores, points[indices])


def nearest_neighbours(bank: np.ndarray) -> NearestNeighbors:
    """A brute-force (BLAS) Euclidean nearest-neighbour index over feature vectors of shape (n, d)."""
    return NearestNeighbors(algorithm="brute", n_jobs=os.cpu_count()).fit(bank)


def interpolate(sources: np.ndarray, values: np.ndarray, targets: np.ndarray, k: int = 3) -> np.ndarray:
    """Inverse-distance weighted mean of the ``k`` nearest source values at each target.

    Parameters
    ----------
    sources : ndarray of shape (n_sources, 3), float64
    values : ndarray of shape (n_sources,), float64
    targets : ndarray of shape (n_targets, 3), float64
    k : int, default 3

    Returns
    -------
    ndarray of shape (n_targets,), float64
        A target on a source takes that source's value.
    """
    k = min(k, len(sources))
    distance, nearest = cKDTree(sources).query(targets, k=k, workers=-1)
    distance, nearest = distance.reshape(len(targets), k), nearest.reshape(len(targets), k)
    weight = 1.0 / np.maximum(distance, 1e-12)
    return (weight * values[nearest]).sum(axis=1) / weight.sum(axis=1)


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
