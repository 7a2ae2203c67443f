"""Prompt templates are data: shipped folders, user folders, rendering, and the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

from agent3d.prompts import load_prompt, shipped_prompts_dir
from agent3d.verbalize import FORMATS

VARIABLES = dict(points="p0 1 2 3", legend="id x y z", n_shown=1, n_total=10, tile=1, n_tiles=1, max_suspects=8,
                 guidance="")


@pytest.mark.parametrize("name", ["baseline", "geom"])
def test_shipped_prompts_load_and_render(name):
    prompt = load_prompt(name)
    assert prompt.format in FORMATS and prompt.version >= 1 and len(prompt.digest) == 12
    system, user = prompt.render(**VARIABLES)
    assert system["role"] == "system" and "JSON" in system["content"] and "8" in system["content"]
    assert user["role"] == "user" and "p0 1 2 3" in user["content"] and "region" not in user["content"]
    assert "region 2 of 3" in prompt.render(**{**VARIABLES, "tile": 2, "n_tiles": 3})[1]["content"]


def test_prompts_differ_in_format():
    assert load_prompt("baseline").format == "xyz" and load_prompt("geom").format == "xyz+geom"


def test_unknown_prompt_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: baseline, geom"):
        load_prompt("nope")


def test_user_prompt_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"name": "mine", "version": 3, "format": "xyz"}))
    (folder / "system.j2").write_text("Find defects.")
    (folder / "user.j2").write_text("{{ points }}")
    prompt = load_prompt("mine", tmp_path)
    assert prompt.version == 3 and prompt.render(**VARIABLES)[1]["content"] == "p0 1 2 3"
    (folder / "meta.json").write_text(json.dumps({"format": "poetry"}))
    with pytest.raises(ValueError, match="format must be"):
        load_prompt("mine", tmp_path)


def test_shipped_dir_is_the_top_level_prompts_folder_in_a_checkout():
    assert shipped_prompts_dir().resolve() in (ROOT / "prompts", ROOT / "agent3d" / "prompts")


@pytest.mark.slow
def test_wheel_contains_the_prompt_templates(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("agent3d-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for prompt in ("baseline", "geom"):
        for part in ("meta.json", "system.j2", "user.j2"):
            assert f"agent3d/prompts/{prompt}/{part}" in names
    shipped = Path(ROOT) / "agent3d" / "shipped"
    for file in shipped.rglob("*"):
        if file.is_file():  # the learned baseline (and a head, when one ships) travel in the wheel
            assert f"agent3d/shipped/{file.relative_to(shipped).as_posix()}" in names
