"""Gating: which full-cloud points the classical scorer may touch.

``--budget`` has one meaning for every strategy: the fraction of full-cloud points scored.
Every budgeted strategy picks seed points and grows neighbourhoods around them (the points nearest
to any seed, closest first) until the budget is spent; they differ only in the seeds:

- ``llm``: the language model's suspects;
- ``saliency``: the shown points (the same sample the model reads) with the highest curvature plus
  plane residual, as many as the model may name: the no-LLM baseline that tells whether the model
  adds anything over a geometric rule;
- ``random``: that many shown points drawn at random (seeded): the chance baseline;
- ``all``: ignores the budget and scores every point.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from agent3d.config import GATINGS


def budget_count(n_points: int, budget: float) -> int:
    """Points the scorer may touch: ``round(budget * n_points)``, at least 1.

    Raises
    ------
    ValueError
        If ``budget`` is not in (0, 1].
    """
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    return max(1, int(round(budget * n_points)))


def grow_around(points: np.ndarray, seeds: np.ndarray, n_budget: int) -> np.ndarray:
    """The ``n_budget`` points nearest to any seed: neighbourhoods grown evenly around every seed.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    seeds : ndarray of shape (n_seeds,), int64
        Indices of the seed points (suspects); none gives an empty selection.
    n_budget : int
        How many points to select.

    Returns
    -------
    indices : ndarray of shape (min(n_budget, n_points),) or (0,), int64
        Sorted indices into ``points``.
    """
    if len(seeds) == 0:
        return np.empty(0, dtype=np.int64)
    distance, _ = cKDTree(points[np.unique(seeds)]).query(points, workers=-1)
    return np.sort(np.argsort(distance, kind="stable")[:n_budget]).astype(np.int64)


def saliency_seeds(shown: np.ndarray, curvature: np.ndarray, residual: np.ndarray, n_seeds: int) -> np.ndarray:
    """The ``n_seeds`` shown points with the highest curvature rank plus residual rank.

    Parameters
    ----------
    shown : ndarray of shape (n_shown,), int64
        Full-cloud indices of the shown sample.
    curvature, residual : ndarray of shape (n_shown,), float64
        Their summaries (:class:`agent3d.geometry.LocalGeometry`).
    n_seeds : int

    Returns
    -------
    ndarray of shape (min(n_seeds, n_shown),), int64
    """
    salience = rankdata(curvature) + rankdata(residual)
    return np.asarray(shown)[np.argsort(-salience, kind="stable")[:n_seeds]]


def random_seeds(shown: np.ndarray, n_seeds: int, seed: int = 0) -> np.ndarray:
    """``n_seeds`` shown points drawn without replacement with a seeded generator."""
    return np.random.default_rng(seed).choice(np.asarray(shown), size=min(n_seeds, len(shown)), replace=False)


def gate(strategy: str, points: np.ndarray, seeds: np.ndarray, budget: float) -> np.ndarray:
    """Indices of the points to score.

    Parameters
    ----------
    strategy : {"llm", "saliency", "random", "all"}
    points : ndarray of shape (n_points, 3), float64
    seeds : ndarray of shape (n_seeds,), int64
        Full-cloud indices of the seeds: suspects, salient or random points (ignored by ``all``).
    budget : float in (0, 1]
        Fraction of points to score (ignored by ``all``).

    Returns
    -------
    indices : ndarray of shape (n_scored,), int64, sorted

    Raises
    ------
    ValueError
        Unknown strategy or budget outside (0, 1].
    """
    if strategy == "all":
        return np.arange(points.shape[0], dtype=np.int64)
    if strategy in GATINGS:
        return grow_around(points, seeds, budget_count(points.shape[0], budget))
    raise ValueError(f"unknown gating '{strategy}' (expected one of {', '.join(GATINGS)})")
