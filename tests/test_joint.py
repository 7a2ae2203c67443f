"""Heads trained through the model (``tune --method prompt-head|lora-head``): line positions under the model's own
tokenizer, the adapter folder, and detect applying it with ``--backend transformers`` (and nowhere else)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent3d.cli import app

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"
pytestmark = pytest.mark.slow


def example(n_points: int = 24):
    from agent3d.io import read_cloud
    from agent3d.prompts import load_prompt
    from agent3d.tuning.lines import line_examples

    return line_examples(read_cloud(SAMPLES / "surface_05.txt"), load_prompt("geom"), n_points, [0])[0]


def test_a_lines_state_under_torch_is_its_last_tokens_and_matches_llama_cpp():
    pytest.importorskip("transformers")
    import torch

    from agent3d.llm.states import LineStateReader
    from agent3d.llm.torch_states import last_states, line_positions
    from agent3d.llm.transformers import load_base, model_identity

    model, tokenizer = load_base(model_identity(None))
    shown = example()
    tokens, positions = line_positions(tokenizer, shown.messages, shown.ids)
    lines = {line.split(" ")[0]: line for line in shown.messages[-1]["content"].split("\n")}
    for line_id, position in zip(shown.ids, positions):  # the token at the position ends the line's text
        assert lines[line_id].endswith(tokenizer.decode(tokens[position]).strip())
        assert not tokenizer.decode(tokens[position + 1]).strip()[:1].isdigit()
    with torch.inference_mode():
        states = last_states(model, tokens, positions).numpy()
    reference = LineStateReader().line_states(shown.messages, shown.ids)[0]
    cosine = (states * reference).sum(axis=1) / np.linalg.norm(states, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.99  # the same layer of the same weights (transformers dequantizes the GGUF)


def test_prompt_head_writes_an_adapter_that_transformers_applies_the_same_way_twice_and_llama_cpp_refuses(tmp_path):
    pytest.importorskip("peft")
    adapter = tmp_path / "ph"
    result = runner.invoke(app, ["tune", str(SAMPLES / "surface_00.txt"), str(SAMPLES / "surface_05.txt"),
                                 "--method", "prompt-head", "--out", str(adapter), "--n-points", "24", "--samplings",
                                 "2", "--steps", "2", "--eval-every", "1", "--virtual-tokens", "2",
                                 "--val", str(SAMPLES / "surface_13.txt"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert {"adapter_config.json", "adapter_model.safetensors", "head.npz", "head.json"} <= {
        p.name for p in adapter.iterdir()}
    record = json.loads((adapter / "head.json").read_text())
    assert record["method"] == "prompt-head" and [c["step"] for c in record["curve"]] == [1, 2]
    assert record["probe"]["chosen"].startswith("logistic") and set(record["validation"]) == {
        "model", "saliency", "random"}
    command = ["detect", str(SAMPLES / "surface_13.txt"), "--backend", "transformers", "--adapter", str(adapter),
               "--n-points", "24", "--json", "--no-cache"]
    runs = []
    for _ in range(2):
        out = runner.invoke(app, command)
        assert out.exit_code == 0, out.output
        runs.append(json.loads(out.stdout))
    assert runs[0]["suspects"] == runs[1]["suspects"] and len(runs[0]["suspects"]) == 8
    assert {s["reason"] for s in runs[0]["suspects"]} <= {"head", "head: likely"}
    assert runs[0]["backend"] == "transformers" and runs[0]["tokens"]["completion"] == 0
    frozen = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--adapter", str(adapter)])
    assert frozen.exit_code == 2 and "--backend transformers" in frozen.stderr
    other = runner.invoke(app, [*command[:-2], "--prompt", "baseline"])
    assert other.exit_code == 2 and "trained on prompt 'geom'" in other.stderr
    resumed = runner.invoke(app, ["tune", str(SAMPLES / "surface_00.txt"), "--method", "lora-head", "--out",
                                  str(tmp_path / "x"), "--resume"])
    assert resumed.exit_code == 2 and "--resume" in resumed.stderr and not (tmp_path / "x").exists()
