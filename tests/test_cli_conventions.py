"""The CLI behaves like its neighbours: --version, -h, completion, readable help with examples, --config TOML,
models, doctor, --json lists, the verdict panel, announced outputs readable by others."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys

import pytest
from conftest import SAMPLE, terminal
from typer.testing import CliRunner

from agent3d import __version__
from agent3d.cli import app

runner = CliRunner()


def test_version_short_help_completion_metavars_and_examples():
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"agent3d {__version__}"
    top = runner.invoke(app, ["-h"])
    assert top.exit_code == 0 and "--install-completion" in top.stdout and "doctor" in top.stdout
    for command in (["detect"], ["evaluate"], ["synth"], ["models"], ["runs", "list"]):
        shown = runner.invoke(app, [*command, "-h"], terminal_width=200)
        assert shown.exit_code == 0, command
        assert "list[" not in shown.stdout and "<int" not in shown.stdout and "<float" not in shown.stdout
    assert "Examples" in runner.invoke(app, ["evaluate", "-h"], terminal_width=200).stdout
    assert "--concurrency" in runner.invoke(app, ["evaluate", "-h"], terminal_width=200).stdout


def test_config_file_fills_options_and_flags_win(tmp_path):
    config = tmp_path / "my.toml"
    config.write_text('gating = "saliency"\nbudget = 0.2\nn-points = 32\n')
    result = runner.invoke(app, ["detect", str(SAMPLE), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["gating"] == "saliency" and found["budget"] == 0.2
    flagged = json.loads(runner.invoke(app, ["detect", str(SAMPLE), "--config", str(config), "--json", "--budget",
                                             "0.05"]).stdout)
    assert flagged["budget"] == 0.05 and flagged["gating"] == "saliency"
    config.write_text("budget = 7\n")
    bad = runner.invoke(app, ["detect", str(SAMPLE), "--config", str(config)])
    assert bad.exit_code == 2 and bad.stderr.startswith(f"agent3d: {config}: budget:")
    config.write_text("budgett = 0.1\n")
    assert "unknown option 'budgett'" in runner.invoke(app, ["detect", str(SAMPLE), "--config", str(config)]).stderr
    config.write_text("budget = [\n")
    assert "not valid TOML" in runner.invoke(app, ["detect", str(SAMPLE), "--config", str(config)]).stderr


def test_models_and_doctor_describe_this_machine():
    from agent3d.llm.base import file_sha256
    from agent3d.llm.embedded import default_model_path

    report = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert report["backends"]["llama-cpp"]["ready"] and report["backends"]["transformers"]["ready"]
    assert report["embedded_model"]["sha256"] == file_sha256([default_model_path()])
    assert report["embedded_model"]["bytes"] == default_model_path().stat().st_size
    from agent3d.llm.head import shipped_head_dir

    shipped = sorted(p.name for p in shipped_head_dir().parent.iterdir() if p.is_dir())
    assert [name.split(" ")[0] for name in report["shipped_adapters"]] == shipped and report["optional"]["torch"]
    assert "features" in shipped
    checks = json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)
    assert checks["ok"] and {c["check"] for c in checks["checks"] if c["ok"]} >= {"cache folder writable"}
    dead = runner.invoke(app, ["doctor", "--json", "--base-url", "http://127.0.0.1:9/v1"])
    assert dead.exit_code == 3 and not json.loads(dead.stdout)["ok"]


def test_verdict_panel_and_announced_shareable_outputs(tmp_path):
    result = runner.invoke(app, ["detect", str(SAMPLE), "--gating", "saliency", "--json"])
    verdict = json.loads(result.stdout)["verdict"]
    assert list(verdict) == ["saliency", "learned", "cascade", "random", "all"] and verdict["all"]["regions_hit"] is None
    assert verdict["all"]["p_auroc"] > 0.9 and 0 <= verdict["saliency"]["regions_hit"] <= verdict["saliency"]["regions"]
    shown = runner.invoke(app, ["detect", str(SAMPLE), "--gating", "random", "--out", str(tmp_path / "r")],
                          terminal_width=200)
    assert "verdict" in shown.stdout and "random (this run)" in shown.stdout
    assert f"written: {tmp_path / 'r' / 'detection.json'}, {tmp_path / 'r' / 'scores.ply'}" in shown.stderr
    for name in ("detection.json", "scores.ply"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o644


@pytest.mark.parametrize("command", [["prompts", "list", "--json"]])
def test_list_commands_speak_json(command):
    listed = json.loads(runner.invoke(app, command).stdout)
    assert {p["name"] for p in listed} >= {"geom", "baseline"} and all(re.fullmatch(r"[0-9a-f]{12}", p["hash"])
                                                                        for p in listed)


def test_help_version_and_completion_load_no_numerical_library():
    # the shell runs the program on every TAB: the CLI's own import must not pull in the scoring stack
    code = ("import sys; import agent3d.cli; "
            "print(sorted(m for m in ('scipy', 'sklearn', 'open3d', 'llama_cpp', 'torch') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_live_status_follows_the_model_only_on_a_terminal():
    import io

    from rich.console import Console

    from agent3d.llm import status

    status.report(prompt_tokens=5)  # no status open: nothing happens
    assert status.current() is None
    shown_on = terminal()
    with status.live_status(True, shown_on):
        status.report(prompt_tokens=1324)
        assert status.current().startswith("model: 1,324 prompt tokens, reading the prompt")
        status.report(generated=12)
        assert "generating: 12 tokens" in status.current() and "tokens/s" in status.current()
    assert status.current() is None
    with status.live_status(True, Console(file=io.StringIO())):  # not a terminal: off
        status.report(prompt_tokens=3)
        assert status.current() is None
    with status.live_status(False, shown_on):  # --quiet
        assert status.current() is None


def test_a_bug_is_exit_1_with_its_traceback_and_a_request_to_report_it(monkeypatch):
    import agent3d.api

    def broken(*args, **kwargs):
        raise KeyError("an internal key")

    monkeypatch.setattr(agent3d.api, "run_detect", broken)
    result = runner.invoke(app, ["detect", str(SAMPLE), "--gating", "saliency"])
    assert result.exit_code == 1 and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("agent3d: internal error: this is a bug in agent3d")


def test_tune_and_synth_options_come_from_their_configurations_and_read_config_files(tmp_path):
    config = tmp_path / "synth.toml"
    config.write_text('n = 4\nn_points = 2000\ndefects = "bulge"\nreferences = 1\n')
    result = runner.invoke(app, ["synth", str(SAMPLE), "--out", str(tmp_path / "d"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert len(manifest["samples"]) == 4 and {s["type"] for s in manifest["samples"]} <= {"good", "bulge"}
    (tmp_path / "tune.toml").write_text("virtual_tokens = 0\n")
    result = runner.invoke(app, ["tune", str(tmp_path / "d"), "--out", str(tmp_path / "a"), "--config",
                                 str(tmp_path / "tune.toml")])
    assert result.exit_code == 2 and "virtual" in result.stderr and not (tmp_path / "a").exists()
    assert "--virtual-tokens" in runner.invoke(app, ["tune", "-h"], terminal_width=200).stdout
