"""Bootstrap intervals and paired comparisons: the resampled metrics equal the plain ones, duplication equals
weight, a real difference is found and no difference is not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_evaluation import write_labeled
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.evaluation.metrics import aupro, auroc, average_precision
from agent3d.evaluation.statistics import ClassCurves, format_difference, intervals, paired_difference

runner = CliRunner()


def synthetic_class(n_samples=12, n_points=300, signal=1.0, seed=0, decimals=2):
    rng = np.random.default_rng(seed)
    labels, scores, regions = [], [], []
    for i in range(n_samples):
        label = np.zeros(n_points, dtype=np.uint8)
        label[: 10 + i] = 1
        region = np.where(label == 1, 0, -1)
        region[5:10 + i][label[5:10 + i] == 1] = 1 if i % 2 else 0
        labels.append(label)
        scores.append(np.round(rng.normal(size=n_points) + signal * label, decimals))
        regions.append(region)
    return labels, scores, regions


def curves(labels, scores, regions, object_labels=None):
    n = len(labels)
    return ClassCurves(labels=labels, scores=scores, regions=regions,
                       object_labels=np.arange(n) % 2 if object_labels is None else np.asarray(object_labels),
                       object_scores=np.array([s.max() for s in scores]), hits=np.ones(n), regions_total=np.full(n, 2.0))


def test_unit_weights_give_the_plain_metrics_exactly_with_ties():
    labels, scores, regions = synthetic_class()
    found = curves(labels, scores, regions).metrics(np.ones(len(labels)), ("p_auroc", "aupro", "ap"))
    pooled_labels, pooled_scores = np.concatenate(labels), np.concatenate(scores)
    expected = [auroc(pooled_labels, pooled_scores), aupro(regions, scores), average_precision(pooled_labels, pooled_scores)]
    assert found == pytest.approx(expected, abs=1e-9)


def test_a_weight_of_two_is_a_duplicated_sample():
    labels, scores, regions = synthetic_class(seed=3)
    weight = np.ones(len(labels))
    weight[[2, 5]] = [2, 0]
    duplicated = [i for i in range(len(labels)) for _ in range(int(weight[i]))]
    expected = curves([labels[i] for i in duplicated], [scores[i] for i in duplicated],
                      [regions[i] for i in duplicated], [i % 2 for i in duplicated]).metrics(np.ones(len(duplicated)))
    assert curves(labels, scores, regions).metrics(weight) == pytest.approx(expected, abs=1e-9)


def test_the_interval_holds_the_estimate_and_narrows_with_more_samples():
    few = curves(*synthetic_class(n_samples=6, seed=1))
    many = curves(*synthetic_class(n_samples=40, seed=1))
    for c in (few, many):
        low, high = intervals([c], n_resamples=400)["p_auroc"]
        assert low < c.metrics(np.ones(len(c.object_labels)), ("p_auroc",))[0] < high
    assert np.diff(intervals([many], 400)["p_auroc"])[0] < np.diff(intervals([few], 400)["p_auroc"])[0]
    assert intervals([few], 400)["suspect_recall"] == [0.5, 0.5]  # 1 hit of 2 regions in every sample


def test_a_paired_test_finds_a_real_difference_and_not_a_null_one():
    weak = curves(*synthetic_class(signal=0.2, seed=2))
    strong = curves(*synthetic_class(signal=1.5, seed=2))
    found = paired_difference([weak], [strong], n_resamples=500)["p_auroc"]
    assert found["diff"] > 0.2 and found["interval"][0] > 0 and found["p"] < 0.01
    same = paired_difference([weak], [weak], n_resamples=500)["p_auroc"]
    assert same["diff"] == 0 and same["interval"] == [0.0, 0.0] and same["p"] == 1.0


def test_evaluate_reports_intervals_and_paired_tests(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=6, references=False)
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "run"), "--gating", "saliency",
                                 "--gating", "random", "--gating", "all", "--n-points", "64", "--bootstrap", "300"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    saliency = summary["per_run"]["saliency"]
    low, high = saliency["intervals"]["p_auroc"]
    assert low <= saliency["p_auroc"] <= high and summary["bootstrap"] == 300
    versus = saliency["versus"]["random"]["p_auroc"]
    assert versus["diff"] == pytest.approx(saliency["p_auroc"] - summary["per_run"]["random"]["p_auroc"], abs=1e-3)
    assert 0 < versus["p"] <= 1 and summary["per_run"]["all"]["versus"] == {}  # every other run against all
    assert {name: set(run["versus"]) for name, run in summary["per_run"].items()} == {
        "saliency": {"all", "random"}, "random": {"all"}, "all": set()}
    line = f"saliency - random P-AUROC: {versus['diff']:+.3f} [{versus['interval'][0]:+.3f}, {versus['interval'][1]:+.3f}]"
    assert line in (tmp_path / "run" / "report.md").read_text() and line in result.stdout
    assert line in (tmp_path / "run" / "report.html").read_text()
    compared = runner.invoke(app, ["runs", "compare", f"{tmp_path / 'run'}#random", f"{tmp_path / 'run'}#all",
                                   "--bootstrap", "200"])
    assert compared.exit_code == 0 and "0 outside" in compared.stdout and "yes" in compared.stdout


def test_the_paired_permutation_test_cannot_claim_more_than_three_samples_support():
    """Issue: a paired bootstrap over 3 samples printed p = 0.002. The exact permutation test over 2^3 swaps
    gives at least 2/8 two-sided, however large the difference; two identical runs give p = 1."""
    weak = curves(*synthetic_class(n_samples=3, signal=0.0, seed=4))
    strong = curves(*synthetic_class(n_samples=3, signal=3.0, seed=4))
    found = paired_difference([weak], [strong], n_resamples=500)
    assert found["p_auroc"]["diff"] > 0.3
    assert all(found[m]["p"] is None or found[m]["p"] >= 0.25 for m in found)
    assert found["p_auroc"]["n"] == 3 and found["p_auroc"]["reliable"] is False
    same = paired_difference([strong], [strong], n_resamples=500)
    assert same["p_auroc"]["p"] == 1.0 and same["p_auroc"]["diff"] == 0


def test_the_permutation_test_is_exact_for_few_samples_and_pairs_within_classes():
    """With 10 samples (1,024 swap patterns) the test enumerates them: the smallest p is 2/1024."""
    weak = curves(*synthetic_class(n_samples=10, signal=0.0, seed=5))
    strong = curves(*synthetic_class(n_samples=10, signal=3.0, seed=5))
    found = paired_difference([weak], [strong], n_resamples=100)["p_auroc"]
    assert found["p"] == pytest.approx(2 / 1024) and found["reliable"] is True
    line = format_difference("b", "a", "P-AUROC", found)
    assert "n = 10" in line and "unreliable" not in line
