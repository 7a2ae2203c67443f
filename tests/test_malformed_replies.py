"""Malformed responses from a fault-injecting OpenAI-compatible server on 127.0.0.1, the reply cache's key and
contents, transport retries in the result, and credentials in a server URL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLE, completion, terminal
from test_agent import run_round
from test_evaluation import write_labeled
from test_faults import OK, backend, view_and_prompt
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.config import BackendConfig
from agent3d.llm import make_backend

runner = CliRunner()
MALFORMED = {
    "html-200": (200, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"}),
    "json-null": (200, b"null", {}),
    "choices-empty": (200, b'{"choices": []}', {}),
    "choices-missing": (200, b'{"id": "x", "object": "chat.completion"}', {}),
    "message-null": (200, b'{"choices": [{"index": 0, "message": null}]}', {}),
    "content-number": (200, b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]}', {}),
    "truncated-json": (200, b'{"choices": [{"index": 0, "mess', {}),
    "empty-body": (200, b"", {}),
    "usage-text": (200, json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"}}],
                                    "usage": {"prompt_tokens": "many", "completion_tokens": 1}}).encode(), {}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_response_is_a_backend_failure_naming_the_server(serve, case):
    server = serve(MALFORMED[case])
    result = runner.invoke(app, ["detect", str(SAMPLE), "--backend", "openai", "--model", "m", "--base-url",
                                 server.url, "--n-points", "16", "--retry-seconds", "1", "--no-cache"])
    assert result.exit_code == 3, (result.output, result.exception)
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"agent3d: backend failure: {server.url}:"), line
    assert "Traceback" not in result.output


SSE = {"Content-Type": "text/event-stream"}
MALFORMED_STREAMS = {
    "html-200": MALFORMED["html-200"],
    "delta-null": (200, b'data: {"choices": [{"index": 0, "delta": null}]}\n\n', SSE),
    "truncated-json": (200, b'data: {"choices": [\n\n', SSE),
    "content-number": (200, b'data: {"choices": [{"index": 0, "delta": {"content": 5}}]}\n\n', SSE),
    "error-event": (200, b'data: {"error": {"message": "boom"}}\n\n', SSE),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_STREAMS))
def test_a_malformed_stream_is_a_backend_failure_naming_the_server(serve, case):
    from agent3d.llm import status
    from agent3d.llm.base import BackendError

    server = serve(MALFORMED_STREAMS[case])
    streaming = make_backend(BackendConfig(backend="openai", model="m", base_url=server.url, no_cache=True,
                                           timeout=2.0, retry_seconds=1.0))
    with status.live_status(True, terminal()):  # shown: replies stream
        with pytest.raises(BackendError, match=f"^{server.url}: "):
            streaming.complete([{"role": "user", "content": "u"}], {"type": "object"})
    assert server.requests[0]["stream"] is True


def test_transport_retries_are_counted_in_the_result(serve):
    server = serve((503, b'{"error": {"message": "busy"}}', {"Retry-After": "0"}), OK)
    view, prompt = view_and_prompt()
    found, report = run_round(backend(server), prompt, view, 500)
    assert len(server.requests) == 2 and report.calls == 1 and report.transport_retries == 1
    assert report.to_json()["transport_retries"] == 1 and [s.id for _, s in found] == ["p1"]


def test_only_usable_replies_are_cached(serve, isolated_cache):
    server = serve((200, completion("not json at all"), {}), OK)
    cached = make_backend(BackendConfig(backend="openai", model="m", base_url=server.url, timeout=2.0,
                                        retry_seconds=1.0))
    view, prompt = view_and_prompt()
    found, report = run_round(cached, prompt, view, 500)
    assert [s.id for _, s in found] == ["p1"] and report.calls == 2
    stored = [json.loads(p.read_text())["text"] for p in isolated_cache.glob("*.json")]
    assert len(stored) == 1 and "p1" in stored[0]
    again, report = run_round(cached, prompt, view, 500)
    assert len(server.requests) == 3 and report.cached == 0  # the unusable first answer was not replayed
    assert all("p1" in json.loads(p.read_text())["text"] for p in isolated_cache.glob("*.json"))
    empty = serve((200, completion(""), {}))
    make_backend(BackendConfig(backend="openai", model="m", base_url=empty.url)).complete(
        [{"role": "user", "content": "q"}], {})
    huge = serve((200, completion("x" * 70000), {}))
    make_backend(BackendConfig(backend="openai", model="m", base_url=huge.url)).complete(
        [{"role": "user", "content": "q"}], {})
    assert len(list(isolated_cache.glob("*.json"))) == 2  # neither the empty nor the oversized reply


def test_the_cache_key_holds_the_server_and_the_weights(serve, tmp_path):
    first, second = serve(OK), serve(OK)
    messages = [{"role": "user", "content": "same question"}]
    for server in (first, second, first):
        make_backend(BackendConfig(backend="openai", model="m", base_url=server.url)).complete(messages, {})
    assert len(first.requests) == 1 and len(second.requests) == 1  # one server's replies never answer another's
    keys = set()
    for name in ("a", "b"):
        model = tmp_path / name / "model.gguf"  # same file name, different bytes
        model.parent.mkdir()
        model.write_bytes(name.encode() * 64)
        from agent3d.llm.base import file_sha256
        keys.add(file_sha256([model]))
    assert len(keys) == 2


def test_credentials_in_the_url_are_never_written(serve, tmp_path):
    server = serve((503, b'{"error": {"message": "down"}}', {}), OK)
    url = server.url.replace("http://", "http://alice:hunter2@")
    root = write_labeled(tmp_path / "d", n_samples=1, references=False)
    result = runner.invoke(app, ["evaluate", str(root), "--gating", "llm", "--backend", "openai", "--model", "m",
                                 "--base-url", url, "--n-points", "16", "--out", str(tmp_path / "run"),
                                 "--retry-seconds", "5"])
    assert result.exit_code == 0, result.output
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".md",
                                                                                          ".html")]
    assert written and all("hunter2" not in p.read_text() for p in written)
    assert "hunter2" not in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backend"]["base_url"] == server.url.replace("http://", "http://***@")
    record = json.loads((tmp_path / "run" / "samples.jsonl").read_text().splitlines()[0])
    assert record["llm_retries"] == 1 and record["llm_calls"] == 1
    dead = runner.invoke(app, ["detect", str(SAMPLE), "--backend", "openai", "--model", "m", "--n-points", "16",
                               "--base-url", "http://bob:s3cret@127.0.0.1:9/v1", "--retry-seconds", "0",
                               "--no-cache"])
    assert dead.exit_code == 3 and "s3cret" not in dead.output and "***@127.0.0.1:9" in dead.stderr
    assert np.isfinite(config["detect"]["budget"])
