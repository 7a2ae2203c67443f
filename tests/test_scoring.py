"""Scorers rank planted defects high; coreset, interpolation, smoothing, object score, propagation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import plant_bump, wavy_surface
from scipy.spatial.transform import Rotation
from sklearn.metrics import roc_auc_score

from agent3d.scoring import MemoryBankScorer, SelfReferenceScorer, object_score, propagate
from agent3d.sampling import working_cloud
from agent3d.scoring.common import interpolate, smooth
from agent3d.scoring.memory_bank import greedy_coreset

ALL = np.arange(6000)


@pytest.fixture(scope="module")
def bumped():
    return plant_bump(wavy_surface(6000, seed=2), height=0.03)


@pytest.fixture(scope="module")
def bank():
    return MemoryBankScorer().fit([wavy_surface(6000, seed=1)], ["clean.xyz"])


def test_memory_bank_ranks_a_planted_bump_above_the_rest(bumped, bank):
    points, labels = bumped
    scores = bank.score_samples(points, ALL)
    assert scores.shape == (6000,) and roc_auc_score(labels, scores) > 0.9
    assert bank.sources_ == ["clean.xyz"] and len(bank.bank_) == int(np.ceil(0.1 * bank.n_features_))


def test_memory_bank_needs_no_registration(bumped):
    points, labels = bumped
    pose = Rotation.from_euler("xyz", [30, 50, 10], degrees=True).as_matrix()
    moved = MemoryBankScorer().fit([wavy_surface(6000, seed=1) @ pose.T + 5.0])
    assert roc_auc_score(labels, moved.score_samples(points, ALL)) > 0.9


def test_memory_bank_scores_a_clean_part_lower_than_a_defect(bumped, bank):
    points, labels = bumped
    clean = bank.score_samples(wavy_surface(6000, seed=3), ALL)
    assert bank.score_samples(points, ALL)[labels == 1].max() > 1.5 * clean.max()


def test_memory_bank_needs_a_reference():
    with pytest.raises(ValueError, match="at least one reference"):
        MemoryBankScorer().fit([])


def test_self_reference_ranks_a_planted_bump_above_the_rest(bumped):
    points, labels = bumped
    assert roc_auc_score(labels, SelfReferenceScorer().score_samples(points, ALL)) > 0.9


def test_self_reference_subset_equals_those_rows_of_a_full_run_before_smoothing(bumped):
    points, _ = bumped
    scorer = SelfReferenceScorer(smoothing=1)
    subset = np.arange(0, 6000, 7)
    np.testing.assert_allclose(scorer.score_samples(points, subset), scorer.score_samples(points, ALL)[subset], rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: SelfReferenceScorer(seed=1),
                                  lambda: MemoryBankScorer(seed=1).fit([wavy_surface(3000, seed=1)])])
def test_scorers_repeat_for_a_seed_and_handle_tiny_and_empty_inputs(bumped, make):
    points, _ = bumped
    np.testing.assert_array_equal(make().score_samples(points, ALL), make().score_samples(points, ALL))
    tiny = wavy_surface(20)
    assert np.all(np.isfinite(make().score_samples(tiny, np.arange(20))))
    assert make().score_samples(points, np.empty(0, dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize("make", [lambda: SelfReferenceScorer(max_points=2500),
                                  lambda: MemoryBankScorer(max_points=2500).fit([wavy_surface(6000, seed=1)])])
def test_large_clouds_are_scored_on_a_working_subsample_and_interpolated(bumped, make):
    points, labels = bumped
    gated = np.arange(0, 6000, 3)
    scores = make().score_samples(points, gated)
    assert scores.shape == (2000,) and np.all(np.isfinite(scores))
    assert roc_auc_score(labels[gated], scores) > 0.9


def test_working_cloud_is_everything_below_the_limit_and_a_seeded_subsample_above():
    points = wavy_surface(3000)
    np.testing.assert_array_equal(working_cloud(points, 5000), np.arange(3000))
    sub = working_cloud(points, 1000, seed=3)
    assert len(np.unique(sub)) == 1000 and np.all(np.diff(sub) > 0)
    np.testing.assert_array_equal(sub, working_cloud(points, 1000, seed=3))


def test_coreset_keeps_the_farthest_points():
    rng = np.random.default_rng(0)
    cluster = rng.normal(scale=0.01, size=(1000, 99))
    outliers = np.eye(99)[:5] * 10.0
    features = np.vstack([cluster, outliers])
    kept = greedy_coreset(features, 6, seed=0)
    assert set(range(1000, 1005)) <= set(kept.tolist()) and len(np.unique(kept)) == 6
    np.testing.assert_array_equal(greedy_coreset(features, 2000), np.arange(1005))


def test_coreset_covers_better_than_random():
    features = np.random.default_rng(1).uniform(size=(3000, 8))
    def radius(rows):
        return np.min(np.linalg.norm(features[:, None] - features[rows][None], axis=2), axis=1).max()
    random_rows = np.random.default_rng(2).choice(3000, 100, replace=False)
    assert radius(greedy_coreset(features, 100)) < radius(random_rows)


def test_interpolate_reproduces_sources_and_blends_between_them():
    sources = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    values = np.array([0.0, 1.0])
    result = interpolate(sources, values, np.array([[0.0, 0, 0], [0.5, 0, 0], [0.75, 0, 0]]), k=2)
    np.testing.assert_allclose(result, [0.0, 0.5, 0.75], atol=1e-9)


def test_smooth_averages_over_neighbours():
    points = np.column_stack([np.arange(10.0), np.zeros(10), np.zeros(10)])
    scores = np.zeros(10)
    scores[5] = 3.0
    smoothed = smooth(points, scores, 3)
    assert smoothed[5] == 1.0 and smoothed[4] == 1.0 and smoothed[0] == 0.0
    np.testing.assert_array_equal(smooth(points, scores, 1), scores)


def test_object_score_max_and_topk_mean():
    scores = np.array([1.0, 5.0, 3.0, 2.0])
    assert object_score(scores) == 5.0 and object_score(scores, "topk-mean", 2) == 4.0
    assert object_score(scores, "topk-mean", 10) == 2.75 and object_score(np.empty(0)) == 0.0
    with pytest.raises(ValueError):
        object_score(scores, "median")


def test_propagate_gives_every_point_a_score_with_the_floor_elsewhere():
    full = propagate(10, np.array([2, 7]), np.array([0.5, 2.0]))
    assert full.tolist() == [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 2.0, 0.5, 0.5]
    assert propagate(4, np.empty(0, dtype=np.int64), np.empty(0)).tolist() == [0.0] * 4
