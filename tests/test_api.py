"""The Python API as the README and the Python guide show it: the examples run as written, on the bundled samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import agent3d

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    code = re.search(r"In Python.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data_samples").symlink_to(ROOT / "data_samples")
    names = {}
    exec(compile(code, "README.md", "exec"), names)
    assert names["result"].n_scored > 0 and set(names["summary"]["per_gating"]) == {"saliency", "random"}


def test_the_python_guide_example_runs_and_matches_the_cli(tmp_path, monkeypatch, capsys):
    page = ROOT / "docs" / "guide" / "python.md"
    code = re.search(r"```python\n(.*?)```", page.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data_samples").symlink_to(ROOT / "data_samples")
    exec(compile(code, str(page), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    figures = eval(printed[-1])  # the dict of P-AUROC per run
    assert set(figures) == {"saliency", "random"} and figures["saliency"] > figures["random"]
    summary = json.loads((tmp_path / "runs" / "api" / "summary.json").read_text())
    assert round(summary["per_gating"]["saliency"]["p_auroc"], 3) == figures["saliency"]


def test_import_agent3d_is_light_and_names_resolve_on_use():
    import subprocess
    import sys

    code = "import sys, agent3d; print('numpy' in sys.modules, agent3d.DetectConfig.__name__, 'pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "DetectConfig", "True"]
    assert set(agent3d.__all__) >= {"read_cloud", "DetectConfig", "detect", "evaluate", "build_scorer", "Detection"}


def test_api_errors_are_exceptions_not_exits(tmp_path):
    import pytest

    with pytest.raises(agent3d.InputError, match="no such file"):
        agent3d.detect(tmp_path / "missing.ply", agent3d.DetectConfig(gating="saliency"))
