"""Local summaries and FPFH on surfaces whose geometry is known."""

from __future__ import annotations

import numpy as np

from agent3d.features import fpfh
from agent3d.geometry import local_geometry


def grid_plane(n_side: int = 40, spacing: float = 1.0) -> np.ndarray:
    u, v = np.meshgrid(np.arange(n_side) * spacing, np.arange(n_side) * spacing)
    return np.column_stack([u.ravel(), v.ravel(), np.zeros(n_side * n_side)])


def sphere(n: int = 2000, radius: float = 1.0, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return radius * v / np.linalg.norm(v, axis=1, keepdims=True)


def test_plane_is_flat_with_vertical_normals():
    points = grid_plane()
    geometry = local_geometry(points, np.arange(len(points)))
    assert np.allclose(np.abs(geometry.normals[:, 2]), 1.0)
    assert geometry.curvature.max() < 1e-9 and geometry.residual.max() < 1e-6


def test_sphere_normals_point_outward_and_curvature_is_positive():
    points = sphere()
    geometry = local_geometry(points, np.arange(len(points)))
    assert np.all(np.sum(geometry.normals * points, axis=1) > 0.9)
    assert geometry.curvature.mean() > 1e-3


def test_summaries_are_unit_free():
    points = sphere()
    query = np.arange(0, 2000, 7)
    small, large = local_geometry(points, query), local_geometry(points * 1000.0, query)
    np.testing.assert_allclose(small.curvature, large.curvature, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(small.residual, large.residual, rtol=1e-6)
    np.testing.assert_allclose(small.density, large.density, rtol=1e-6)


def test_density_is_higher_where_points_are_crowded():
    sparse = grid_plane(30, 1.0)
    dense = grid_plane(30, 0.25) + np.array([40.0, 0.0, 0.0])
    points = np.vstack([sparse, dense])
    geometry = local_geometry(points, np.array([465, 900 + 465]))
    assert geometry.density[1] > 3 * geometry.density[0]


def test_fpfh_multiscale_shape_and_subset_rows_match():
    points = sphere(1500)
    every = fpfh(points)
    some = fpfh(points, np.array([3, 500, 1499]))
    assert every.shape == (1500, 99) and some.shape == (3, 99)
    np.testing.assert_allclose(some, every[[3, 500, 1499]], atol=1e-5)
    np.testing.assert_allclose(every[:, :33].sum(axis=1), 3.0, atol=1e-3)  # three sub-histograms, each summing to 1
