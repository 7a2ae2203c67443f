"""Growth that follows the scores (``--growth adaptive``): the budget is a cap, a found defect is scored whole."""

from __future__ import annotations

import numpy as np
from conftest import plant_bump, wavy_surface

from agent3d.gating import grow_around
from agent3d.growth import DRAW_SHARE, grow_adaptive, hot_threshold
from agent3d.scoring import SelfReferenceScorer


def labelled_score(labels: np.ndarray, seed: int = 0):
    """A score that is the ground truth plus noise (what a perfect scorer would give): the growth rule alone."""
    noise = np.random.default_rng(seed).normal(0, 0.05, len(labels))
    return lambda indices: labels[indices] + noise[indices]


def bumped(n: int = 3000):
    points, labels = plant_bump(wavy_surface(n, seed=1), radius=0.2, height=0.05)
    return points, labels.astype(bool)


def test_growth_never_scores_more_than_the_cap_and_a_cap_of_all_reaches_every_connected_anomalous_point():
    points, labels = bumped()
    inside = np.flatnonzero(labels)
    core = grow_around(points, inside[:1], 40)
    for cap in (60, 150, len(inside) // 2):
        scored, scores = grow_adaptive(points, core, cap, labelled_score(labels))
        assert len(scored) <= cap and len(scores) == len(scored) and np.all(np.diff(scored) > 0)
    scored, _ = grow_adaptive(points, core, len(points), labelled_score(labels))
    assert set(inside) <= set(scored)  # the bump is one connected region: all of it is reached
    drawn = len(points) // DRAW_SHARE  # the uniform draw that tells the normal scores
    assert len(scored) < len(core) + drawn + 2 * len(inside)  # and growth stopped where the scores turned normal


def test_one_seed_on_a_defects_edge_at_twice_its_size_scores_nearly_all_of_it_where_the_fixed_split_scores_part():
    points, labels = bumped()
    inside = np.flatnonzero(labels)
    centre = points[inside].mean(axis=0)
    rim = inside[np.argmax(np.linalg.norm(points[inside] - centre, axis=1))]  # a seed on the defect's edge
    budget = 2 * len(inside)
    fixed = grow_around(points, np.array([rim]), budget)
    core = grow_around(points, np.array([rim]), budget // 2)
    assert labels[fixed].sum() < 0.6 * len(inside)  # the even ball around an edge seed cuts the defect
    perfect, _ = grow_adaptive(points, core, budget, labelled_score(labels))
    assert labels[perfect].sum() >= 0.95 * len(inside) and len(perfect) <= budget
    scorer = SelfReferenceScorer(seed=0)  # the real scorer: its smoothing blurs the rim, so nearly all of it
    adaptive, _ = grow_adaptive(points, core, budget, lambda indices: scorer.score_samples(points, indices))
    assert labels[adaptive].sum() >= 0.85 * len(inside) and len(adaptive) <= budget


def test_the_hot_threshold_separates_two_groups_whichever_is_larger():
    rng = np.random.default_rng(0)
    for n_normal, n_anomalous in ((300, 50), (50, 300)):
        scores = np.concatenate([rng.normal(0.3, 0.02, n_normal), rng.normal(0.6, 0.03, n_anomalous)])
        threshold = hot_threshold(scores)
        assert 0.38 < threshold < 0.55
    assert hot_threshold(np.full(10, 0.5)) == 0.5  # nothing to separate: only the top counts as hot


def test_detect_with_adaptive_growth_stays_within_the_budget_and_finds_more_of_the_defect_it_touches():
    from agent3d.api import detect
    from agent3d.cloud import PointCloud
    from agent3d.config import DetectConfig

    points, labels = bumped(4000)
    cloud = PointCloud(points, labels=labels.astype(np.uint8))
    found = {growth: detect(cloud, DetectConfig(gating="saliency", growth=growth, budget=0.05, n_points=64))
             for growth in ("fixed", "adaptive")}
    assert found["adaptive"].scored.sum() <= round(0.05 * len(points)) == found["fixed"].scored.sum()
    assert found["adaptive"].seeds == found["fixed"].seeds  # growth changes what is scored, not the seeds
    assert labels[found["adaptive"].scored].sum() >= labels[found["fixed"].scored].sum()
