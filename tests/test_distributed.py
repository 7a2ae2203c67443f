"""Evaluation on a real dask.distributed cluster on 127.0.0.1 (a scheduler and two worker processes started by
the test), and --concurrency against a real local OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MisbehavingServer, completion, free_port
from test_batch_faults import COMMAND, records, strip, wait_for_lines
from test_evaluation import write_labeled
from typer.testing import CliRunner

from agent3d.cli import app

DASK = str(Path(sys.executable).parent / "dask")
pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path, request):
    threads = str(getattr(request, "param", 1))  # threads per worker
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = open(tmp_path / "dask.log", "w")
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], stdout=logs, stderr=logs)
    workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", threads, "--no-nanny", "--no-dashboard",
                                 "--host", "127.0.0.1", "--name", f"w{k}"], stdout=logs, stderr=logs)
               for k in range(2)]
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    yield address, workers
    for process in [*workers, scheduler]:
        process.kill()
        process.wait()
    logs.close()


def test_a_dask_run_equals_a_local_run_and_survives_a_killed_worker(cluster, tmp_path):
    address, workers = cluster
    root = write_labeled(tmp_path / "d", n_samples=10, references=False)
    args = ["--gating", "saliency", "--gating", "all", "--n-points", "64", "--bootstrap", "200"]
    local = subprocess.run([*COMMAND, str(root), "--out", str(tmp_path / "local"), *args], capture_output=True)
    assert local.returncode == 0
    driver = subprocess.Popen([*COMMAND, str(root), "--out", str(tmp_path / "dask"), "--scheduler", address, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_lines(tmp_path / "dask", 2, driver)
    workers[0].send_signal(signal.SIGKILL)  # mid-run: its sample is rerun on the other worker
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr
    keys = [r["key"] for r in records(tmp_path / "dask")]
    assert len(keys) == len(set(keys)) == 20
    assert strip(json.loads((tmp_path / "dask" / "summary.json").read_text())) == strip(
        json.loads((tmp_path / "local" / "summary.json").read_text()))


@pytest.mark.parametrize("cluster", [2], indirect=True)
def test_threads_sharing_one_registration_scorer_agree_with_a_serial_run(cluster, tmp_path):
    import numpy as np

    root = write_labeled(tmp_path / "d", n_samples=6)
    args = [str(root), "--gating", "saliency", "--gating", "all", "--scorer", "registration", "--bootstrap", "0"]
    for name, extra in [("serial", []), ("threads", ["--concurrency", "4"]), ("dask", ["--scheduler", cluster[0]])]:
        result = CliRunner().invoke(app, ["evaluate", *args, "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    serial = sorted((tmp_path / "serial" / "scores").iterdir())
    assert len(serial) == 12
    for file in serial:
        expected = np.load(file)["scores"]
        for name in ("threads", "dask"):
            np.testing.assert_allclose(np.load(tmp_path / name / "scores" / file.name)["scores"], expected, rtol=0,
                                       atol=0.01 * np.percentile(expected, 99), err_msg=f"{name}: {file.name}")


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    root = write_labeled(tmp_path / "d", n_samples=2, references=False)
    address = f"tcp://127.0.0.1:{free_port()}"
    os.environ["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "2s"
    result = CliRunner().invoke(app, ["evaluate", str(root), "--out", str(tmp_path / "run"), "--gating", "all",
                                      "--scheduler", address])
    assert result.exit_code == 2 and result.stderr.strip().startswith(f"agent3d: {address}: cannot reach")
    assert len(result.stderr.strip().splitlines()) == 1


def test_concurrency_overlaps_requests_to_a_slow_server(tmp_path):
    reply = completion(json.dumps({"suspects": [{"id": "p1", "confidence": 0.7, "reason": "pit"}]}))
    in_flight, peak = [0], [0]

    def slow(body):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.5)
        in_flight[0] -= 1
        return (200, reply, {})

    server = MisbehavingServer([slow])
    try:
        root = write_labeled(tmp_path / "d", n_samples=8, references=False)
        base = ["evaluate", str(root), "--gating", "llm", "--backend", "openai", "--model", "m", "--base-url",
                server.url, "--n-points", "16", "--no-cache", "--bootstrap", "0"]
        result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "c4"), "--concurrency", "4"])
        assert result.exit_code == 0, result.output
        assert peak[0] >= 3 and len(records(tmp_path / "c4")) == 8
        serial = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "c1")])
        assert serial.exit_code == 0
        assert strip(json.loads((tmp_path / "c4" / "summary.json").read_text())) == strip(
            json.loads((tmp_path / "c1" / "summary.json").read_text()))
        local = CliRunner().invoke(app, ["evaluate", str(root), "--gating", "llm", "--concurrency", "2", "--out",
                                         str(tmp_path / "x")])
        assert local.exit_code == 2 and "--concurrency: needs --workers 1" in local.stderr
    finally:
        server.close()
