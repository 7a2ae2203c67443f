"""Shared prompt folders, checkpoints and run folders are data, not code (issue: a shared prompt folder could run
code). Each case failed before its fix: a payload ran, a file outside the folder was read, or a traceback came."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.prompts import shipped_prompts_dir

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"


def prompt_folder(root: Path, user: str | None = None, **files) -> Path:
    """A copy of the shipped ``geom`` prompt under ``root/evil`` with ``user.j2`` (and other files) replaced."""
    folder = root / "evil"
    shutil.copytree(shipped_prompts_dir() / "geom", folder)
    if user is not None:
        (folder / "user.j2").write_text(user)
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_text(text)
    return folder


def one_line_refusal(result, *words):
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    for word in words:
        assert word in result.stderr


@pytest.mark.parametrize("source", [
    "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}{{ points }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ points }}",
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER') }}",
])
def test_a_template_cannot_run_code(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "prompts"
    prompt_folder(root, source)
    for command in (["prompts", "render", "evil", str(SAMPLES / "surface_00.txt")],
                    ["detect", str(SAMPLES / "surface_00.txt"), "--prompt", "evil"]):
        result = runner.invoke(app, [*command, "--prompts-dir", str(root)])
        one_line_refusal(result, "evil")
    assert not (tmp_path / "MARKER").exists()


def test_a_template_cannot_include_or_read_outside_its_folder(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is hunter2")
    root = tmp_path / "prompts"
    folder = prompt_folder(root, "{% include '../../secret.txt' %}{{ points }}")
    result = runner.invoke(app, ["prompts", "render", "evil", str(SAMPLES / "surface_00.txt"), "--prompts-dir", str(root)])
    one_line_refusal(result, "include")
    (folder / "user.j2").unlink()
    (folder / "user.j2").symlink_to(secret)
    result = runner.invoke(app, ["prompts", "render", "evil", str(SAMPLES / "surface_00.txt"), "--prompts-dir", str(root)])
    one_line_refusal(result, "inside its folder")
    assert "hunter2" not in result.output


def test_a_malformed_few_shot_turn_is_one_line(tmp_path):
    root = tmp_path / "prompts"
    prompt_folder(root, examples_json=json.dumps([{"user": 3, "assistant": "{}"}]))
    result = runner.invoke(app, ["prompts", "render", "evil", str(SAMPLES / "surface_00.txt"), "--prompts-dir", str(root)])
    one_line_refusal(result, "must be a string")


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = ""


def test_a_checkpoint_with_a_pickle_payload_is_refused_without_running_it(tmp_path):
    torch = pytest.importorskip("torch")
    from agent3d.file_checks import InputError
    from agent3d.tuning.train import _load_state

    global MARKER
    MARKER = str(tmp_path / "ran")
    file = tmp_path / "state.pt"
    with open(file, "wb") as handle:
        pickle.dump({"step": 1, "optimizer": Payload(), "curve": [], "losses": []}, handle)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(InputError, match="not a checkpoint"):
        _load_state(file, optimizer)
    assert not Path(MARKER).exists()
    file.write_bytes(b"garbage")
    with pytest.raises(InputError, match="state.pt"):
        _load_state(file, optimizer)


def test_a_lock_that_is_a_symlink_is_never_followed(tmp_path):
    from test_evaluation import write_labeled

    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(out), "--gating", "saliency", "--n-points", "32"])
    one_line_refusal(result, ".lock")
    assert victim.read_text() == "precious"


def test_a_config_string_for_a_list_option_is_one_value(tmp_path):
    from test_evaluation import write_labeled

    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    config = tmp_path / "c.toml"
    config.write_text('gating = "saliency"\nn_points = 32\n')
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "run"), "--config", str(config),
                                 "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["gatings"] == ["saliency"]


def test_a_fifo_as_config_or_guidance_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for option in (["--config", str(fifo)], ["--guidance", f"@{fifo}"]):
        result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--gating", "saliency", *option])
        one_line_refusal(result, "not a regular file")


def test_credentials_echoed_by_a_server_never_leave_the_process(serve, tmp_path, monkeypatch):
    import base64

    monkeypatch.setenv("OPENAI_API_KEY", "sk-verysecretkey123")
    basic = base64.b64encode(b"alice:pa55word").decode()
    body = json.dumps({"error": {"message": f"bad key sk-verysecretkey123, auth Basic {basic}, user alice:pa55word"}})
    server = serve((401, body.encode(), {}))
    url = server.url.replace("http://", "http://alice:pa55word@")
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--backend", "openai", "--model", "m",
                                 "--base-url", url, "--log-dir", str(tmp_path / "log"), "--no-cache"])
    assert result.exit_code == 3
    logged = "".join(p.read_text() for p in (tmp_path / "log").glob("*"))
    for secret in ("sk-verysecretkey123", basic, "pa55word"):
        assert secret not in result.output and secret not in logged


def test_a_record_pointing_outside_the_run_or_at_a_lost_score_file_is_redone(tmp_path):
    from test_evaluation import write_labeled

    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    out = tmp_path / "run"
    command = ["evaluate", str(root), "--out", str(out), "--gating", "saliency", "--n-points", "32", "--bootstrap", "0"]
    assert runner.invoke(app, command).exit_code == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    outside = tmp_path / "elsewhere.npz"
    shutil.copy(out / records[0]["scores_file"], outside)
    records[0]["scores_file"] = os.path.relpath(outside, out)
    (out / records[1]["scores_file"]).unlink()
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(r["scores_file"].startswith("scores/") for r in lines[2:])
    assert json.loads((out / "summary.json").read_text())["n_samples"] == 2


def test_detect_out_holding_a_folder_where_a_result_goes_writes_nothing(tmp_path):
    out = tmp_path / "out"
    (out / "detection.json").mkdir(parents=True)
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--gating", "saliency", "--out", str(out)])
    one_line_refusal(result, "detection.json")
    assert not (out / "scores.ply").exists()


@pytest.mark.parametrize("summary, message", [("[1, 2]", "not a JSON object"), ('{"per_run": "x"}', "per_run"),
                                              ('{"per_run": {"a": {"p_auroc": "high"}}}', "per_run.a.p_auroc"),
                                              ("{not json", "unreadable JSON")])
def test_runs_list_and_compare_name_a_malformed_run_file(tmp_path, summary, message):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "summary.json").write_text(summary)
    for command in (["runs", "list", str(tmp_path)], ["runs", "compare", str(run), str(run)]):
        one_line_refusal(runner.invoke(app, command), "summary.json", message)
