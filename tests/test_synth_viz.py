"""Synthetic defects, renders and the HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT, wavy_surface
from PIL import Image
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.datasets import load_dataset
from agent3d.synth import DEFECTS, DefectParams, load_surface, make_dataset, plant
from agent3d.viz import render

ROCKER = ROOT.parent / "shared" / "data" / "scans" / "rocker-arm.obj"
runner = CliRunner()


@pytest.fixture(scope="module")
def surface():
    if ROCKER.is_file():
        return load_surface(ROCKER, 8000, seed=1)
    points = wavy_surface(8000)
    from agent3d.geometry import local_geometry
    return points, local_geometry(points, np.arange(8000)).normals


@pytest.mark.parametrize("kind", [k for k in DEFECTS if k not in ("hole", "contamination")])
def test_displacement_defects_change_only_the_labeled_points(surface, kind):
    points, normals = surface
    moved, labels, record = plant(kind, points, normals, DefectParams(), np.random.default_rng(3))
    changed = np.any(moved != points, axis=1)
    assert labels.sum() > 10 and record["n_labeled"] == labels.sum() and record["type"] == kind
    assert not changed[labels == 0].any() and changed[labels == 1].mean() > 0.9


def test_hole_removes_points_and_labels_the_ring(surface):
    points, normals = surface
    kept, labels, record = plant("hole", points, normals, DefectParams(), np.random.default_rng(3))
    assert len(kept) < len(points) and labels.sum() > 10
    rows = {tuple(p) for p in points.tolist()}
    assert all(tuple(p) in rows for p in kept.tolist())  # nothing moved, only removed
    centre = np.asarray(record["centre"])
    distance = np.linalg.norm(kept - centre, axis=1)
    assert distance[labels == 1].max() < 1.3 * record["radius"] <= distance[labels == 0].min() * 1.3


def test_contamination_adds_labeled_points_only(surface):
    points, normals = surface
    grown, labels, _ = plant("contamination", points, normals, DefectParams(), np.random.default_rng(3))
    np.testing.assert_array_equal(grown[: len(points)], points)
    assert labels[: len(points)].sum() == 0 and labels[len(points):].all() and len(grown) > len(points)


def test_same_seed_same_defect(surface):
    points, normals = surface
    a = plant("crack", points, normals, DefectParams(), np.random.default_rng(9))
    b = plant("crack", points, normals, DefectParams(), np.random.default_rng(9))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.skipif(not ROCKER.is_file(), reason="needs shared/data/scans")
def test_synth_command_writes_a_dataset_the_evaluate_loader_reads(tmp_path):
    result = runner.invoke(app, ["synth", str(ROCKER), "--out", str(tmp_path / "d"), "--n", "8",
                                 "--n-points", "3000", "--defects", "bulge,hole,contamination", "--seed", "4"])
    assert result.exit_code == 0, result.output
    data = load_dataset(tmp_path / "d")
    assert data.layout == "labeled" and len(data.samples) == 8 and len(data.references["d"]) == 3
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert [s["type"] for s in manifest["samples"]] == ["good", "good", "bulge", "hole", "contamination",
                                                         "bulge", "hole", "contamination"]
    for sample, record in zip(data.samples, manifest["samples"]):
        labels = sample.load().labels
        assert labels.sum() == record["n_labeled"] and (labels.sum() > 0) == (record["type"] != "good")
    again = tmp_path / "again"
    runner.invoke(app, ["synth", str(ROCKER), "--out", str(again), "--n", "8", "--n-points", "3000",
                        "--defects", "bulge,hole,contamination", "--seed", "4"])
    assert (again / "003_hole.txt").read_text() == (tmp_path / "d" / "003_hole.txt").read_text()


def test_synth_refuses_unknown_defects_and_missing_sources(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "none.obj"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "no such file" in result.stderr
    with pytest.raises(ValueError, match="defects must be among"):
        make_dataset(tmp_path / "none.obj", tmp_path / "d", defects=("warp",))


@pytest.mark.parametrize("views,size", [(2, (640, 300)), (4, (1000, 320))])
def test_render_writes_a_png_of_the_requested_size(tmp_path, views, size):
    points = wavy_surface(3000)
    scores = points[:, 0] ** 2
    path = render(tmp_path / "r.png", points, scores, (scores > 0.8).astype(np.uint8), np.array([1, 2]),
                  n_views=views, size=size)
    image = Image.open(path)
    assert image.size == size
    pixels = np.asarray(image.convert("RGB"))
    assert (pixels < 250).any(axis=2).mean() > 0.02  # something was drawn


def test_render_command_on_a_detect_folder(tmp_path):
    sample = ROOT / "data_samples" / "surface_00.txt"
    assert runner.invoke(app, ["detect", str(sample), "--gating", "all", "--out", str(tmp_path / "o")]).exit_code == 0
    result = runner.invoke(app, ["render", str(tmp_path / "o"), "--out", str(tmp_path / "h.png"), "--views", "2",
                                 "--width", "500", "--height", "250"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "h.png").size == (500, 250)
    bad = runner.invoke(app, ["render", str(tmp_path / "o"), "--out", str(tmp_path / "x.png"), "--views", "7"])
    assert bad.exit_code == 2 and not (tmp_path / "x.png").exists()


def test_html_report_holds_the_table_and_the_images(tmp_path):
    from test_evaluation import write_labeled

    root = write_labeled(tmp_path / "d", references=False)
    result = runner.invoke(app, ["evaluate", str(root), "--gating", "all", "--gating", "random", "--n-points", "64",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<table>" in page and "<td>all</td>" in page and "<td>random</td>" in page
    assert page.count('<img src="data:image/png;base64,') == 1 + 2 * 3  # ROC + best, median, worst per run
    renders = sorted(p.name for p in (tmp_path / "run" / "renders").iterdir())
    assert [name.split("_")[:3] for name in renders] == [[run, "d", tag] for run in ("all", "random")
                                                         for tag in ("best", "median", "worst")]
    assert "random: d / " in page and "all: d / " in page
