"""The agent3d command line: success, the --json contract, outputs, and every bad-input case."""

from __future__ import annotations

import json

import numpy as np
import open3d as o3d
import pytest
from conftest import SAMPLE, free_port
from test_io import BAD_INPUTS
from typer.testing import CliRunner

from agent3d.cli import app

runner = CliRunner()
CONTRACT = {"object_score", "suspects", "n_points", "n_scored", "tokens", "seconds", "backend", "model", "prompt"}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, code, *needles):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


def test_gating_all_json_contract_without_a_model():
    result = run("detect", SAMPLE, "--gating", "all", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert CONTRACT <= set(data)
    assert data["n_points"] == data["n_scored"] == 4000 and data["suspects"] == []
    assert data["backend"] is None and data["tokens"] == {"prompt": 0, "completion": 0}
    assert data["gating"] == "all" and data["scorer"] == "self-reference" and data["object_score"] > 0


def test_out_writes_detection_and_scores_ply(tmp_path):
    result = run("detect", SAMPLE, "--gating", "all", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "object score" in result.stdout and "4,000 of 4,000" in result.stdout
    detection = json.loads((tmp_path / "o" / "detection.json").read_text())
    assert detection["file"] == str(SAMPLE) and CONTRACT <= set(detection)
    cloud = o3d.t.io.read_point_cloud(str(tmp_path / "o" / "scores.ply"))
    for field in ("anomaly_score", "suspect", "scored", "label"):
        assert cloud.point[field].shape == (4000, 1)
    labels = np.loadtxt(SAMPLE)[:, 3]
    np.testing.assert_array_equal(cloud.point["label"].numpy().ravel(), labels)
    assert cloud.point["anomaly_score"].numpy().max() == pytest.approx(detection["object_score"], rel=1e-5)


@pytest.mark.parametrize("gating", ["saliency", "random", "all"])
def test_reference_builds_a_memory_bank_for_every_gating(gating, tmp_path):
    (tmp_path / "refs").mkdir()
    reference = np.loadtxt(SAMPLE.parent / "surface_05.txt")[:, :3]
    np.savetxt(tmp_path / "refs" / "normal.xyz", reference)
    result = run("detect", SAMPLE, "--reference", tmp_path / "refs", "--gating", gating, "--json",
                 "--object-score", "topk-mean", "--topk", "5", "--scorer", "memory-bank")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["scorer"] == "memory-bank" and data["reference"] == [str(tmp_path / "refs" / "normal.xyz")]
    assert data["n_scored"] == (4000 if gating == "all" else 400)
    assert len(data["seeds"]) == (0 if gating == "all" else 8) and data["suspects"] == []


def test_bad_reference_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("detect", SAMPLE, "--reference", tmp_path / "empty", "--gating", "all"), 2,
                          "folder holds no point cloud file")
    assert_one_line_error(run("detect", SAMPLE, "--reference", tmp_path / "none.ply", "--gating", "all"), 2,
                          "none.ply: no such file")


def test_separate_ground_truth_file(tmp_path):
    table = np.loadtxt(SAMPLE)
    np.savetxt(tmp_path / "c.xyz", table[:, :3])
    np.savetxt(tmp_path / "gt.txt", table[::-1], delimiter=",")
    result = run("detect", tmp_path / "c.xyz", "--gt", tmp_path / "gt.txt", "--gating", "all", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    ply = o3d.t.io.read_point_cloud(str(tmp_path / "o" / "scores.ply"))
    np.testing.assert_array_equal(ply.point["label"].numpy().ravel(), table[:, 3])


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, case):
    make, reason = BAD_INPUTS[case]
    path = make(tmp_path)
    result = run("detect", path, "--gating", "all", "--out", tmp_path / "out")
    assert_one_line_error(result, 2, str(path), reason)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--budget", "0"], "--budget: Input should be greater than 0"),
    (["--budget", "1.5"], "--budget: Input should be less than or equal to 1"),
    (["--n-points", "0"], "--n-points: Input should be greater than or equal to 1"),
    (["--prompt", "nope"], "unknown prompt 'nope'"),
    (["--prompt", "nope", "--model", "missing.gguf"], "unknown prompt 'nope'"),  # checked before the model loads
    (["--model", "missing.gguf"], "missing.gguf: no such model file"),
])
def test_bad_settings_exit_2(flags, needle):
    assert_one_line_error(run("detect", SAMPLE, *flags), 2, needle)


def test_unreachable_server_exits_3():
    result = run("detect", SAMPLE, "--backend", "openai", "--model", "m", "--retries", "0",
                 "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--n-points", "16")
    assert_one_line_error(result, 3, "backend failure", "APIConnectionError")


@pytest.mark.slow
def test_end_to_end_with_the_embedded_model(tmp_path):
    result = run("detect", SAMPLE, "--n-points", "48", "--json", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert CONTRACT <= set(data)
    assert data["backend"] == "llama-cpp" and data["model"].endswith(".gguf") and data["prompt"] == "geom"
    assert data["tokens"]["prompt"] > 48 * 10 and data["tokens"]["completion"] > 0
    assert data["suspects"], "the embedded model named nothing: the constrained reply was empty or all dropped"
    assert data["n_points"] == 4000 and data["n_scored"] == 400  # budget 0.1
    for suspect in data["suspects"]:
        assert set(suspect) == {"id", "index", "xyz", "confidence", "reason"} and 0 <= suspect["confidence"] <= 1
        np.testing.assert_allclose(suspect["xyz"], np.loadtxt(SAMPLE)[suspect["index"], :3])
    ply = o3d.t.io.read_point_cloud(str(tmp_path / "scores.ply"))
    assert int(ply.point["suspect"].numpy().sum()) == len(data["suspects"])
    assert int(ply.point["scored"].numpy().sum()) == data["n_scored"]
    # a rerun is answered from the cache: the same suspects, no model time
    again = json.loads(run("detect", SAMPLE, "--n-points", "48", "--json").stdout)
    assert again["suspects"] == data["suspects"] and again["llm"]["seconds"] == 0.0
    # the first screen says plainly that no head ships (the default install asks the model zero-shot)
    shown = run("detect", SAMPLE, "--n-points", "48")
    assert "no head adapter ships" in " ".join(shown.stdout.split())


@pytest.mark.slow
def test_regions_prompt_over_two_rounds_with_the_embedded_model(tmp_path):
    result = run("detect", SAMPLE, "--n-points", "32", "--prompt", "regions", "--json", "--log-dir", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rounds = data["llm"]["rounds"]
    assert data["prompt"] == "regions" and rounds[0]["round"] == 1 and rounds[0]["prompt_tokens"] > 0
    assert all(s["id"].startswith("p") for s in data["suspects"])
    logged = [json.loads(line) for line in (tmp_path / "llm_log.jsonl").read_text().splitlines()]
    assert len(logged) == data["llm"]["calls"] and all("reply" in entry for entry in logged)


@pytest.mark.slow
def test_end_to_end_through_an_openai_compatible_server(llama_server):
    result = run("detect", SAMPLE, "--backend", "openai", "--model", "smollm2", "--base-url", llama_server,
                 "--n-points", "32", "--prompt", "baseline", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["backend"] == "openai" and data["model"] == "smollm2" and data["prompt"] == "baseline"
    assert data["tokens"]["prompt"] > 32 * 8 and data["llm"]["calls"] >= 1


def test_every_detect_option_exists_in_evaluate_with_the_same_default_and_help():
    import typer.main

    commands = typer.main.get_command(app).commands
    options = {name: {p.name: p for p in commands[name].params if p.param_type_name == "option"}
               for name in ("detect", "evaluate")}
    only_detect = {"gt", "out", "as_json", "log_dir", "quiet"}  # per-file outputs and the live line; evaluate has its bar
    assert set(options["detect"]) - only_detect <= set(options["evaluate"])
    for name, option in options["detect"].items():
        if name in only_detect or name == "reference":
            continue
        twin = options["evaluate"][name]
        assert twin.help == option.help, name
        if name not in ("gating", "prompt", "budget"):  # repeatable in evaluate
            assert twin.default == option.default, name
    assert len(options["detect"]) > 25
