"""Gating honours the budget and grows neighbourhoods around the suspects."""

from __future__ import annotations

import numpy as np
import pytest

from agent3d.gating import budget_count, gate, grow_around
from conftest import wavy_surface

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
