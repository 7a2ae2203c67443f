"""Quantization, line formats, ranks, determinism and token-budget tiling."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import wavy_surface

from agent3d.geometry import local_geometry
from agent3d.sampling import sample
from agent3d.verbalize import quantize, ranks, split_into_tiles, verbalize

POINTS = wavy_surface(2000) * np.array([10.0, 10.0, 10.0]) + 100.0


def view_of(fmt: str, n: int = 64, seed: int = 0):
    shown = sample(POINTS, n, seed=seed)
    geometry = local_geometry(POINTS, shown) if fmt == "xyz+geom" else None
    return verbalize(POINTS, shown, geometry, fmt)


def test_quantize_range_and_one_scale_for_all_axes():
    q = quantize(POINTS)
    assert q.min() == 0 and q.max() == 99
    longest = int(np.argmax(np.ptp(POINTS, axis=0)))
    assert q[:, longest].max() == 99
    z = int(np.argmin(np.ptp(POINTS, axis=0)))
    assert q[:, z].max() < 99 * np.ptp(POINTS[:, z]) / np.ptp(POINTS, axis=0).max() + 1


def test_ranks_are_deciles_with_ties_shared():
    r = ranks(np.arange(100.0))
    assert r.min() == 0 and r.max() == 9 and np.all(np.bincount(r) == 10)
    assert set(ranks(np.ones(50))) == {0}


@pytest.mark.parametrize("fmt,n_fields", [("xyz", 4), ("xyz+geom", 5)])
def test_lines_hold_id_coordinates_and_summaries(fmt, n_fields):
    view = view_of(fmt)
    assert len(view.lines) == 64 and view.ids[0] == "p0"
    for pid, line, q in zip(view.ids, view.lines, view.quantized):
        fields = line.split()
        assert len(fields) == n_fields and fields[0] == pid
        assert [int(v) for v in fields[1:4]] == q.tolist()
    if fmt == "xyz+geom":
        assert all(len(line.split()[4]) == 3 for line in view.lines)
    np.testing.assert_array_equal(quantize(POINTS[view.indices]), view.quantized)


def test_lines_are_ordered_and_deterministic():
    view = view_of("xyz+geom", seed=5)
    assert view.lines == view_of("xyz+geom", seed=5).lines
    keys = [tuple(q) for q in view.quantized.tolist()]
    assert keys == sorted(keys)


def test_geom_format_needs_geometry():
    with pytest.raises(ValueError, match="needs the geometry"):
        verbalize(POINTS, np.arange(10), None, "xyz+geom")
    with pytest.raises(ValueError, match="unknown point format"):
        verbalize(POINTS, np.arange(10), None, "words")
    with pytest.raises(ValueError, match="regions are made by regions_view"):  # it used to return plain lines
        verbalize(POINTS, np.arange(10), None, "regions")


def test_tiles_fit_the_budget_and_cover_every_point_once():
    view = view_of("xyz", n=200)

    def n_tokens(rows):
        return 50 + 5 * len(rows)  # a template of 50 tokens, 5 per line

    tiles = split_into_tiles(view, n_tokens, max_tokens=400)
    assert len(tiles) > 1 and all(n_tokens(t) <= 400 for t in tiles)
    np.testing.assert_array_equal(np.sort(np.concatenate(tiles)), np.arange(200))
    assert split_into_tiles(view, n_tokens, max_tokens=10_000)[0].tolist() == list(range(200))


def test_tiles_are_spatially_compact():
    view = view_of("xyz", n=200)
    tiles = split_into_tiles(view, lambda rows: 5 * len(rows), max_tokens=500)
    extents = [np.ptp(view.quantized[t], axis=0).sum() for t in tiles]  # each tile spans less of the box
    assert len(tiles) > 1 and max(extents) < 0.8 * np.ptp(view.quantized, axis=0).sum()


def test_budget_too_small_for_one_point_raises():
    view = view_of("xyz", n=8)
    with pytest.raises(ValueError, match="single point"):
        split_into_tiles(view, lambda rows: 100 + len(rows), max_tokens=50)
