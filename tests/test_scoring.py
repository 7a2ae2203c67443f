"""The self-reference scorer ranks a planted defect high; smoothing and propagation behave."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from agent3d.scoring import SelfReferenceScorer, propagate, smooth
from conftest import plant_bump, wavy_surface


def test_planted_bump_ranks_above_the_rest():
    points, labels = plant_bump(wavy_surface(6000))
    scores = SelfReferenceScorer().fit(points).score(np.arange(len(points)))
    assert scores.shape == (6000,) and roc_auc_score(labels, scores) > 0.95


def test_clean_surface_scores_are_flat_compared_to_a_defect():
    clean = wavy_surface(6000)
    bumped, labels = plant_bump(clean)
    clean_scores = SelfReferenceScorer().fit(clean).score(np.arange(6000))
    bumped_scores = SelfReferenceScorer().fit(bumped).score(np.arange(6000))
    assert bumped_scores[labels == 1].max() > 1.5 * clean_scores.max()


def test_scores_of_a_subset_equal_those_rows_of_a_full_run_before_smoothing():
    points, _ = plant_bump(wavy_surface(3000))
    scorer = SelfReferenceScorer(smoothing=1).fit(points)
    subset = np.arange(0, 3000, 7)
    np.testing.assert_allclose(scorer.score(subset), scorer.score(np.arange(3000))[subset], rtol=1e-5)


def test_repeatable_for_a_seed_and_tiny_clouds_still_score():
    points, _ = plant_bump(wavy_surface(2000))
    a = SelfReferenceScorer(seed=1).fit(points).score(np.arange(2000))
    np.testing.assert_array_equal(a, SelfReferenceScorer(seed=1).fit(points).score(np.arange(2000)))
    tiny = wavy_surface(20)
    assert np.all(np.isfinite(SelfReferenceScorer().fit(tiny).score(np.arange(20))))
    assert SelfReferenceScorer().fit(tiny).score(np.empty(0, dtype=np.int64)).shape == (0,)


def test_smooth_averages_over_neighbours():
    points = np.column_stack([np.arange(10.0), np.zeros(10), np.zeros(10)])
    scores = np.zeros(10)
    scores[5] = 3.0
    smoothed = smooth(points, scores, 3)
    assert smoothed[5] == 1.0 and smoothed[4] == 1.0 and smoothed[0] == 0.0
    np.testing.assert_array_equal(smooth(points, scores, 1), scores)


def test_propagate_gives_every_point_a_score_with_the_floor_elsewhere():
    full = propagate(10, np.array([2, 7]), np.array([0.5, 2.0]))
    assert full.tolist() == [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 2.0, 0.5, 0.5]
    assert propagate(4, np.empty(0, dtype=np.int64), np.empty(0)).tolist() == [0.0] * 4
