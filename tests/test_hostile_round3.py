"""Hostile inputs, round three: damaged tune checkpoints, refusals that used to leave a run folder or lock behind,
usage errors, configuration files, and the one base-model check every adapter format goes through."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.config import TuneConfig
from agent3d.file_checks import InputError
from test_shared_folders import one_line_refusal

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"
SAMPLE = SAMPLES / "surface_00.txt"


class Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


def checkpoint(out: Path, config: str | None = None, weights: bytes | None = None, state=None) -> Path:
    """A tune --out folder holding a checkpoint of the default lora settings, with the given parts damaged."""
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    folder = out / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config if config is not None else TuneConfig().model_dump_json())
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    if weights is None:
        save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
    else:
        (folder / "adapter_model.safetensors").write_bytes(weights)
    with open(folder / "state.pt", "wb") as handle:
        pickle.dump(state if state is not None else {"optimizer": {}, "step": 1, "curve": [], "losses": []}, handle)
    return out


@pytest.mark.parametrize("damage, words", [
    ({"config": "{not json"}, ("config.json", "not a checkpoint configuration")),
    ({"config": "[1, 2]"}, ("config.json", "not a JSON object")),
    ({"weights": b"\x00" * 64}, ("adapter_model.safetensors", "not readable safetensors")),
    ({"state": {"optimizer": Payload(), "step": 1, "curve": [], "losses": []}}, ("state.pt", "not a checkpoint")),
])
def test_a_damaged_checkpoint_is_refused_whole_before_any_example_or_model(tmp_path, monkeypatch, capfd, damage,
                                                                          words):
    pytest.importorskip("torch")
    from agent3d.tuning import run

    def never(*args, **kwargs):
        raise AssertionError("examples were made before the checkpoint was checked")

    monkeypatch.setattr(run, "collect_examples", never)
    out = checkpoint(tmp_path / "adapter", **damage)
    with warnings.catch_warnings(record=True) as printed:  # a warning is a line before the error line
        warnings.simplefilter("always")
        result = runner.invoke(app, ["tune", str(SAMPLE), "--out", str(out), "--resume"])
    one_line_refusal(result, *words)
    assert not printed, [str(w.message) for w in printed]
    assert "unpickled" not in capfd.readouterr().out + result.output


def test_a_missing_cuda_is_one_line_before_any_example(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from agent3d.tuning import run

    def never(*args, **kwargs):
        raise AssertionError("examples were made before the device was checked")

    monkeypatch.setattr(run, "collect_examples", never)
    result = runner.invoke(app, ["tune", str(SAMPLE), "--out", str(tmp_path / "a"), "--device", "cuda"])
    assert result.exit_code == 3 and len(result.stderr.strip().splitlines()) == 1 and "CUDA" in result.stderr
    assert not (tmp_path / "a").exists()


def test_a_refused_run_leaves_no_folder_and_no_lock(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(SAMPLES), "--gating", "llm", "--out", str(out), "--concurrency", "2"])
    one_line_refusal(result, "--concurrency")
    assert not out.exists()
    args = ["evaluate", str(SAMPLES), "--gating", "random", "--bootstrap", "0", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert not (out / ".lock").exists()  # a finished run leaves no lock file either
    for score in (out / "scores").iterdir():
        score.unlink()
    (out / "scores").rmdir()
    (out / "scores").write_text("a file where the scores go")
    one_line_refusal(runner.invoke(app, args), "scores")
    assert not (out / ".lock").exists() and (out / "config.json").is_file()


def test_usage_errors_are_one_line_naming_the_option(tmp_path):
    for flag, value in (("--concurrency", "0"), ("--bootstrap", "-1"), ("--workers", "x")):
        one_line_refusal(runner.invoke(app, ["evaluate", str(SAMPLES), "--out", str(tmp_path / "r"), flag, value]), flag)
    one_line_refusal(runner.invoke(app, ["detect"]), "Missing argument")
    one_line_refusal(runner.invoke(app, ["detect", str(SAMPLE), "--no-such-flag"]), "No such option")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, words", [
    ("gating = 5", ("gating",)), ("gating = [5]", ("gating",)), ("prompt = ['geom', 3]", ("prompt",)),
    ("seed = [1]", ("seed", "not a list")), ("budget = nan", ("budget", "finite")),
])
def test_a_configuration_file_value_of_the_wrong_shape_names_the_file(tmp_path, content, words):
    (tmp_path / "c.toml").write_text(content + "\n")
    result = runner.invoke(app, ["evaluate", str(SAMPLES), "--out", str(tmp_path / "r"), "--config",
                                 str(tmp_path / "c.toml")])
    one_line_refusal(result, "c.toml", *words)
    assert not (tmp_path / "r").exists()


def test_every_adapter_format_names_both_base_models(tmp_path):
    from agent3d.guidance import GuidanceReader
    from agent3d.llm.states import LineStateReader

    reader_dir = tmp_path / "reader"
    reader = GuidanceReader().fit(np.random.default_rng(0).normal(size=(30, 4)), ["raised", "sunk", "any"] * 10)
    reader.save(reader_dir, {"base_model": {"name": "other.gguf", "sha256": "b" * 64}, "pooling": "text mean"})
    with pytest.raises(InputError, match=r"trained on another base model \(other.gguf, sha256 bbbbbbbbbbbb\); this one"):
        GuidanceReader(reader_dir).read(LineStateReader(None, n_ctx=512), "pits are fine")
    record = json.loads((reader_dir / "guidance.json").read_text())
    for broken in ({**record, "base_model": "other.gguf"}, {**record, "pooling": "no such pooling"}):
        (reader_dir / "guidance.json").write_text(json.dumps(broken))
        result = runner.invoke(app, ["detect", str(SAMPLE), "--gating", "saliency", "--guidance", "pits",
                                     "--guidance-reader", str(reader_dir)])
        one_line_refusal(result, "reader", "not a guidance reader")


def test_checkpoint_weights_of_another_shape_are_refused_before_they_load(tmp_path):
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from safetensors.torch import save_file

    from agent3d.tuning.run import load_checkpoint_weights

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

    def adapter(rank: int):
        return peft.get_peft_model(Tiny(), peft.LoraConfig(r=rank, target_modules=["proj"]))

    saved = adapter(4)
    for name, parameter in saved.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(parameter)
    save_file(peft.get_peft_model_state_dict(saved), str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(InputError, match="adapter_model.safetensors: weights do not fit this adapter"):
        load_checkpoint_weights(adapter(2), tmp_path)
    fresh = adapter(4)
    load_checkpoint_weights(fresh, tmp_path)
    for key, value in peft.get_peft_model_state_dict(saved).items():
        assert torch.equal(peft.get_peft_model_state_dict(fresh)[key], value)
