"""Gating honours the budget and grows neighbourhoods around the suspects."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import wavy_surface

from agent3d.gating import (
    GATINGS,
    budget_count,
    gate,
    grow_around,
    random_seeds,
    saliency_seeds,
)

POINTS = wavy_surface(5000)


def test_llm_gating_spends_exactly_the_budget_around_the_suspects():
    suspects = np.array([10, 2000])
    chosen = gate("llm", POINTS, suspects, budget=0.1)
    assert len(chosen) == 500 and len(np.unique(chosen)) == 500
    assert set(suspects) <= set(chosen.tolist())
    distance = np.min(np.linalg.norm(POINTS[:, None] - POINTS[suspects][None], axis=2), axis=1)
    outside = np.setdiff1d(np.arange(5000), chosen)
    assert distance[chosen].max() <= distance[outside].min()  # the nearest points, nothing farther


def test_no_suspects_scores_nothing_and_all_scores_everything():
    assert len(gate("llm", POINTS, np.empty(0, dtype=np.int64), 0.1)) == 0
    np.testing.assert_array_equal(gate("all", POINTS, np.empty(0, dtype=np.int64), 0.1), np.arange(5000))


def test_budget_count_and_errors():
    assert budget_count(5000, 0.1) == 500 and budget_count(5000, 1e-9) == 1
    with pytest.raises(ValueError):
        budget_count(10, 0.0)
    with pytest.raises(ValueError, match="unknown gating"):
        gate("magic", POINTS, np.array([1]), 0.1)


def test_grow_around_duplicate_seeds_count_once():
    np.testing.assert_array_equal(grow_around(POINTS, np.array([5, 5]), 50), grow_around(POINTS, np.array([5]), 50))


@pytest.mark.parametrize("strategy", [g for g in GATINGS if g != "all"])
@pytest.mark.parametrize("budget", [0.01, 0.1, 0.35])
def test_every_budgeted_strategy_spends_exactly_the_budget(strategy, budget):
    chosen = gate(strategy, POINTS, np.array([3, 400, 4000]), budget)
    assert len(chosen) == budget_count(5000, budget) == round(budget * 5000)


def test_saliency_picks_the_most_curved_and_rough_shown_points():
    shown = np.arange(100, 110)
    curvature = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9.0])
    residual = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 8.0])
    assert saliency_seeds(shown, curvature, residual, 2).tolist() == [108, 109]


def test_random_seeds_are_repeatable_shown_points():
    shown = np.arange(500, 756)
    first = random_seeds(shown, 8, seed=4)
    assert len(set(first.tolist())) == 8 and set(first.tolist()) <= set(shown.tolist())
    np.testing.assert_array_equal(first, random_seeds(shown, 8, seed=4))
    assert not np.array_equal(first, random_seeds(shown, 8, seed=5))


def test_the_coarse_pass_counts_in_the_budget_and_finds_a_bump_no_reading_names():
    from agent3d.cloud import PointCloud
    from agent3d.config import DetectConfig
    from agent3d.pipeline import detect
    from agent3d.synth import DefectParams, plant

    points = wavy_surface(6000)
    bumped, labels, _ = plant("bulge", points, np.tile([0.0, 0.0, 1.0], (6000, 1)),
                              DefectParams(radius=0.05, depth=0.04), np.random.default_rng(3))
    cloud = PointCloud(bumped, labels=labels.astype(np.uint8), source="bump")
    found = detect(cloud, DetectConfig(gating="coarse", max_suspects=2, budget=0.1))
    chance = detect(cloud, DetectConfig(gating="random", max_suspects=2, budget=0.1))
    assert found.scored.sum() == budget_count(6000, 0.1) and 0 < found.scoring_seconds <= found.seconds
    assert found.scored[labels > 0].mean() > max(0.5, chance.scored[labels > 0].mean())  # a seed found the bump
    assert found.scores[labels > 0].mean() > np.quantile(found.scores[found.scored & (labels == 0)], 0.9)


@pytest.mark.parametrize("gating", ["saliency", "coarse", "random", "learned"])
def test_max_suspects_bounds_every_gatings_seeds_and_is_recorded(tmp_path, gating):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from agent3d.cli import app

    sample = Path(__file__).resolve().parent.parent / "data_samples" / "surface_05.txt"
    runner = CliRunner()
    for k in (3, 16):
        result = runner.invoke(app, ["detect", str(sample), "--gating", gating, "--max-suspects", str(k), "--json"])
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["seeds"]) == k
    result = runner.invoke(app, ["evaluate", str(sample.parent), "--gating", gating, "--max-suspects", "5",
                                 "--n-points", "32", "--bootstrap", "0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["detect"]["max_suspects"] == 5


def test_every_configured_gating_is_one_strategy_object():
    from agent3d.base import GATINGS
    from agent3d.gating import STRATEGIES, strategy

    assert tuple(STRATEGIES) == GATINGS
    assert [g for g in GATINGS if strategy(g).needs_backend] == ["llm"] == [g for g in GATINGS
                                                                          if strategy(g).per_prompt]
    assert [g for g in GATINGS if not strategy(g).budgeted] == ["all"]
    with pytest.raises(ValueError, match="unknown gating"):
        strategy("magic")
