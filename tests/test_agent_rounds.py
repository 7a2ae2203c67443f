"""The multi-round agent and the regions prompt, through the real OpenAI backend and a local toy model
server that always names the first id its response schema allows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLE, completion
from typer.testing import CliRunner

from agent3d.agent import run_agent
from agent3d.cli import app
from agent3d.geometry import CloudContext
from agent3d.io import read_cloud
from agent3d.llm.openai import OpenAIBackend
from agent3d.prompts import load_prompt
from agent3d.sampling import sample
from agent3d.verbalize import shown_view


def first_allowed_id(body):
    """The toy model: name the first id of the enum in the request's schema."""
    schema = body["response_format"].get("json_schema", {}).get("schema") or body["response_format"]["schema"]
    first = schema["properties"]["suspects"]["items"]["properties"]["id"]["enum"][0]
    return 200, completion(json.dumps({"suspects": [{"id": first, "confidence": 0.8, "reason": "toy"}]})), {}


@pytest.fixture(scope="module")
def cloud_and_view():
    cloud = read_cloud(SAMPLE)
    context = CloudContext(cloud.points)
    return context, shown_view(context, sample(cloud.points, 64), "xyz+geom")


def toy(serve):
    server = serve(first_allowed_id)
    return server, OpenAIBackend("toy", base_url=server.url, timeout=5, retry_seconds=1)


def schema_ids(request):
    return request["response_format"]["json_schema"]["schema"]["properties"]["suspects"]["items"]["properties"][
        "id"]["enum"]


def test_later_rounds_look_closer_around_the_suspects(serve, cloud_and_view):
    cloud, view = cloud_and_view
    server, backend = toy(serve)
    found, report = run_agent(backend, load_prompt("geom"), cloud, view, rounds=3)
    assert [r["round"] for r in report.rounds] == [1, 2, 3] and report.calls == 3
    first_pick = view.indices[view.ids.index(report.rounds[0]["suspects"][0])]
    second = server.requests[1]["messages"][-1]["content"]
    assert "Round 2 of 3" in second and "Points you suspected that are shown again: p" in second
    # round 2 shows the neighbourhood of the round-1 suspect, densely: all within a few view spacings of it
    shown_ids = schema_ids(server.requests[1])
    assert len(shown_ids) <= len(view.lines) and len(found) == 1
    assert np.linalg.norm(cloud.points[found[0][0]] - cloud.points[first_pick]) < 0.25 * np.ptp(cloud.points, 0).max()
    assert all(r["prompt_tokens"] > 0 and len(r["replies"]) == 1 for r in report.rounds)


def test_regions_prompt_picks_regions_then_points(serve, cloud_and_view):
    cloud, view = cloud_and_view
    server, backend = toy(serve)
    found, report = run_agent(backend, load_prompt("regions"), cloud, view, rounds=1)
    assert len(report.rounds) == 2  # regions always take a second round
    assert all(i.startswith("r") for i in schema_ids(server.requests[0])) and len(schema_ids(server.requests[0])) == 4
    assert all(i.startswith("p") for i in schema_ids(server.requests[1]))
    assert "inside the regions you picked (r0)" in server.requests[1]["messages"][-1]["content"]
    assert len(found) == 1 and found[0][1].id.startswith("p")


def test_a_round_with_unusable_replies_keeps_the_previous_suspects(serve, cloud_and_view):
    cloud, view = cloud_and_view
    calls = []

    def then_garbage(body):
        calls.append(1)
        return first_allowed_id(body) if len(calls) == 1 else (200, completion("no json"), {})

    server = serve(then_garbage)
    backend = OpenAIBackend("toy", base_url=server.url, timeout=5, retry_seconds=1)
    found, report = run_agent(backend, load_prompt("geom"), cloud, view, rounds=2, retries=1)
    assert len(found) == 1 and found[0][1].id == report.rounds[0]["suspects"][0] and len(report.failures) == 1


def test_detect_json_keeps_every_rounds_replies(serve):
    server = serve(first_allowed_id)
    result = CliRunner().invoke(app, ["detect", str(SAMPLE), "--backend", "openai", "--model", "toy", "--base-url",
                                      server.url, "--n-points", "48", "--rounds", "2", "--json", "--no-cache"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["round"] for r in data["llm"]["rounds"]] == [1, 2] and len(data["suspects"]) == 1
    assert data["tokens"]["prompt"] == sum(r["prompt_tokens"] for r in data["llm"]["rounds"])
