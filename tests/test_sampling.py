"""Farthest point sampling and voxel downsampling keep indices into the full cloud."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import wavy_surface
from scipy.spatial.distance import pdist

from agent3d.sampling import (
    farthest_point_sampling,
    sample,
    voxel_downsample,
    voxel_downsample_to,
)

POINTS = wavy_surface(3000)


def test_fps_count_unique_and_repeatable():
    first = farthest_point_sampling(POINTS, 128, seed=3)
    assert len(first) == 128 and len(np.unique(first)) == 128
    np.testing.assert_array_equal(first, farthest_point_sampling(POINTS, 128, seed=3))
    assert not np.array_equal(first, farthest_point_sampling(POINTS, 128, seed=4))


def test_fps_spreads_points_better_than_random():
    fps = farthest_point_sampling(POINTS, 128)
    rand = np.random.default_rng(0).choice(len(POINTS), 128, replace=False)
    assert pdist(POINTS[fps]).min() > 2 * pdist(POINTS[rand]).min()


def test_fps_each_new_point_is_the_farthest():
    chosen = farthest_point_sampling(POINTS, 10, seed=1)
    for i in range(1, 10):
        distance = np.min(np.linalg.norm(POINTS[:, None] - POINTS[chosen[:i]][None], axis=2), axis=1)
        assert distance[chosen[i]] == pytest.approx(distance.max())


def test_fps_keeps_everything_when_asked_for_more():
    np.testing.assert_array_equal(farthest_point_sampling(POINTS[:20], 50), np.arange(20))


def test_voxel_one_point_per_occupied_voxel():
    size = 0.2
    kept = voxel_downsample(POINTS, size)
    keys = np.floor((POINTS - POINTS.min(axis=0)) / size).astype(int)
    assert len(kept) == len(np.unique(keys, axis=0))
    assert len(np.unique(keys[kept], axis=0)) == len(kept)


def test_voxel_to_target_count():
    kept = voxel_downsample_to(POINTS, 256)
    assert 0.8 * 256 <= len(kept) <= 256


def test_sample_dispatch_and_errors():
    assert len(sample(POINTS, 64, "fps")) == 64
    voxel = sample(POINTS, 64, "voxel")
    assert 0.8 * 64 <= len(voxel) <= 64 and len(np.unique(voxel)) == len(voxel)
    with pytest.raises(ValueError, match="unknown sampling"):
        sample(POINTS, 64, "grid")
    with pytest.raises(ValueError):
        voxel_downsample(POINTS, 0.0)
