"""The learned no-LLM baseline: features are the numbers the text shows, the model file never runs code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.learned import FEATURES, MODEL_FILE, line_features
from agent3d.verbalize import verbalize

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"


def test_line_features_are_the_digits_each_line_shows():
    from agent3d.geometry import CloudContext
    from agent3d.io import read_cloud
    from agent3d.sampling import sample

    points = read_cloud(SAMPLES / "surface_05.txt").points
    shown = sample(points, 32, "fps")
    view = verbalize(points, shown, CloudContext(points).geometry(shown), "xyz+geom")
    features = line_features(view)
    assert features.shape == (32, len(FEATURES))
    for line, row in zip(view.lines, features):
        _, x, y, z, crd = line.split(" ")
        assert row[:6].tolist() == [int(x), int(y), int(z), int(crd[0]), int(crd[1]), int(crd[2])]
    assert (features[:, 9:] >= features[:, 6:9]).all()  # max of the neighbours' ranks >= their mean


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("learned") / "features"
    result = runner.invoke(app, ["tune", str(SAMPLES / "surface_00.txt"), str(SAMPLES / "surface_05.txt"),
                                 "--method", "features", "--out", str(out), "--n-points", "48", "--samplings", "2",
                                 "--val", str(SAMPLES / "surface_13.txt")])
    assert result.exit_code == 0, result.output
    assert "4 training prompts from 2 clouds, 1 validation prompts" in result.stderr  # not a terminal: progress lines
    return out


def test_tune_features_writes_a_skops_model_that_learned_gating_uses(trained, tmp_path):
    record = json.loads((trained / "features.json").read_text())
    assert record["features"] == list(FEATURES) and record["examples_train"] == 4 and record["examples_val"] == 1
    assert oct(os.stat(trained / MODEL_FILE).st_mode & 0o777) == "0o644"
    found = [runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--gating", "learned", "--learned",
                                 str(trained), "--n-points", "48", "--json"]) for _ in range(2)]
    assert all(f.exit_code == 0 for f in found), found[0].output
    first, second = (json.loads(f.stdout) for f in found)
    assert first["gating"] == "learned" and first["n_scored"] == second["n_scored"] > 0
    assert first["object_score"] == second["object_score"] and first["verdict"]["learned"]["regions_hit"] is not None


def test_a_tampered_learned_model_is_refused_in_one_line(trained, tmp_path):
    import skops.io

    tampered = tmp_path / "tampered"
    shutil.copytree(trained, tampered)
    skops.io.dump({"estimator": os.system}, tampered / MODEL_FILE)  # a file that would build a callable
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--gating", "learned", "--learned",
                                 str(tampered)])
    assert result.exit_code == 2 and "not allowed" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    (tampered / MODEL_FILE).write_bytes(b"PK\x03\x04 garbage")
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_13.txt"), "--gating", "learned", "--learned",
                                 str(tampered)])
    assert result.exit_code == 2 and MODEL_FILE in result.stderr and "Traceback" not in result.output


def test_learned_gating_never_unpickles(trained):
    """skops reads a zip of JSON and arrays: the load path never calls pickle."""
    import pickle

    from agent3d.learned import LearnedBaseline

    calls = []
    original = pickle.loads
    pickle.loads = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    try:
        model = LearnedBaseline(trained)
    finally:
        pickle.loads = original
    assert calls == [] and model.estimator_.n_features_in_ == len(FEATURES)
    assert np.isfinite(model.estimator_.predict_proba(np.zeros((3, len(FEATURES))))).all()
