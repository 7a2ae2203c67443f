"""Per-cloud scoring state (``agent3d.scoring.ScoringState``): a cloud's normals, bank and features are computed once,
scores equal a fresh scoring of the same set, and later batches pay only for their new points; the cascade gating."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import lumpy_sphere, plant_bump, plant_dent, wavy_surface

from agent3d.features import CloudFeatures, fpfh
from agent3d.gating import grow_around
from agent3d.growth import grow_adaptive
from agent3d.scoring import (
    FusedScorer,
    MemoryBankScorer,
    RegistrationScorer,
    ScoringState,
    SelfReferenceScorer,
)

TOLERANCE = dict(rtol=1e-6, atol=1e-9)  # equal up to the summation order of a batched nearest-neighbour search


@pytest.fixture(scope="module")
def references():
    return [lumpy_sphere(6000, seed=1), lumpy_sphere(6000, seed=3)]


@pytest.fixture(scope="module")
def dented():
    return plant_dent(lumpy_sphere(6000, seed=2), depth_fraction=0.01, radius_fraction=0.08, centre=100)[0]


def test_a_clouds_features_computed_a_batch_at_a_time_equal_one_pass():
    points = wavy_surface(3000)
    features = CloudFeatures(points)
    first, second = np.arange(0, 3000, 7), np.arange(0, 3000, 5)
    features.fpfh(first)
    np.testing.assert_array_equal(features.fpfh(second), fpfh(points, second))
    assert features.counts["normals"] == 1 and features.counts["fpfh"] == len(np.union1d(first, second))


@pytest.mark.parametrize("name", ["self-reference", "memory-bank", "registration", "fused"])
def test_scores_with_a_reused_state_equal_a_fresh_scoring_of_the_same_set(name, references, dented):
    scorer = {"self-reference": SelfReferenceScorer(bank_size=1024), "memory-bank": MemoryBankScorer(),
              "registration": RegistrationScorer(), "fused": FusedScorer(n_probe=500)}[name].fit(references)
    first, second = grow_around(dented, np.array([100]), 400), grow_around(dented, np.array([100, 3000]), 900)
    state = ScoringState(dented)
    scorer.score_samples(dented, first, state)
    for indices in (second, first):  # a larger set after a first batch, then the first one again
        np.testing.assert_allclose(scorer.score_samples(dented, indices, state), scorer.score_samples(dented, indices),
                                   **TOLERANCE)


def test_a_second_batch_does_not_recompute_the_clouds_state():
    points = wavy_surface(4000)
    scorer, state = SelfReferenceScorer(bank_size=512), ScoringState(points)
    first, second = np.arange(0, 1000), np.arange(500, 1500)
    scorer.score_samples(points, first, state)
    after_first = state.counts["fpfh"]
    scorer.score_samples(points, second, state)
    assert state.counts["normals"] == 1 and state.counts["self-reference bank"] == 1
    bank = after_first - len(first)  # the bank's points outside the first batch were featurized with it
    assert bank <= 512 and state.counts["fpfh"] - after_first <= 500  # only the 500 new points, at most
    with pytest.raises(ValueError, match="only the cloud it was made for"):
        scorer.score_samples(points + 1.0, first, state)


def test_adaptive_growth_with_a_state_scores_each_point_once_and_gives_the_same_set_and_scores():
    points, labels = plant_bump(wavy_surface(3000, seed=1), radius=0.2, height=0.05)
    inside = np.flatnonzero(labels)
    core = grow_around(points, inside[:1], len(inside))
    scorer, state = SelfReferenceScorer(seed=0), ScoringState(points)
    shared, shared_scores = grow_adaptive(points, core, 2 * len(inside),
                                          lambda indices: scorer.score_samples(points, indices, state))
    fresh, fresh_scores = grow_adaptive(points, core, 2 * len(inside),
                                        lambda indices: scorer.score_samples(points, indices))
    np.testing.assert_array_equal(shared, fresh)
    np.testing.assert_allclose(shared_scores, fresh_scores, **TOLERANCE)
    assert len(shared) <= 2 * len(inside) and labels[shared].sum() >= 0.85 * len(inside)
    assert state.counts["normals"] == 1 and state.counts["self-reference bank"] == 1
    assert state.counts["fpfh"] <= len(shared) + scorer.bank_size  # no point featurized twice across the rounds


def test_the_cascade_is_seeded_and_scores_a_bump_no_reading_names():
    from agent3d.cloud import PointCloud
    from agent3d.config import DetectConfig
    from agent3d.pipeline import detect
    from agent3d.synth import DefectParams, plant

    points = wavy_surface(6000)
    bumped, labels, _ = plant("bulge", points, np.tile([0.0, 0.0, 1.0], (6000, 1)),
                              DefectParams(radius=0.05, depth=0.04), np.random.default_rng(3))
    cloud = PointCloud(bumped, labels=labels.astype(np.uint8), source="bump")
    config = DetectConfig(gating="cascade", max_suspects=2, budget=0.1)
    found, again = detect(cloud, config), detect(cloud, config)
    assert found.seeds == again.seeds and np.array_equal(found.scores, again.scores) and len(found.seeds) == 2
    chance = detect(cloud, config.model_copy(update={"gating": "random"}))
    assert found.scored.sum() == 600 and found.scored[labels > 0].mean() > max(0.8, chance.scored[labels > 0].mean())
    assert found.scores[labels > 0].mean() > np.quantile(found.scores[found.scored & (labels == 0)], 0.9)


def test_the_self_reference_bank_is_the_set_farthest_point_sampling_chooses():
    from agent3d.sampling import farthest_point_sampling
    from agent3d.scoring.self_reference import farthest_point_set

    for seed, points in enumerate((wavy_surface(5000), lumpy_sphere(6000), np.random.default_rng(1).random((3000, 3)))):
        np.testing.assert_array_equal(farthest_point_set(points, 700, seed),
                                      np.sort(farthest_point_sampling(points, 700, seed)))
    assert len(farthest_point_set(points, 5000)) == 3000  # asked for more than there are: every point


def test_surface_variation_stands_out_on_a_bump_and_a_large_cloud_is_measured_on_its_working_cloud():
    from agent3d.evaluation.metrics import auroc
    from agent3d.geometry import surface_variation

    points, labels = plant_bump(wavy_surface(8000), radius=0.15, height=0.06)
    full = surface_variation(points, k=64)
    assert full.shape == (8000,) and np.all((full >= 0) & (full <= 1 / 3)) and auroc(labels, full) > 0.9
    subsampled = surface_variation(points, k=64, max_points=4000)  # 32 neighbours of a half: the same size
    assert auroc(labels, subsampled) > 0.9 and np.corrcoef(full, subsampled)[0, 1] > 0.8
