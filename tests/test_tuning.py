"""Tuning with the real embedded model (transformers reads its GGUF): examples, training, adapters, backend."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, plant_bump, terminal, wavy_surface
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.cloud import PointCloud
from agent3d.prompts import load_prompt
from agent3d.tuning.examples import cloud_examples, positive_rows, target_reply

pytest.importorskip("peft")
runner = CliRunner()
SMALL = ["--n-points", "16", "--samplings", "1"]


def labeled_folder(root, n=3):
    root.mkdir()
    for k in range(n):
        points, labels = plant_bump(wavy_surface(2000, seed=k), centre_xy=(0.2 * k - 0.2, 0.1), radius=0.3)
        np.savetxt(root / f"{k:03d}_bulge.txt", np.column_stack([points, labels]), fmt="%.6f %.6f %.6f %d")
    np.savetxt(root / "003_good.txt", np.column_stack([wavy_surface(2000, seed=9), np.zeros(2000)]),
               fmt="%.6f %.6f %.6f %d")
    return root


def test_positive_rows_name_shown_points_on_the_defect_nearest_its_centre_first():
    points = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [10, 0, 0]])
    labels = np.array([0, 1, 1, 1, 0])
    rows = positive_rows(points, labels, [np.array([i]) for i in (4, 3, 0, 2)], radius=0.5)
    assert rows == [3, 1]  # points 2 (the centre) then 3; point 0 is 1.0 away, beyond the radius
    assert positive_rows(points, np.zeros(5, dtype=int), [np.array([2])], 0.5) == []


def test_examples_are_what_detect_shows_with_targets_on_the_defect():
    points, labels = plant_bump(wavy_surface(3000), radius=0.4)
    cloud = PointCloud(points, labels.astype(np.uint8), "bumped")
    prompt = load_prompt("geom")
    examples = cloud_examples(cloud, prompt, 32, seeds=[0, 1], guidance="ribs are normal")
    assert len(examples) == 2 and examples[0].messages != examples[1].messages
    first = examples[0]
    assert "ribs are normal" in first.messages[0]["content"]
    assert first.positives and json.loads(first.target)["suspects"][0]["id"] == first.positives[0]
    shown = set(first.schema["properties"]["suspects"]["items"]["properties"]["id"]["enum"])
    assert set(first.positives) <= shown and len(shown) == 32
    normal = cloud_examples(PointCloud(points, np.zeros(len(points), np.uint8)), prompt, 32, seeds=[0])[0]
    assert normal.positives == [] and normal.target == target_reply([])


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_the_saved_adapter_gives_identical_logits(tmp_path):
    import torch
    from peft import PeftModel

    from agent3d.llm.transformers import load_base, model_identity
    from agent3d.tuning.train import TuneConfig, encode, peft_model, train

    identity = model_identity(None)
    base, tokenizer = load_base(identity)
    points, labels = plant_bump(wavy_surface(2000), radius=0.4)
    example = cloud_examples(PointCloud(points, labels.astype(np.uint8)), load_prompt("geom"), 16, [0])[0]
    config = TuneConfig(steps=6, lr=2e-3, warmup=0, eval_every=100, checkpoint_every=100, n_val=1)
    model = peft_model(base, config)
    losses = []
    train(model, tokenizer, [example], [example], config, tmp_path, on_step=lambda e: losses.append(e.get("loss")))
    losses = [v for v in losses if v is not None]
    assert len(losses) == 6 and np.mean(losses[-2:]) < 0.8 * losses[0]
    model.save_pretrained(str(tmp_path / "adapter"))
    ids = torch.tensor([encode(example, tokenizer)[0]])
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(load_base(identity)[0], str(tmp_path / "adapter")).eval()
        after = reloaded(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.slow
def test_tune_command_writes_an_adapter_that_detect_uses_with_shown_ids_only(tmp_path):
    data = labeled_folder(tmp_path / "data")
    pattern = str(data / "00?_*.txt")  # quoted, as from a shell: tune expands it for every method
    result = runner.invoke(app, ["tune", pattern, "--out", str(tmp_path / "a"), "--steps", "3", "--eval-every", "3",
                                 "--n-val", "1", "--method", "prompt", "--virtual-tokens", "4", *SMALL])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "a" / "tune.json").read_text())
    assert record["datasets"] == [str(f) for f in sorted(data.glob("00?_*.txt"))] and len(record["datasets"]) == 4
    assert record["method"] == "prompt" and record["steps"] == 3 and record["curve"][-1]["step"] == 3
    assert len(record["base_model"]["sha256"]) == 64 and record["prompt"]["name"] == "geom"
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file() and not (tmp_path / "a" / "checkpoint").exists()
    sample = data / "000_bulge.txt"
    result = runner.invoke(app, ["detect", str(sample), "--backend", "transformers", "--adapter", str(tmp_path / "a"),
                                 "--n-points", "16", "--json"])
    assert result.exit_code == 0, result.output
    data_out = json.loads(result.output)
    assert data_out["backend"] == "transformers" and data_out["llm"]["failures"] == []
    assert all(s["id"].startswith("p") and 0 <= int(s["id"][1:]) < 16 for s in data_out["suspects"])

    other = tmp_path / "other"
    shutil.copytree(tmp_path / "a", other)
    record["base_model"]["sha256"] = "0" * 64
    (other / "tune.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["detect", str(sample), "--backend", "transformers", "--adapter", str(other)])
    assert result.exit_code == 2 and "another base model" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_transformers_backend_without_adapter_names_only_shown_ids():
    from agent3d.agent import parse_reply, suspect_schema
    from agent3d.llm import status
    from agent3d.llm.transformers import TransformersBackend

    backend = TransformersBackend()
    ids = [f"p{i}" for i in range(6)]
    messages = [{"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": "Points:\np0 1 2 3\np1 4 5 6\np2 7 8 9\np3 1 1 1\np4 2 2 2\np5 9 9 9\n"
                                            "Which points lie on a defect?"}]
    reply = backend.complete(messages, suspect_schema(ids))
    assert reply.prompt_tokens == backend.count_tokens(messages) and reply.completion_tokens > 0
    parsed = parse_reply(reply.text, set(ids))
    assert sum(parsed.dropped.values()) == 0 and {s.id for s in parsed.suspects} <= set(ids)
    with status.live_status(True, terminal()):  # the live status follows it
        followed = backend.complete(messages, suspect_schema(ids))
        shown = status.current()
    assert followed.text == reply.text
    assert f"model: {reply.prompt_tokens:,} prompt tokens, generating: {reply.completion_tokens} tokens" in shown


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    from agent3d.tuning.run import tune
    from agent3d.tuning.train import TuneConfig

    data = labeled_folder(tmp_path / "data", n=2)
    config = TuneConfig(method="prompt", steps=4, virtual_tokens=4, eval_every=100, checkpoint_every=2, n_val=1)

    def killed(event):
        if event.get("step") == 3 and "loss" in event:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune([data], tmp_path / "a", config, n_points=16, samplings=1, on_step=killed)
    assert (tmp_path / "a" / "checkpoint" / "state.pt").is_file() and not (tmp_path / "a" / "tune.json").exists()
    result = runner.invoke(app, ["tune", str(data), "--out", str(tmp_path / "a"), "--steps", "4", *SMALL])
    assert result.exit_code == 2 and "--resume" in result.output
    steps = []
    record = tune([data], tmp_path / "a", config, n_points=16, samplings=1, resume=True,
                  on_step=lambda e: steps.append(e["step"]))
    assert steps[0] == 3 and record["steps"] == 4


@pytest.mark.parametrize("case", ["unlabeled", "broken", "missing"])
def test_tune_on_bad_data_exits_2_in_one_line_and_writes_nothing(tmp_path, case):
    data = tmp_path / "data"
    if case != "missing":
        data.mkdir()
        rows = wavy_surface(200) if case == "unlabeled" else None
        if rows is not None:
            np.savetxt(data / "000_scan.txt", rows)
        else:
            (data / "000_scan.txt").write_text("1 2 3 0\nnot numbers at all\n")
    result = runner.invoke(app, ["tune", str(data), "--out", str(tmp_path / "a"), *SMALL])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and str(data) in result.output
    assert not (tmp_path / "a").exists()


def test_embedded_adapter_is_refused_in_one_line_while_none_ships():
    result = runner.invoke(app, ["detect", str(ROOT / "data_samples" / "surface_00.txt"), "--backend", "transformers",
                                 "--adapter", "embedded"])
    assert result.exit_code == 2 and "no adapter ships" in result.output
    assert len(result.output.strip().splitlines()) == 1
