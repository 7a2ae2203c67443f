"""The OpenAI backend and the agent against a tiny local HTTP server that misbehaves on purpose.

Each case is bounded in time by small timeouts and retry budgets; none waits on the network.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import SAMPLE, completion, free_port, wavy_surface
from test_agent import run_round
from typer.testing import CliRunner

from agent3d.agent import suspect_schema
from agent3d.cli import app
from agent3d.llm.base import BackendError
from agent3d.llm.openai import OpenAIBackend, backoff
from agent3d.prompts import load_prompt
from agent3d.verbalize import verbalize

OK = (200, completion(json.dumps({"suspects": [{"id": "p1", "confidence": 0.7, "reason": "pit"}]})), {})
MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "p0 1 2 3\np1 4 5 6"}]


def backend(server, **options):
    return OpenAIBackend("m", base_url=server.url, **{"timeout": 2.0, "retry_seconds": 5.0, **options})


def test_rate_limit_then_success(serve):
    server = serve((429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0"}), OK)
    reply = backend(server).complete(MESSAGES, suspect_schema(["p0", "p1"]))
    assert json.loads(reply.text)["suspects"][0]["id"] == "p1" and len(server.requests) == 2
    assert reply.prompt_tokens == 11 and reply.completion_tokens == 7


def test_server_error_forever_gives_up_within_the_bounds(serve):
    server = serve((500, b'{"error": {"message": "boom"}}', {}))
    start = time.monotonic()
    with pytest.raises(BackendError, match="InternalServerError: .*boom") as caught:
        backend(server, max_retries=3, retry_seconds=3.0).complete(MESSAGES, suspect_schema(["p0"]))
    assert len(server.requests) <= 4 and time.monotonic() - start < 10
    assert "\n" not in str(caught.value)


def test_hung_connection_times_out_and_is_retried_a_bounded_number_of_times(serve):
    server = serve("hang")
    start = time.monotonic()
    with pytest.raises(BackendError, match="APITimeoutError"):
        backend(server, timeout=0.5, max_retries=1, retry_seconds=2.0).complete(MESSAGES, suspect_schema(["p0"]))
    assert len(server.requests) == 2 and time.monotonic() - start < 10


def test_server_refusing_json_schema_gets_json_object_with_the_schema(serve):
    server = serve((400, b'{"error": {"message": "response_format json_schema not supported"}}', {}), OK)
    chosen = backend(server)
    chosen.complete(MESSAGES, suspect_schema(["p0", "p1"]))
    first, second = server.requests
    assert first["response_format"]["type"] == "json_schema" and second["response_format"]["type"] == "json_object"
    assert "JSON schema" in second["messages"][0]["content"] and chosen.schema_mode == "json_object"
    chosen.complete(MESSAGES, suspect_schema(["p0", "p1"]))
    assert server.requests[2]["response_format"]["type"] == "json_object"  # remembered, not asked again


def view_and_prompt():
    points = wavy_surface(500)
    return verbalize(points, np.arange(0, 500, 25), None, "xyz"), load_prompt("baseline")


def test_malformed_json_is_retried_with_the_error_then_recorded(serve):
    server = serve((200, completion('{"suspects": [ oops'), {}))
    view, prompt = view_and_prompt()
    found, report = run_round(backend(server), prompt, view, 500, retries=2)
    assert found == [] and report.calls == 3 and len(report.failures) == 1
    assert "not valid JSON" in server.requests[1]["messages"][-1]["content"]


def test_ids_out_of_range_are_dropped_and_counted(serve):
    bad = json.dumps({"suspects": [{"id": "p999", "confidence": 0.9, "reason": "x"},
                                   {"id": "p3", "confidence": 0.5, "reason": "y"}]})
    server = serve((200, completion(bad), {}))
    view, prompt = view_and_prompt()
    found, report = run_round(backend(server), prompt, view, 500)
    assert [s.id for _, s in found] == ["p3"] and report.dropped["unknown_id"] == 1 and not report.failures


def test_cli_reports_a_dead_server_in_one_line_with_exit_3(serve):
    server = serve((503, b'{"error": {"message": "down"}}', {}))
    result = CliRunner().invoke(app, ["detect", str(SAMPLE), "--backend", "openai", "--model", "m", "--base-url",
                                      server.url, "--n-points", "16", "--retry-seconds", "1", "--no-cache"])
    assert result.exit_code == 3 and len(result.stderr.strip().splitlines()) == 1
    assert "backend failure" in result.stderr and "Traceback" not in result.output


def test_backoff_grows_is_jittered_and_honours_retry_after():
    waits = [[backoff(attempt) for _ in range(200)] for attempt in range(5)]
    assert all(0 <= w <= min(8.0, 0.5 * 2**a) for a, ws in enumerate(waits) for w in ws)
    assert np.mean(waits[4]) > 2 * np.mean(waits[1]) and len(set(waits[2])) > 100
    assert backoff(3, retry_after_seconds=1.5) == 1.5 and backoff(0, retry_after_seconds=100) == 8.0


def test_every_exchange_is_logged_with_cache_hits_and_never_the_key(serve, tmp_path, monkeypatch):
    from agent3d.config import BackendConfig
    from agent3d.llm import make_backend

    secret = "sk-test-never-logged"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    server = serve(OK)
    logged = make_backend(BackendConfig(backend="openai", model="m", base_url=server.url, timeout=2.0,
                                        retry_seconds=2.0), tmp_path / "logs")
    for _ in range(2):
        logged.complete(MESSAGES, suspect_schema(["p0", "p1"]))
    lines = [json.loads(line) for line in (tmp_path / "logs" / "llm_log.jsonl").read_text().splitlines()]
    assert [line["cached"] for line in lines] == [False, True] and len(server.requests) == 1
    assert lines[0]["messages"] == MESSAGES and "p1" in lines[0]["reply"] and lines[0]["prompt_tokens"] == 11
    assert all(secret not in path.read_text() for path in tmp_path.rglob("*") if path.is_file())
    dead = make_backend(BackendConfig(backend="openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                                      no_cache=True, timeout=1.0, retry_seconds=0.5), tmp_path / "logs")
    with pytest.raises(BackendError):
        dead.complete(MESSAGES, suspect_schema(["p0"]))
    assert "error" in json.loads((tmp_path / "logs" / "llm_log.jsonl").read_text().splitlines()[-1])


def test_a_server_without_a_tokenizer_is_asked_once(serve):
    server = serve(OK)
    counter = backend(server)
    counts = [counter.count_tokens(MESSAGES) for _ in range(3)]
    assert server.other_paths == ["/extras/tokenize"] and len(set(counts)) == 1 and counts[0] > 0
