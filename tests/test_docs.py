"""The documentation site builds strictly (broken links, missing pages and unresolved API references fail), and its
CLI reference is the command line's own help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_the_documentation_site_builds_strictly_with_every_page(tmp_path):
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("guide/guidance", "results/guidance", "results/scoring-cost", "api", "cli", "changelog", "design"):
        assert (site / page / "index.html").is_file(), page
    assert "DefectSpec" in (site / "api" / "index.html").read_text()
    cli = (site / "cli" / "index.html").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert "guidance" in cli and "--guidance-reader" in cli and "cascade" in cli
    assert f"[{version}]" in (site / "changelog" / "index.html").read_text()  # this version is in the changelog
    assert "ScoringState" in (site / "api" / "index.html").read_text()


def test_the_readme_is_a_short_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("apt-get")]
    test = [c for c in commands if c.endswith("-m pytest")]
    assert len(commands) == 2 and len(test) == 1 and test[0] in ci.splitlines()  # CI runs the README's test command
    assert any(c.endswith("agent3d detect data_samples/surface_00.txt") for c in commands)
