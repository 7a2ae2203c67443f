"""The budget sweep: one evaluation per budget, the trade-off table and plot (issue: gating that follows the anomaly,
item 4)."""

from __future__ import annotations

import json

from test_evaluation import write_labeled
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.evaluation.tradeoff import tradeoff_rows

runner = CliRunner()


def test_a_budget_sweep_writes_one_evaluation_per_budget_and_the_tradeoff(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    out = tmp_path / "sweep"
    args = ["evaluate", str(root), "--gating", "saliency", "--gating", "all", "--n-points", "64", "--bootstrap", "20",
            "--budget", "0.2", "--budget", "0.05", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for budget in ("0.05", "0.2"):  # each a whole evaluation, with its own configuration
        config = json.loads((out / f"budget-{budget}" / "config.json").read_text())
        assert config["detect"]["budget"] == float(budget)
    rows = json.loads((out / "tradeoff.json").read_text())["runs"]
    assert [r["budget"] for r in rows["saliency"]] == [0.05, 0.2]  # budget order, whatever the order given
    assert [round(r["fraction_scored"], 2) for r in rows["saliency"]] == [0.05, 0.2]
    assert all(r["fraction_scored"] == 1.0 for r in rows["all"])
    for row in rows["saliency"]:  # the seconds split adds up
        assert row["scoring_seconds"] > 0
        assert abs(row["llm_seconds"] + row["scoring_seconds"] + row["other_seconds"] - row["seconds"]) < 1e-9
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert "| saliency | 0.05 |" in (out / "tradeoff.md").read_text()
    assert "budget trade-off" in result.stdout
    assert runner.invoke(app, args).exit_code == 0  # run again: every budget resumes, nothing is redone twice


def test_a_sweep_into_a_foreign_folder_or_out_of_range_is_refused_in_one_line(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    base = ["evaluate", str(root), "--gating", "saliency", "--budget", "0.1"]
    for extra, words in ((["--budget", "0.2", "--out", str(tmp_path / "taken")], "not a budget sweep's"),
                         (["--budget", "1.5", "--out", str(tmp_path / "new")], "--budget")):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2 and words in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "new").exists() and sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


def test_tradeoff_rows_split_the_seconds_and_keep_missing_figures_missing():
    summary = {"per_run": {"saliency": {"fraction_scored": 0.1, "p_auroc": 0.8, "aupro": None, "seconds": 2.0,
                                        "llm_seconds": 0.5, "scoring_seconds": 1.0, "intervals": {"p_auroc": [0.7, 0.9]}}}}
    row, = tradeoff_rows({0.1: summary})["saliency"]
    assert row["other_seconds"] == 0.5 and row["aupro"] is None and row["p_auroc_interval"] == [0.7, 0.9]
