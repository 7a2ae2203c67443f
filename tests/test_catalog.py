"""agent3d prompts (list, show, render) and agent3d runs (list, compare)."""

from __future__ import annotations

import json

from conftest import SAMPLE
from test_evaluation import write_labeled
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.evaluation.runs import compare

runner = CliRunner()


def test_prompts_list_and_show():
    listed = runner.invoke(app, ["prompts", "list"])
    assert listed.exit_code == 0
    for name, fmt in (("baseline", "xyz"), ("geom", "xyz+geom"), ("regions", "regions")):
        assert name in listed.stdout and fmt in listed.stdout
    shown = runner.invoke(app, ["prompts", "show", "regions"])
    assert shown.exit_code == 0 and "## system" in shown.stdout and "## zoom" in shown.stdout
    missing = runner.invoke(app, ["prompts", "show", "nope"])
    assert missing.exit_code == 2 and "unknown prompt 'nope'" in missing.stderr


def test_prompts_render_prints_the_exact_text_and_its_tokens_without_the_model(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"name": "mine", "version": 2, "format": "xyz"}))
    (folder / "system.j2").write_text("Find defects; answer JSON.")
    (folder / "user.j2").write_text("{{ n_shown }} of {{ n_total }}:\n{{ points }}")
    (folder / "examples.json").write_text(json.dumps([{"user": "p0 1 2 3", "assistant": '{"suspects": []}'}]))
    result = runner.invoke(app, ["prompts", "render", "mine", str(SAMPLE), "--prompts-dir", str(tmp_path),
                                 "--n-points", "32"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    guided = runner.invoke(app, ["prompts", "render", "geom", str(SAMPLE), "--n-points", "8",
                                 "--guidance", "The ribs and sharp edges are normal."])
    assert guided.exit_code == 0 and "Guidance from the inspector: The ribs and sharp edges are normal." in guided.stdout
    assert "Guidance" not in runner.invoke(app, ["prompts", "render", "geom", str(SAMPLE), "--n-points", "8"]).stdout
    assert out.count("--- user ---") == 2 and "--- assistant ---" in out and "32 of 4000:" in out
    assert out.strip().splitlines()[-1].startswith("--- ") and "prompt tokens (llama-cpp" in out
    tokens = int(out.strip().splitlines()[-1].split()[1])
    assert 32 * 10 < tokens < 32 * 30


def make_run(root, out, gatings, budget):
    args = ["evaluate", str(root), "--out", str(out), "--n-points", "64", "--budget", str(budget)]
    for gating in gatings:
        args += ["--gating", gating]
    assert runner.invoke(app, args).exit_code == 0


def test_runs_list_and_compare(tmp_path):
    root = write_labeled(tmp_path / "d", references=False)
    make_run(root, tmp_path / "runs" / "a", ["random", "all"], 0.05)
    make_run(root, tmp_path / "runs" / "b", ["random", "saliency"], 0.3)
    listed = runner.invoke(app, ["runs", "list", str(tmp_path / "runs")])
    assert listed.exit_code == 0 and "│ a " in listed.stdout and "│ b " in listed.stdout
    compared = runner.invoke(app, ["runs", "compare", str(tmp_path / "runs" / "a"), str(tmp_path / "runs" / "b")])
    assert compared.exit_code == 0, compared.output
    assert "side by side" in compared.stdout and "saliency" in compared.stdout and "fraction_scored" in compared.stdout
    lines = compared.stdout.splitlines()  # A and B each on a line of their own, not a literal backslash-n
    assert lines[0].startswith("A = ") and lines[1].startswith("B = ") and "\\n" not in compared.stdout
    rows = runner.invoke(app, ["runs", "compare", f"{tmp_path / 'runs' / 'a'}#all", f"{tmp_path / 'runs' / 'b'}#saliency"])
    assert rows.exit_code == 0 and "all vs saliency" in rows.stdout
    bad = runner.invoke(app, ["runs", "compare", str(tmp_path / "runs" / "a"), f"{tmp_path / 'runs' / 'b'}#llm/x"])
    assert bad.exit_code == 2 and "no row 'llm/x'" in bad.stderr


def test_compare_marks_the_better_run_per_metric():
    a = {"llm/geom": {"p_auroc": 0.6, "o_auroc": None, "aupro": 0.2, "ap": 0.1, "suspect_recall": 0.5,
                      "fraction_scored": 0.1, "tokens_prompt": 5000.0, "tokens_completion": 100.0,
                      "llm_seconds": 40.0, "seconds": 45.0}}
    b = {"llm/geom": {**a["llm/geom"], "p_auroc": 0.7, "tokens_prompt": 6000.0, "aupro": 0.2}}
    by_metric = {d["metric"]: d for d in compare(a, b)}
    assert by_metric["p_auroc"]["better"] == "B" and abs(by_metric["p_auroc"]["delta"] - 0.1) < 1e-12
    assert by_metric["tokens_prompt"]["better"] == "A" and by_metric["aupro"]["better"] == "="
    assert by_metric["o_auroc"]["better"] == "" and by_metric["fraction_scored"]["better"] == ""
