"""Evaluation: metrics on hand-computed cases, dataset layouts, resumable runs, the evaluate command."""

from __future__ import annotations

import json

import numpy as np
import open3d as o3d
import pytest
from conftest import plant_bump, wavy_surface
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.config import DetectConfig
from agent3d.datasets import expand_patterns, load_dataset
from agent3d.evaluation.metrics import (
    aupro,
    auroc,
    average_precision,
    gt_regions,
    suspect_recall,
)
from agent3d.evaluation.summary import summarize
from agent3d.evaluation.runner import run_evaluation
from agent3d.evaluation.store import ConfigMismatch, EvalConfig, prepare_output
from agent3d.io import InputError

runner = CliRunner()


# ---- metrics -------------------------------------------------------------------------------

def test_auroc_perfect_reversed_and_undefined():
    labels = np.array([0, 0, 0, 1, 1])
    assert auroc(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9])) == 1.0
    assert auroc(labels, -np.array([0.1, 0.2, 0.3, 0.8, 0.9])) == 0.0
    assert auroc(np.zeros(5), np.arange(5.0)) is None and average_precision(np.zeros(5), np.arange(5.0)) is None
    assert average_precision(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9])) == 1.0


def test_aupro_two_regions_by_hand():
    # 10 normal points scored 0..9; region 0 fully above every normal point; region 1 half above, half below.
    regions = np.array([-1] * 10 + [0, 0, 1, 1])
    scores = np.array(list(range(10)) + [100, 100, 100, -1], dtype=float)
    # from FPR 0 to 0.3 the mean overlap is (1 + 0.5) / 2 = 0.75, so the normalised area is 0.75
    assert aupro([regions], [scores]) == pytest.approx(0.75)
    perfect = np.where(regions >= 0, 100.0, np.arange(14.0))
    assert aupro([regions], [perfect]) == pytest.approx(1.0)
    assert aupro([regions], [-perfect]) == pytest.approx(0.0)


def test_aupro_pools_regions_over_samples_and_is_none_without_regions():
    a, b = np.array([-1, -1, -1, -1, 0]), np.array([-1, -1, -1, -1, 0])
    # sample a's region is found first, sample b's region only after every normal point
    value = aupro([a, b], [np.array([1, 2, 3, 4, 9.0]), np.array([5, 6, 7, 8, 0.0])])
    assert value == pytest.approx(0.5)
    assert aupro([np.full(4, -1)], [np.arange(4.0)]) is None


def test_regions_are_connected_components_on_the_radius_graph():
    points = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [10, 0, 0], [11, 0, 0], [20, 0, 0.0]])
    labels = np.array([1, 1, 0, 1, 1, 0])
    regions = gt_regions(points, labels, radius=1.5)
    assert regions[0] == regions[1] != regions[3] == regions[4] and regions[2] == regions[5] == -1


def test_suspect_recall_counts_regions_with_a_suspect_nearby():
    points = np.array([[0, 0, 0], [1, 0, 0], [10, 0, 0], [20, 0, 0.0]])
    regions = np.array([0, 0, 1, -1])
    assert suspect_recall(points, regions, np.array([3]), radius=1.0) == (0, 2)
    assert suspect_recall(points, regions, np.array([1, 3]), radius=1.0) == (1, 2)
    assert suspect_recall(points, regions, np.array([], dtype=np.int64), radius=1.0) == (0, 2)


# ---- layouts ---------------------------------------------------------------------------------

def labeled_cloud(seed: int, defect: bool = True, n: int = 1500):
    points = wavy_surface(n, seed=seed)
    return plant_bump(points, height=0.05) if defect else (points, np.zeros(n, dtype=np.uint8))


def write_labeled(folder, n_samples=4, references=True):
    folder.mkdir(parents=True)
    for i in range(n_samples):
        points, labels = labeled_cloud(i, defect=i % 2 == 0)
        np.savetxt(folder / f"s{i}.txt", np.column_stack([points, labels]), fmt="%.6f %.6f %.6f %d")
    if references:
        (folder / "references").mkdir()
        np.savetxt(folder / "references" / "ref.xyz", wavy_surface(1500, seed=99))
    return folder


def write_pcd(path, points):
    path.parent.mkdir(parents=True, exist_ok=True)
    o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)))


def test_labeled_folder_flat_and_with_classes(tmp_path):
    flat = load_dataset(write_labeled(tmp_path / "flat"))
    assert flat.layout == "labeled" and flat.classes == ["flat"] and len(flat.samples) == 4
    assert [p.name for p in flat.references["flat"]] == ["ref.xyz"]
    cloud = flat.samples[0].load()
    assert cloud.labels.sum() > 0 and len(cloud) == 1500
    write_labeled(tmp_path / "classes" / "a", 2, references=False)
    write_labeled(tmp_path / "classes" / "b", 2, references=False)
    both = load_dataset(tmp_path / "classes")
    assert both.classes == ["a", "b"] and both.references == {"a": [], "b": []}


def test_real3d_ad_layout(tmp_path):
    points, labels = labeled_cloud(0)
    write_pcd(tmp_path / "duck" / "train" / "0_template.pcd", wavy_surface(1500, seed=5))
    write_pcd(tmp_path / "duck" / "test" / "1_bulge.pcd", points)
    (tmp_path / "duck" / "gt").mkdir()
    np.savetxt(tmp_path / "duck" / "gt" / "1_bulge.txt", np.column_stack([points, labels]), fmt="%.6f %.6f %.6f %d")
    write_pcd(tmp_path / "duck" / "test" / "2_good.pcd", wavy_surface(1500, seed=6))
    data = load_dataset(tmp_path)
    assert data.layout == "real3d-ad" and [s.name for s in data.samples] == ["1_bulge", "2_good"]
    assert [p.name for p in data.references["duck"]] == ["0_template.pcd"]
    np.testing.assert_array_equal(data.samples[0].load().labels, labels)
    assert data.samples[1].load().labels.sum() == 0


def test_anomaly_shapenet_layout_matches_shuffled_gt(tmp_path):
    points, labels = labeled_cloud(1)
    write_pcd(tmp_path / "cup0" / "train" / "cup0_template0.pcd", wavy_surface(1500, seed=5))
    write_pcd(tmp_path / "cup0" / "test" / "cup0_bulge0.pcd", points)
    write_pcd(tmp_path / "cup0" / "test" / "cup0_positive0.pcd", wavy_surface(1500, seed=7))
    order = np.random.default_rng(0).permutation(len(points))
    (tmp_path / "cup0" / "GT").mkdir()
    np.savetxt(tmp_path / "cup0" / "GT" / "cup0_bulge0.txt", np.column_stack([points, labels])[order],
               delimiter=",", fmt="%.6f")
    data = load_dataset(tmp_path)
    assert data.layout == "anomaly-shapenet"
    by_name = {s.name: s for s in data.samples}
    np.testing.assert_array_equal(by_name["cup0_bulge0"].load().labels, labels)
    assert by_name["cup0_positive0"].load().labels.sum() == 0


def test_folder_matching_no_layout_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="not a dataset"):
        load_dataset(tmp_path / "x")


# ---- runner ----------------------------------------------------------------------------------

def config_for(root, gatings=("saliency", "random", "all"), budget=0.2, scorer="auto"):
    return EvalConfig(dataset=str(root), layout="labeled", gatings=list(gatings), prompts=[], prompt_hashes={},
                      detect=DetectConfig(budget=budget, n_points=64, scorer=scorer), version="test")


class Killed(Exception):
    pass


def summary_without_timing(out, config):
    summary = summarize(out, config.runs(), {})

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.endswith("seconds")}
        return node
    return strip(summary)


def test_killed_run_resumes_to_the_same_summary(tmp_path):
    data = load_dataset(write_labeled(tmp_path / "d"))
    config = config_for(tmp_path / "d")
    assert run_evaluation(data, config, tmp_path / "whole") == 12
    count = 0

    def kill_after_five(record):
        nonlocal count
        count += 1
        if count == 5:
            raise Killed

    with pytest.raises(Killed):
        run_evaluation(data, config, tmp_path / "resumed", on_record=kill_after_five)
    assert len((tmp_path / "resumed" / "samples.jsonl").read_text().splitlines()) == 5
    with open(tmp_path / "resumed" / "samples.jsonl", "a") as handle:
        handle.write('{"key": "torn')  # a writer killed mid-line
    assert run_evaluation(data, config, tmp_path / "resumed") == 7
    assert summary_without_timing(tmp_path / "resumed", config) == summary_without_timing(tmp_path / "whole", config)
    assert run_evaluation(data, config, tmp_path / "resumed") == 0


def test_other_configuration_in_the_same_folder_is_refused(tmp_path):
    config = config_for(tmp_path / "d")
    prepare_output(tmp_path / "out", config)
    with pytest.raises(ConfigMismatch, match="budget differ"):
        prepare_output(tmp_path / "out", config_for(tmp_path / "d", budget=0.3))


@pytest.mark.parametrize("scorer,expected", [("memory-bank", "memory-bank"), ("auto", "fused")])
def test_scorer_from_the_dataset_references_beats_chance(tmp_path, scorer, expected):
    data = load_dataset(write_labeled(tmp_path / "d"))
    run_evaluation(data, config_for(tmp_path / "d", gatings=("all",), scorer=scorer), tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert {r["scorer"] for r in records} == {expected}
    assert summarize(tmp_path / "out", [("all", None)], {})["p_auroc"] > 0.9


def test_evaluate_command_writes_the_three_files(tmp_path):
    root = write_labeled(tmp_path / "d", references=False)
    args = ["evaluate", str(root), "--gating", "saliency", "--gating", "cascade", "--gating", "all", "--out",
            str(tmp_path / "run"), "--n-points", "64", "--workers", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("p_auroc", "o_auroc", "aupro", "suspect_recall", "fraction_scored", "tokens_prompt",
                "tokens_completion", "seconds", "per_class", "per_gating"):
        assert key in summary
    assert set(summary["per_gating"]) == {"saliency", "cascade", "all"}
    assert summary["per_gating"]["all"]["fraction_scored"] == 1.0
    for run in ("saliency", "cascade"):
        assert summary["per_gating"][run]["fraction_scored"] == pytest.approx(0.1)
    assert summary["scorer"] == "self-reference" and summary["per_gating"]["all"]["suspect_recall"] is None
    for run in ("saliency", "all"):  # the scorer's share of the time is split out
        assert 0 < summary["per_gating"][run]["scoring_seconds"] <= summary["per_gating"][run]["seconds"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| saliency |" in report and "| cascade |" in report and "| all |" in report
    assert "cascade - all P-AUROC" in report  # every run against all, paired
    assert "P-AUROC" in result.stdout and "saliency" in result.stdout
    assert (tmp_path / "run" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(app, args[:-2] + ["--budget", "0.3"])
    assert again.exit_code == 2 and "another configuration" in again.stderr and len(again.stderr.splitlines()) == 1


@pytest.mark.slow
def test_evaluate_with_the_embedded_model(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    result = runner.invoke(app, ["evaluate", str(root), "--gating", "llm", "--gating", "random",
                                 "--prompt", "baseline", "--prompt", "geom", "--n-points", "32",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["run"] == "llm/baseline" and set(summary["per_prompt"]) == {"baseline", "geom"}
    assert summary["tokens_prompt"] > 32 * 10 and summary["per_gating"]["random"]["tokens_prompt"] == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert set(config["prompt_hashes"]) == {"baseline", "geom"} and config["version"]
    logged = (tmp_path / "run" / "llm_log.jsonl").read_text().splitlines()
    assert len(logged) >= 4 and all("messages" in json.loads(line) for line in logged)  # 2 samples x 2 prompts


def test_quoted_dataset_patterns_expand_sorted_and_a_pattern_matching_nothing_stays_to_be_refused(tmp_path):
    for name in ("s_1.txt", "s_0.txt", "b?.txt", "other.csv"):
        (tmp_path / name).write_text("0 0 0 0\n")
    found = expand_patterns([tmp_path / "s_?.txt", tmp_path / "b?.txt", str(tmp_path / "none_*.txt")])
    # a path that exists is taken as it is, even with a pattern character in its name
    assert found == [tmp_path / "s_0.txt", tmp_path / "s_1.txt", tmp_path / "b?.txt", tmp_path / "none_*.txt"]
    with pytest.raises(InputError, match="none_"):
        load_dataset(found[-1])

