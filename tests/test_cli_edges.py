"""Every option's edges, over the whole command line (property tests): a number at or beyond its range, or not a
number, and a path option pointed at a file, a folder, a FIFO, a symlink to outside, ``/proc`` or a folder nothing
can be made in, ends with exit 0 or with one line and exit 2: no traceback, nothing written when refused.

The numeric cases give a missing input, so a value in range is refused for the input (in one line) and one out of
range for the option: the range is checked before any file is read or model loaded.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import typing
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.cli.common import field_bounds
from agent3d.config import BackendConfig, DetectConfig, SynthConfig, TuneConfig

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parent.parent / "data_samples" / "surface_00.txt"
FIELDS = {name: field for model in (DetectConfig, BackendConfig, TuneConfig, SynthConfig)
          for name, field in model.model_fields.items()}
EDGES = ["-1", "0", "1", "-0", "1e30", "-1e30", "99999999999999999999999", "nan", "inf", "-inf", "abc", "1.5", "",
         "0x10", "1_000", "2.0", " 7"]


def commands() -> dict[str, typing.Callable]:
    """Every command's callback by its words (``runs compare``)."""
    found = {info.callback.__name__: info.callback for info in app.registered_commands}
    for group in app.registered_groups:
        found.update({f"{group.name} {info.name or info.callback.__name__}": info.callback
                      for info in group.typer_instance.registered_commands})
    return found


def numeric_options() -> list[tuple[str, str, type, tuple]]:
    """(command, --option, int or float, (min, max, open lower bound)) for every numeric option of every command."""
    options = []
    for words, callback in commands().items():
        for name, parameter in inspect.signature(callback).parameters.items():
            info, kind = parameter.default, parameter.annotation
            kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
            if not isinstance(info, typer.models.OptionInfo) or kind not in (int, float, "int", "float"):
                continue
            kind = {"int": int, "float": float}.get(kind, kind)
            flag = next((d for d in info.param_decls if d.startswith("--")), "--" + name.replace("_", "-"))
            above = field_bounds(FIELDS[name])[2] if name in FIELDS else None
            options.append((words, flag, kind, (info.min, info.max, above)))
    return options


NUMERIC = numeric_options()


def in_range(text: str, kind: type, bounds: tuple) -> bool:
    """Whether ``text`` is a finite ``kind`` within ``bounds``, as the command line should judge it."""
    try:  # an integer may be written with a zero fraction ("2.0"), never with an exponent
        value = float(text) if kind is float else int(re.sub(r"\.0*\s*$", "", text), 10)
    except ValueError:
        return False
    low, high, above = bounds
    return (math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
            and (above is None or value > above))


def missing_input_call(words: str, tmp: Path) -> list[str]:
    """A call of ``words`` whose input does not exist (and whose outputs would go into ``tmp``)."""
    missing = str(tmp / "missing.txt")
    return {"detect": ["detect", missing], "evaluate": ["evaluate", missing, "--out", str(tmp / "run")],
            "tune": ["tune", missing, "--out", str(tmp / "adapter")],
            "synth": ["synth", missing, "--out", str(tmp / "data")],
            "render": ["render", missing, "--out", str(tmp / "x.png")],
            "prompts render": ["prompts", "render", "geom", missing],
            "runs compare": ["runs", "compare", str(tmp / "a#x"), str(tmp / "b#y")]}.get(words, words.split())


def one_line_or_done(result) -> None:
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("agent3d: "), result.stderr


def test_every_command_has_its_numeric_options_found():
    found = {(words, flag) for words, flag, _, _ in NUMERIC}
    assert {("detect", "--seed"), ("evaluate", "--concurrency"), ("evaluate", "--bootstrap"), ("tune", "--lr"),
            ("synth", "--noise"), ("render", "--views"), ("runs compare", "--bootstrap"),
            ("prompts render", "--seed")} <= found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(NUMERIC), text=st.one_of(st.sampled_from(EDGES), st.integers().map(str),
                                                       st.floats().map(repr)))
def test_a_number_beyond_its_range_is_one_line_naming_the_option_before_any_input_is_read(tmp_path, option, text):
    words, flag, kind, bounds = option
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, [*missing_input_call(words, tmp_path), f"{flag}={text}"])
    one_line_or_done(result)
    assert result.exit_code == 2 and sorted(tmp_path.rglob("*")) == before
    if in_range(text, kind, bounds):  # refused for the missing input (or an option its backend does not use)
        assert "Input should be" not in result.stderr, (text, result.stderr)
    else:
        assert flag in result.stderr and "Input should be" in result.stderr, (text, result.stderr)


def hostile_places(tmp: Path) -> dict[str, Path]:
    """A file, a folder, a FIFO, a symlink to a folder outside ``tmp``, a place under ``/proc``, and a folder in
    which nothing can be made (``/sys/kernel`` even for root; a mode-0555 folder for anyone else)."""
    (tmp / "a-file").write_text("1 2 3\n")
    (tmp / "a-folder").mkdir()
    os.mkfifo(tmp / "a-fifo")
    outside = tmp.parent / f"{tmp.name}-outside"
    outside.mkdir(exist_ok=True)
    (tmp / "a-link").symlink_to(outside)
    places = {"file": tmp / "a-file", "folder": tmp / "a-folder", "fifo": tmp / "a-fifo", "link": tmp / "a-link",
              "proc": Path("/proc/agent3d-test/x"), "no-write": Path("/sys/kernel/agent3d-test")}
    if os.geteuid() != 0:
        (tmp / "locked").mkdir(mode=0o555)
        places["no-write"] = tmp / "locked" / "x"
    return places


def snapshot(root: Path) -> dict[Path, int | None]:
    """Every path under ``root`` with its file's modification time (None for a folder, a FIFO or a link)."""
    return {p: p.stat().st_mtime_ns if p.is_file() and not p.is_symlink() else None for p in root.rglob("*")}


PATH_OPTIONS = {
    "detect": (["detect", "FILE", "--gating", "saliency", "--guidance-reader", "none"],
               ["--out", "--log-dir", "--gt", "--reference", "--prompts-dir", "--config", "FILE"]),
    "evaluate": (["evaluate", "DATASET", "--gating", "random", "--bootstrap", "0", "--guidance-reader",
                  "none"], ["--out", "--reference", "--prompts-dir", "--config", "--guidance-set", "DATASET"]),
    "render": (["render", "SOURCE"], ["--out", "SOURCE"]),
    "synth": (["synth", "MISSING", "--n", "1"], ["--out"]),
    "tune": (["tune", "FILE", "--method", "features"], ["--out", "--val", "--prompts-dir", "--config", "FILE"]),
}


@pytest.mark.parametrize("command", sorted(PATH_OPTIONS))
def test_every_path_option_at_a_hostile_place_is_done_or_one_line(tmp_path, command):
    base, flags = PATH_OPTIONS[command]
    places = hostile_places(tmp_path)
    for flag in flags:
        for kind, place in places.items():
            inputs = {"FILE": SAMPLE, "SOURCE": SAMPLE, "DATASET": SAMPLE.parent, "MISSING": tmp_path / "missing.obj"}
            call = [str(place if word == flag else inputs[word]) if word in inputs else word for word in base]
            if flag not in ("FILE", "DATASET", "SOURCE"):
                call += [flag, str(place)]
            if flag != "--out" and command != "detect":
                call += ["--out", str(tmp_path / f"out-{flag}-{kind}" / ("x.png" if command == "render" else "run"))]
            before = snapshot(tmp_path)
            result = runner.invoke(app, call)
            one_line_or_done(result)
            if result.exit_code:
                assert snapshot(tmp_path) == before, call
            assert not Path("/proc/agent3d-test").exists()
