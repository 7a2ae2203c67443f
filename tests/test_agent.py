"""Parsing and validation of model replies, retries with error feedback, and tiling.

These are unit tests of parsing/validation, so they use ``ScriptedFakeBackend``, a fake that
replays fixed reply texts; the real model is exercised in test_llm_backends.py and test_cli.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import wavy_surface

from agent3d.agent import (
    MAX_SUSPECTS,
    ReplyError,
    ask,
    ask_view,
    parse_reply,
    prompt_messages,
    suspect_schema,
)
from agent3d.cloud import LLMReport
from agent3d.llm.base import Reply
from agent3d.prompts import load_prompt
from agent3d.verbalize import verbalize


class ScriptedFakeBackend:
    """FAKE backend for parsing/validation tests: returns the scripted replies in order and
    records every request. Counts tokens as one per word."""

    name, model, params = "fake", "scripted", {}

    def __init__(self, replies):
        self.replies, self.requests = list(replies), []

    def complete(self, messages, schema):
        self.requests.append((messages, schema))
        text = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return Reply(text=text, prompt_tokens=10, completion_tokens=5, seconds=0.01)

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)


def reply(*items):
    return json.dumps({"suspects": [dict(zip(("id", "confidence", "reason"), item)) for item in items]})


KNOWN = {"p0", "p1", "p2", "p3"}


def run_round(backend, prompt, view, n_total, **options):
    """One first-round question over a view, as the agent asks it; returns (suspects, report)."""
    report = LLMReport()
    return ask_view(backend, view, prompt_messages(prompt, "user", view, n_total), report, **options), report


def test_parse_keeps_valid_and_counts_what_it_drops():
    text = json.dumps({"suspects": [
        {"id": "p1", "confidence": 0.9, "reason": "pit"},
        {"id": "p1", "confidence": 0.5, "reason": "again"},          # duplicate
        {"id": "p77", "confidence": 0.5, "reason": "not shown"},     # unknown id
        {"id": "p2", "confidence": 1.7, "reason": "out of range"},   # invalid
        {"id": "p3", "reason": "no confidence"},                     # invalid
        "p0",                                                       # invalid
        {"id": " p0 ", "confidence": 0.1, "reason": "padded id"},
    ]})
    parsed = parse_reply(text, KNOWN)
    assert [s.id for s in parsed.suspects] == ["p1", "p0"]
    assert parsed.dropped == {"invalid": 3, "unknown_id": 1, "duplicate": 1}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"points": []}', '{"suspects": "p1"}', "",
                                  '{"suspects": [{"id": "p1", "confidence": 90, "reason": ""}]}'])
def test_unusable_replies_raise(text):
    with pytest.raises(ReplyError):
        parse_reply(text, KNOWN)


def test_all_invalid_names_the_problem_and_empty_is_fine():
    with pytest.raises(ReplyError, match="confidence: Input should be less than or equal to 1"):
        parse_reply(reply(("p1", 90, ""), ("p2", 11, "")), KNOWN)
    assert parse_reply('{"suspects": []}', KNOWN).suspects == []


def test_at_most_max_suspects_are_kept():
    many = [f"p{i}" for i in range(40)]
    parsed = parse_reply(reply(*[(i, 0.5, "") for i in many]), set(many))
    assert len(parsed.suspects) == MAX_SUSPECTS


def test_retry_feeds_the_error_back_then_succeeds():
    backend = ScriptedFakeBackend(["{oops", reply(("p2", 0.8, "bump"))])
    report = LLMReport()
    suspects = ask(backend, [{"role": "user", "content": "q"}], sorted(KNOWN), report, retries=2)
    assert [s.id for s in suspects] == ["p2"] and report.calls == 2 and not report.failures
    second_request = backend.requests[1][0]
    assert second_request[-2] == {"role": "assistant", "content": "{oops"}
    assert "not valid JSON" in second_request[-1]["content"]
    assert report.prompt_tokens == 20 and report.replies == ["{oops", reply(("p2", 0.8, "bump"))]


def test_failure_after_retries_is_recorded_and_gives_no_suspects():
    backend = ScriptedFakeBackend(["nope"])
    report = LLMReport()
    assert ask(backend, [{"role": "user", "content": "q"}], sorted(KNOWN), report, retries=2) == []
    assert report.calls == 3 and len(report.failures) == 1 and "3 attempts" in report.failures[0]


def test_schema_restricts_ids_to_those_shown():
    schema = suspect_schema(["p0", "p5"])
    assert schema["properties"]["suspects"]["items"]["properties"]["id"]["enum"] == ["p0", "p5"]
    assert schema["properties"]["suspects"]["maxItems"] == MAX_SUSPECTS


def test_find_suspects_tiles_to_the_budget_and_ranks_by_confidence():
    points = wavy_surface(1000)
    prompt = load_prompt("baseline")
    view = verbalize(points, np.arange(0, 1000, 10), None, "xyz")
    backend = ScriptedFakeBackend([reply(("p3", 0.2, "a"), ("p50", 0.9, "b"), ("p99", 0.5, "c"))])
    found, report = run_round(backend, prompt, view, 1000, max_prompt_tokens=300)
    assert report.tiles > 1 and report.calls == report.tiles
    for messages, schema in backend.requests:
        assert backend.count_tokens(messages) <= 300
        shown = {line.split()[0] for line in messages[1]["content"].splitlines() if line.startswith("p")}
        assert set(schema["properties"]["suspects"]["items"]["properties"]["id"]["enum"]) == shown
    ids = [s.id for _, s in found]
    assert len(ids) == len(set(ids)) and [s.confidence for _, s in found] == sorted(
        [s.confidence for _, s in found], reverse=True)
    assert all(view.ids[row] == s.id for row, s in found)
    assert report.dropped["unknown_id"] > 0  # each tile only knows its own ids
