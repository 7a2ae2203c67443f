"""Gating: which full-cloud points the classical scorer may touch.

``--budget`` has one meaning for every strategy: the fraction of full-cloud points scored.
``llm`` grows neighbourhoods around the suspects (the points nearest to any suspect, closest
first) until the budget is spent; ``all`` ignores the budget and scores every point.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

GATINGS = ("llm", "all")


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


def gate(strategy: str, points: np.ndarray, suspects: np.ndarray, budget: float) -> np.ndarray:
    """Indices of the points to score.

    Parameters
    ----------
    strategy : {"llm", "all"}
    points : ndarray of shape (n_points, 3), float64
    suspects : ndarray of shape (n_suspects,), int64
        Full-cloud indices of the suspects (used by ``llm``).
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
    if strategy == "llm":
        return grow_around(points, suspects, budget_count(points.shape[0], budget))
    raise ValueError(f"unknown gating '{strategy}' (expected one of {', '.join(GATINGS)})")
