"""Readers, ground-truth matching, writers, and every bad-input case of the issue."""

from __future__ import annotations

import json

import numpy as np
import open3d as o3d
import pytest
from conftest import SAMPLE, wavy_surface

from agent3d.io import InputError, read_cloud, read_gt
from agent3d.outputs import write_json, write_ply

POINTS = wavy_surface(200)
LABELS = (POINTS[:, 0] > 0.8).astype(np.uint8)


def test_sample_reads_with_labels():
    cloud = read_cloud(SAMPLE)
    assert cloud.points.shape == (4000, 3) and cloud.points.dtype == np.float64
    assert set(np.unique(cloud.labels)) == {0, 1}


@pytest.mark.parametrize("name,delimiter,header", [
    ("c.xyz", " ", ""), ("c.txt", " ", "x y z label\n"), ("c.csv", ",", "x,y,z,label\n"), ("c.pts", " ", "200\n")])
def test_text_formats(tmp_path, name, delimiter, header):
    path = tmp_path / name
    table = np.column_stack([POINTS, LABELS])
    path.write_text(header + "\n".join(delimiter.join(f"{v:.9g}" for v in row) for row in table) + "\n")
    cloud = read_cloud(path)
    np.testing.assert_allclose(cloud.points, POINTS, rtol=1e-8)
    np.testing.assert_array_equal(cloud.labels, LABELS)


def test_text_without_labels(tmp_path):
    path = tmp_path / "c.xyz"
    np.savetxt(path, POINTS)
    cloud = read_cloud(path)
    assert cloud.labels is None and len(cloud) == 200


def test_numpy_formats(tmp_path):
    np.save(tmp_path / "a.npy", np.column_stack([POINTS, LABELS]))
    np.savez(tmp_path / "b.npz", points=POINTS, labels=LABELS)
    for name in ("a.npy", "b.npz"):
        cloud = read_cloud(tmp_path / name)
        np.testing.assert_allclose(cloud.points, POINTS)
        np.testing.assert_array_equal(cloud.labels, LABELS)


def test_obj_vertices(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text("# mesh\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in POINTS) + "f 1 2 3\nvn 0 0 1\n")
    np.testing.assert_allclose(read_cloud(path).points, POINTS)


def test_ply_and_pcd_roundtrip_through_open3d(tmp_path):
    write_ply(tmp_path / "s.ply", POINTS, {"label": LABELS, "anomaly_score": POINTS[:, 2]})
    cloud = read_cloud(tmp_path / "s.ply")
    np.testing.assert_allclose(cloud.points, POINTS)
    np.testing.assert_array_equal(cloud.labels, LABELS)
    o3d.io.write_point_cloud(str(tmp_path / "s.pcd"), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(POINTS)))
    np.testing.assert_allclose(read_cloud(tmp_path / "s.pcd").points, POINTS, rtol=1e-6)


def test_written_ply_has_scalar_fields(tmp_path):
    path = tmp_path / "out" / "scores.ply"
    write_ply(path, POINTS, {"anomaly_score": np.arange(200.0), "suspect": LABELS})
    cloud = o3d.t.io.read_point_cloud(str(path))
    np.testing.assert_allclose(cloud.point["anomaly_score"].numpy().ravel(), np.arange(200.0))
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary left behind


def test_write_json_atomic(tmp_path):
    write_json(tmp_path / "d.json", {"a": 1})
    assert json.loads((tmp_path / "d.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]


def truncated_ply(tmp_path):
    path = tmp_path / "t.ply"
    write_ply(path, POINTS, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    return path


def text_file(path, text):
    path.write_text(text)
    return path


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.ply", "no such file"),
    "extension": (lambda d: text_file(d / "c.stl", "x"), "unknown extension"),
    "empty": (lambda d: text_file(d / "e.xyz", ""), "empty cloud"),
    "few": (lambda d: np.savetxt(d / "f.xyz", POINTS[:10]) or d / "f.xyz", "only 10 points"),
    "nan": (lambda d: np.savetxt(d / "n.xyz", np.vstack([POINTS, [np.nan, 0, 0]])) or d / "n.xyz", "NaN"),
    "inf": (lambda d: np.save(d / "i.npy", np.vstack([POINTS, [np.inf, 0, 0]])) or d / "i.npy", "infinite"),
    "columns": (lambda d: np.savetxt(d / "w.txt", np.ones((50, 5))) or d / "w.txt", "found 5"),
    "labels": (lambda d: np.savetxt(d / "l.txt", np.column_stack([POINTS, np.full(200, 2)])) or d / "l.txt",
               "labels must be 0 or 1"),
    "ragged": (lambda d: text_file(d / "r.txt", "1 2 3\n" * 20 + "1 2\n"), "not a numeric table"),
    "truncated": (truncated_ply, "truncated binary PLY"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_input_error_naming_file(tmp_path, case):
    make, reason = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        read_cloud(path)
    message = str(caught.value)
    assert reason in message and str(path) in message and "\n" not in message


@pytest.mark.parametrize("delimiter", [" ", ","])
def test_ground_truth_matched_by_nearest_neighbour(tmp_path, delimiter):
    order = np.random.default_rng(1).permutation(200)  # Anomaly-ShapeNet GT rows come in another order
    path = tmp_path / "gt.txt"
    np.savetxt(path, np.column_stack([POINTS, LABELS])[order], delimiter=delimiter, fmt="%.9g")
    np.testing.assert_array_equal(read_gt(path, POINTS), LABELS)


def test_ground_truth_of_another_cloud_is_refused(tmp_path):
    path = tmp_path / "gt.txt"
    np.savetxt(path, np.column_stack([POINTS + 5.0, LABELS]))
    with pytest.raises(InputError, match="does not match"):
        read_gt(path, POINTS)
