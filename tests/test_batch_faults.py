"""A batch under faults: broken samples, worker processes, a second run into the same folder, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_evaluation import write_labeled
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.evaluation.store import run_lock

runner = CliRunner()
COMMAND = [sys.executable, "-m", "agent3d", "evaluate"]


def records(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def broken_dataset(root):
    write_labeled(root, n_samples=4)
    (root / "s9.txt").write_text("1 2 3 0\n" * 30 + "1 2 nope 0\n")  # unreadable: recorded, the batch goes on
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_a_broken_sample_is_recorded_and_the_batch_goes_on(tmp_path, workers):
    root, out = broken_dataset(tmp_path / "d"), tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(root), "--gating", "saliency", "--gating", "all", "--out", str(out),
                                 "--n-points", "64", "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    failed = [r for r in records(out) if "failed" in r]
    assert {r["key"] for r in failed} == {"d/s9/saliency/-", "d/s9/all/-"}
    assert all("s9.txt: not a numeric table" in r["failed"] for r in failed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_failed"] == 2 and summary["n_samples"] == 4
    assert summary["per_run"]["saliency"]["failed"] == 1 and summary["per_run"]["all"]["p_auroc"] > 0.9
    assert "2 runs failed" in (out / "report.md").read_text() and "2 runs failed" in result.stdout
    assert "s9.txt: not a numeric table" in (out / "report.html").read_text()


def test_a_bad_reference_writes_nothing(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=2)
    np.savetxt(tmp_path / "flat.xyz", np.ones((50, 3)))
    result = runner.invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "run"), "--gating", "all",
                                 "--reference", str(tmp_path / "flat.xyz")])
    assert result.exit_code == 2 and "flat.xyz: all points coincide" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    root, out = write_labeled(tmp_path / "d", n_samples=2), tmp_path / "run"
    with run_lock(out):
        second = subprocess.run([*COMMAND, str(root), "--out", str(out), "--gating", "all"], capture_output=True,
                                text=True, timeout=300)
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip() == (f"agent3d: {out}: another agent3d run (pid {os.getpid()}) is "
                                                       "writing here; wait for it or choose another --out")
    assert not (out / "samples.jsonl").exists() and not (out / "config.json").exists()


def test_two_concurrent_runs_never_both_write(tmp_path):
    root, out = write_labeled(tmp_path / "d", n_samples=12, references=False), tmp_path / "run"
    args = [str(root), "--out", str(out), "--gating", "saliency", "--gating", "random", "--gating", "all"]
    first = subprocess.Popen([*COMMAND, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_lines(out, 1, first)
    second = subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=300)
    still_running = first.poll() is None
    assert first.wait(timeout=300) == 0, first.stderr.read()
    keys = [r["key"] for r in records(out)]
    assert len(keys) == len(set(keys)) == 36
    if still_running:  # the usual case: the second started and ended while the first was writing
        assert second.returncode == 2 and "another agent3d run" in second.stderr
    else:
        assert second.returncode in (0, 2)


def wait_for_lines(out, n, process, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = out / "samples.jsonl"
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        assert process.poll() is None, "the run ended before writing"
        time.sleep(0.05)
    raise AssertionError("no record appeared")


def test_kill_9_while_writing_then_resume_equals_an_uninterrupted_run(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=10, references=False)
    args = ["--gating", "saliency", "--gating", "all", "--n-points", "64"]
    whole = subprocess.run([*COMMAND, str(root), "--out", str(tmp_path / "whole"), *args], capture_output=True,
                           timeout=300)
    assert whole.returncode == 0
    out = tmp_path / "killed"
    victim = subprocess.Popen([*COMMAND, str(root), "--out", str(out), *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_for_lines(out, 3, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    kept = records(out)
    with open(out / "samples.jsonl", "a") as handle:
        handle.write(json.dumps(kept[-1])[:40])  # what a kill in the middle of a write leaves
    for delay in (0.2, 1.0, 2.5):  # kill resumes at chosen moments: finished records are never lost
        resumed = subprocess.Popen([*COMMAND, str(root), "--out", str(out), *args], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(delay)
        resumed.send_signal(signal.SIGKILL)
        resumed.wait()
        now = {r["key"] for r in records_tolerant(out)}
        assert {r["key"] for r in kept} <= now
    final = subprocess.run([*COMMAND, str(root), "--out", str(out), *args], capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert strip(json.loads((out / "summary.json").read_text())) == strip(
        json.loads((tmp_path / "whole" / "summary.json").read_text()))
    keys = [r["key"] for r in records(out)]
    assert len(keys) == len(set(keys)) == 20


def records_tolerant(out):
    lines = (out / "samples.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if not k.endswith("seconds") and k != "dataset"}
    return node


def test_errors_cross_worker_processes_intact(serve, tmp_path):
    import pickle

    from agent3d.io import InputError

    error = pickle.loads(pickle.dumps(InputError("a.ply", "truncated")))
    assert (error.path, error.reason, str(error)) == ("a.ply", "truncated", "a.ply: truncated")
    server = serve((503, b'{"error": {"message": "down"}}', {}))
    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    result = runner.invoke(app, ["evaluate", str(root), "--gating", "llm", "--backend", "openai", "--model", "m",
                                 "--base-url", server.url, "--retry-seconds", "0", "--n-points", "16", "--workers",
                                 "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 3, result.output
    assert result.stderr.strip().splitlines()[-1].startswith(f"agent3d: backend failure: {server.url}: ")
    assert "Traceback" not in result.output and "BrokenProcessPool" not in result.output


def test_a_model_that_cannot_load_stops_the_batch_instead_of_failing_every_sample(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    (tmp_path / "bad.gguf").write_text("not a model")
    result = runner.invoke(app, ["evaluate", str(root), "--gating", "llm", "--model", str(tmp_path / "bad.gguf"),
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith(f"agent3d: {tmp_path / 'bad.gguf'}: not a loadable GGUF")
    assert not (tmp_path / "run" / "samples.jsonl").exists() or not records(tmp_path / "run")
    # nothing finished, so no config.json is left behind to refuse the corrected rerun as another configuration
    assert not (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / "scores").exists()
    again = runner.invoke(app, ["evaluate", str(root), "--gating", "random", "--out", str(tmp_path / "run")])
    assert again.exit_code == 0, again.output
