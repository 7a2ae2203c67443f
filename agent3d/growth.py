"""How the scored set grows from the seeds (``--growth``): a fixed, even split of the budget, or growth that follows
the scores.

- ``fixed`` (default): the budget's points nearest to any seed (:func:`agent3d.gating.grow_around`): every seed gets
  an even share, whether its surroundings are anomalous or not.
- ``adaptive``: region growing on the cloud's k-nearest-neighbour graph (Adams & Bischof, "Seeded region growing",
  IEEE TPAMI 1994; grown by the anomaly score as in active search, Garnett et al., ICML 2012). Half the budget is
  spent as ``fixed`` spends it (the core around the seeds, seeds taken in the order their source ranks them); a
  tenth of the cap is a uniform draw of the rest of the cloud (mostly normal surface, so the normal scores are
  known even when every core point lies on a defect); a point is *hot* when a two-component Gaussian mixture of
  the core's and the draw's scores puts it in the higher component (:func:`hot_threshold`); each round adds the
  unscored neighbours of the hot points, those of the hottest first (at most half of what is left of the cap per
  round), and scores the whole set again: with the cloud's scoring state (:class:`agent3d.scoring.ScoringState`,
  which :func:`agent3d.pipeline.detect` passes to every call) only the new points are featurized and scored, and the
  smoothing over scored neighbours (a small batch alone would come back flat) is redone over the set, so a round
  costs in proportion to its new points. Growth stops when no hot point has an unscored neighbour or the budget is
  spent: the budget is a cap, and what is left of it is not scored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree
from sklearn.mixture import GaussianMixture

NEIGHBOURS = 8  # the k of the neighbour graph growth follows
DRAW_SHARE, DRAW_MIN = 10, 16  # the uniform draw: a tenth of the cap, at least 16 points
ROUND_SHARE = 2  # a round adds at most half of what is left of the cap, reached from the hottest first
MAX_ROUNDS = 64  # a safeguard: growth ends when no hot point has an unscored point near it


def hot_threshold(scores: np.ndarray, seed: int = 0) -> float:
    """The score above which a point is hot: where a two-component Gaussian mixture of ``scores`` (ndarray of
    shape (n,), float64; scikit-learn) gives the higher component the larger posterior (the lowest such score);
    the core around good seeds is often more anomalous than normal, so no quantile of it is the normal points'."""
    if len(scores) < 4 or np.ptp(scores) == 0:
        return float(np.max(scores, initial=0.0))
    values = scores.reshape(-1, 1)
    mixture = GaussianMixture(2, random_state=seed).fit(values)
    high = int(np.argmax(mixture.means_.ravel()))
    above = scores[mixture.predict_proba(values)[:, high] > 0.5]
    return float(above.min()) if len(above) else float(scores.max())


def grow_adaptive(points: np.ndarray, core: np.ndarray, n_budget: int,
                  score: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grow the scored set from ``core`` along the neighbour graph while its frontier is hot.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    core : ndarray of shape (n_core,), int64
        The points scored first (half the budget around the seeds, and any coarse pass).
    n_budget : int
        The most points scored in all (the cap).
    score : callable
        ``score(indices)`` -> ndarray of shape (len(indices),), float64: the scorer on this cloud.
    seed : int, default 0
        Of the uniform draw.

    Returns
    -------
    indices : ndarray of shape (n_scored,), int64, sorted
        At most ``max(n_budget, n_core)`` points.
    scores : ndarray of shape (n_scored,), float64
        Their scores, from the last pass over the final set.

    Raises
    ------
    ValueError
        From ``score`` (e.g. a failed registration).
    """
    scored = np.unique(np.asarray(core, dtype=np.int64))
    if len(scored) == 0 or len(scored) >= n_budget:
        return scored, score(scored)
    rest = np.setdiff1d(np.arange(len(points)), scored)
    size = min(len(rest), n_budget - len(scored), max(DRAW_MIN, n_budget // DRAW_SHARE))
    draw = np.sort(np.random.default_rng(seed).choice(rest, size=size, replace=False))
    known = np.full(len(points), -np.inf)
    known[scored], known[draw] = score(scored), score(draw)
    threshold = hot_threshold(np.concatenate([known[scored], known[draw]]), seed)
    scored = np.union1d(scored, draw).astype(np.int64)
    scores = known[scored]
    _, graph = cKDTree(points).query(points, k=min(NEIGHBOURS + 1, len(points)), workers=-1)
    for _ in range(MAX_ROUNDS):
        hot = np.flatnonzero(known >= threshold)
        frontier = _frontier(graph, hot, known)
        frontier = frontier[:min(n_budget - len(scored), max(DRAW_MIN, (n_budget - len(scored)) // ROUND_SHARE))]
        if len(frontier) == 0:
            break
        scored = np.union1d(scored, frontier).astype(np.int64)
        scores = score(scored)  # smoothed over the whole set; with a scoring state only the new points cost
        known[scored] = scores
    return scored, scores


def _frontier(graph: np.ndarray, hot: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The unscored neighbours of the ``hot`` points on ``graph`` (rows: each point's neighbours, itself first), in
    the order the hottest reach them; int64."""
    step = graph[hot[np.argsort(-known[hot], kind="stable")], 1:].ravel()
    step = step[np.isneginf(known[step])]
    _, first = np.unique(step, return_index=True)
    return step[np.sort(first)].astype(np.int64)
