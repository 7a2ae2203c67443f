"""Reading the model instead of asking it: per-line states, head adapters (train, apply, refuse), no torch needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.llm.head import HeadAdapter, forward
from agent3d.tuning.heads import f1_threshold, fit_head

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"


def write_head(folder: Path, arrays: dict | None = None, **record) -> Path:
    """A head adapter folder written by hand (the file format, not a trained head)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = arrays if arrays is not None else {"mean": np.zeros(8), "scale": np.ones(8), "w0": rng.normal(size=(8, 1)),
                                                "b0": np.zeros(1)}
    np.savez(folder / "head.npz", **arrays)
    base = {"method": "head", "base_model": {"name": "m.gguf", "sha256": "a" * 64},
            "prompt": {"name": "geom", "hash": "0123456789ab", "format": "xyz+geom"}, "guidance": "",
            "layer": "last", "pooling": "last token", "threshold": 0.5, "n_points": 64}
    (folder / "head.json").write_text(json.dumps({**base, **record}))
    return folder


def test_a_head_is_standardisation_then_layers_then_a_sigmoid(tmp_path):
    rng = np.random.default_rng(1)
    states = rng.normal(size=(200, 8))
    labels = (states[:, 0] + 0.3 * rng.normal(size=200) > 0.8).astype(int)
    for kind, strength in (("logistic", 1.0), ("mlp", 0.01)):
        arrays = fit_head(states, labels, kind, strength)
        probability = forward(arrays, states)
        assert probability.shape == (200,) and ((probability >= 0) & (probability <= 1)).all()
        assert probability[labels == 1].mean() > probability[labels == 0].mean() + 0.3
        loaded = HeadAdapter(write_head(tmp_path / kind, arrays))
        assert np.array_equal(loaded.predict_proba(states), probability)
    assert 0 < f1_threshold(labels, forward(fit_head(states, labels), states)) < 1


@pytest.mark.parametrize("arrays, message", [
    ({"mean": np.zeros(8), "scale": np.ones(8), "w0": np.ones((7, 1)), "b0": np.zeros(1)}, "do not chain"),
    ({"mean": np.zeros(8), "scale": np.ones(8), "w0": np.full((8, 1), np.nan), "b0": np.zeros(1)}, "finite"),
    ({"mean": np.zeros(8), "scale": np.ones(8)}, "needs arrays"),
    ({"mean": np.zeros(8), "scale": np.zeros(8), "w0": np.ones((8, 1)), "b0": np.zeros(1)}, "positive"),
])
def test_malformed_head_weights_are_refused_in_one_line(tmp_path, arrays, message):
    folder = write_head(tmp_path / "h", arrays)
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--adapter", str(folder)])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_head_files_are_never_unpickled_and_their_record_is_validated(tmp_path):
    folder = write_head(tmp_path / "h")
    np.save(folder / "payload.npy", np.array([{"x": 1}], dtype=object))  # an object array needs pickle
    (folder / "payload.npy").replace(folder / "head.npz")
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--adapter", str(folder)])
    assert result.exit_code == 2 and "head.npz" in result.stderr and "Traceback" not in result.output
    bad = write_head(tmp_path / "b", base_model={"name": "m", "sha256": 12})
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--adapter", str(bad)])
    assert result.exit_code == 2 and "base_model.sha256" in result.stderr


def test_a_hosted_model_refuses_an_adapter(tmp_path):
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--backend", "openai", "--model", "m",
                                 "--base-url", "http://127.0.0.1:9/v1", "--adapter", str(write_head(tmp_path / "h"))])
    assert result.exit_code == 2 and "--adapter" in result.stderr and "hosted" in result.stderr


def changed_line_differences(reader) -> np.ndarray:
    """Read 24 lines of a sample, then the same prompt with line p12's last number changed: the largest change of
    each line's state (shape (24,)); the reader's states and token count are checked on the way."""
    from agent3d.io import read_cloud
    from agent3d.prompts import load_prompt
    from agent3d.tuning.lines import line_examples

    example = line_examples(read_cloud(SAMPLES / "surface_05.txt"), load_prompt("geom"), 24, [0])[0]
    states, n_tokens, _ = reader.line_states(example.messages, example.ids)
    assert states.shape == (24, reader.n_embd) and n_tokens == reader.count_tokens(example.messages)
    lines = example.messages[-1]["content"].split("\n")
    row = next(i for i, line in enumerate(lines) if line.startswith("p12 "))
    words = lines[row].split(" ")
    words[-1] = "".join(str((int(c) + 5) % 10) for c in words[-1])
    changed = [*example.messages[:-1], {**example.messages[-1], "content": "\n".join(lines[:row] + [" ".join(words)]
                                                                                      + lines[row + 1:])}]
    after, _, _ = reader.line_states(changed, example.ids)
    return np.abs(after - states).max(axis=1)


@pytest.mark.slow
def test_a_line_state_comes_from_the_lines_own_last_token():
    """Changing one line's digits changes that line's state and leaves every earlier line's state as it was."""
    from agent3d.llm.states import LineStateReader

    reader = LineStateReader()
    difference = changed_line_differences(reader)
    assert difference[:12].max() == 0 and difference[12] > 1e-3


@pytest.mark.slow
def test_tune_head_writes_an_adapter_that_detect_applies_the_same_way_twice_and_refuses_elsewhere(tmp_path):
    adapter = tmp_path / "head"
    result = runner.invoke(app, ["tune", str(SAMPLES / "surface_00.txt"), str(SAMPLES / "surface_05.txt"),
                                 "--method", "head", "--out", str(adapter), "--n-points", "24", "--samplings", "2",
                                 "--val", str(SAMPLES / "surface_13.txt")])
    assert result.exit_code == 0, result.output
    record = json.loads((adapter / "head.json").read_text())
    assert record["head"] in record["cross_validation"]["recall"] and record["examples_val"] == 1
    assert set(record["validation"]) == {"model", "saliency", "random"} and len(record["base_model"]["sha256"]) == 64
    runs = []
    for _ in range(2):
        out = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--adapter", str(adapter), "--n-points",
                                  "24", "--json", "--no-cache"])
        assert out.exit_code == 0, out.output
        runs.append(json.loads(out.stdout))
    assert runs[0]["suspects"] == runs[1]["suspects"] and runs[0]["object_score"] == runs[1]["object_score"]
    assert len(runs[0]["suspects"]) == 8 and runs[0]["tokens"]["completion"] == 0
    assert {s["reason"] for s in runs[0]["suspects"]} <= {"head", "head: likely"}
    shown = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--adapter", str(adapter), "--n-points", "24"])
    text = " ".join(shown.stdout.split())  # a head read it: the summary names it and says nothing of zero-shot
    assert shown.exit_code == 0 and "+ head" in text and "no head adapter ships" not in text
    other = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--adapter", str(adapter), "--n-points",
                                "24", "--guidance", "pits are defects"])
    assert other.exit_code == 2 and "guidance" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    other = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--adapter", str(adapter), "--prompt",
                                "baseline"])
    assert other.exit_code == 2 and "trained on prompt 'geom'" in other.stderr
    foreign = write_head(tmp_path / "foreign", prompt=record["prompt"])
    other = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--adapter", str(foreign)])
    assert other.exit_code == 2 and "another base model" in other.stderr


@pytest.mark.slow
def test_detect_with_a_head_adapter_never_imports_torch(tmp_path):
    folder = tmp_path / "h"
    from agent3d.llm.embedded import default_model_path
    from agent3d.llm.base import file_sha256
    from agent3d.prompts import load_prompt

    prompt = load_prompt("geom")
    rng = np.random.default_rng(0)
    write_head(folder, {"mean": np.zeros(576), "scale": np.ones(576), "w0": rng.normal(size=(576, 1)), "b0": np.zeros(1)},
               base_model={"name": "smollm2", "sha256": file_sha256([default_model_path()])},
               prompt={"name": "geom", "hash": prompt.digest, "format": prompt.format})
    cloud = tmp_path / "scan.xyz"  # no labels: no verdict panel, whose learned row loads scikit-learn's registry
    np.savetxt(cloud, np.loadtxt(SAMPLES / "surface_00.txt")[:, :3])
    code = ("import sys, json\nfrom agent3d.cli import app\n"
            f"sys.argv = ['agent3d', 'detect', {str(cloud)!r}, '--adapter', {str(folder)!r}, "
            "'--n-points', '16', '--json', '--no-cache']\n"
            "try:\n    app()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"torch": False, "transformers": False}
