"""The defect specification (issue 34): its schema, the training generator, design features explained, abstention,
``agent3d guidance read``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from agent3d.cli import app
from agent3d.config import DetectConfig
from agent3d.design_features import explained, feature_weights
from agent3d.cloud import PointCloud
from agent3d.evaluation.metrics import auroc
from agent3d.guidance import spec_weights
from agent3d.guidance_sets import held_out_texts, read_guidance_set
from agent3d.guidance_corpus import attach, generate, normalize
from agent3d.io import read_cloud
from agent3d.pipeline import detect
from agent3d.spec import DefectSpec, Probabilities

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"


def cube(spacing: float = 1 / 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit cube's surface on a grid with a smooth dent (agent3d.synth's profile, 3 spacings deep, 5.5 wide) in
    the top face; points, the dent's mask, and each point's distance to the nearest cube edge."""
    grid = np.arange(0, 1 + 1e-9, spacing)
    u, v = (a.ravel() for a in np.meshgrid(grid, grid))
    faces = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for value in (0.0, 1.0):
            face = np.zeros((len(u), 3))
            face[:, axis], face[:, others[0]], face[:, others[1]] = value, u, v
            faces.append(face)
    points = np.unique(np.round(np.vstack(faces), 9), axis=0)
    points += np.random.default_rng(seed).normal(0, spacing * 0.02, points.shape)
    r = np.linalg.norm(points[:, :2] - 0.5, axis=1)
    radius, depth = 5.5 * spacing, 3 * spacing
    dent = (np.abs(points[:, 2] - 1) < 0.01) & (r < radius)
    points[dent, 2] -= depth * (1 - (r[dent] / radius) ** 2) ** 2
    edge_distance = np.sort(np.minimum(np.abs(points), np.abs(1 - points)), axis=1)[:, 1]
    return points, dent, edge_distance


def test_a_specification_refuses_unknown_values_and_probabilities_out_of_range():
    with pytest.raises(ValidationError):
        DefectSpec(kind="scratched", probabilities=Probabilities(kind={"raised": 1.0}))
    with pytest.raises(ValidationError):
        DefectSpec(normal=["fillets"], probabilities=Probabilities(kind={"any": 1.0}))
    with pytest.raises(ValidationError):
        DefectSpec(probabilities=Probabilities(kind={"raised": 1.5, "sunk": -0.5}))
    with pytest.raises(ValidationError, match="sum"):
        DefectSpec(probabilities=Probabilities(kind={"raised": 0.5, "sunk": 0.1}))
    spec = DefectSpec.given("sunk", ["holes", "edges", "edges"])
    assert spec.normal == ["edges", "holes"] and spec.kinds() == {"raised": 0.0, "sunk": 1.0, "any": 0.0}
    assert set(spec.summary()) == {"kind", "normal", "size", "probabilities", "reader", "abstained"}


def test_a_reader_below_its_threshold_abstains_and_says_so():
    probabilities = {"raised": 0.52, "sunk": 0.40, "any": 0.08}
    sure = DefectSpec.from_probabilities(probabilities, {"edges": 0.9, "corners": 0.2}, {}, "r", abstain_below=0.5)
    unsure = DefectSpec.from_probabilities(probabilities, {}, {}, "r", abstain_below=0.8)
    assert sure.kind == "raised" and sure.normal == ["edges"] and not sure.abstained
    assert unsure.kind == "any" and unsure.abstained and unsure.kinds() == {"any": 1.0}
    assert "not understood" in unsure.line() and "raised" in unsure.line()


def test_an_abstaining_reader_leaves_every_score_as_the_text_blind_run():
    cloud = read_cloud(SAMPLES / "surface_00.txt")
    unsure = DefectSpec.from_probabilities({"raised": 0.5, "sunk": 0.4, "any": 0.1}, {}, {}, "r", abstain_below=0.9)
    assert spec_weights(cloud.points, unsure) == (None, None)
    for gating in ("saliency", "learned", "all"):
        config = DetectConfig(gating=gating, n_points=64)
        blind, read = detect(cloud, config), detect(cloud, config, spec=unsure)
        assert np.array_equal(blind.scores, read.scores) and np.array_equal(blind.seeds, read.seeds)
        assert read.guidance["spec"]["abstained"] and blind.guidance is None


def test_the_generator_is_deterministic_and_never_emits_a_held_out_phrasing():
    first, again, other = generate(600, seed=3), generate(600, seed=3), generate(600, seed=4)
    assert first == again and first != other
    held = {normalize(text) for text in held_out_texts()}
    for seed in range(3):
        corpus = generate(3000, seed=seed)
        assert not held & {normalize(e["text"]) for e in corpus}
        assert {e["language"] for e in corpus} == {"en", "ko"} and {e["kind"] for e in corpus} == {"raised", "sunk",
                                                                                                  "any"}
        assert len({e["template"] for e in corpus}) > 40
    # without the exclusion the templates do make some held-out phrasings: the exclusion is what keeps them apart
    assert held & {normalize(e["text"]) for e in generate(20000, seed=0, exclude=set())}


def test_korean_particles_follow_the_last_syllable():
    assert attach("돌기<를> 찾아 주세요") == "돌기를 찾아 주세요"
    assert attach("함몰<를> 찾아 주세요") == "함몰을 찾아 주세요"
    assert attach("핀홀<은> 괜찮고 버<이> 문제") == "핀홀은 괜찮고 버가 문제"


def test_the_held_out_set_holds_forty_phrasings_per_kind_and_language_and_feature_phrasings():
    entries = read_guidance_set("held-out").guidance
    for language in ("en", "ko"):
        for kind in ("raised", "sunk", "any"):
            assert sum(e.language == language and e.kind == kind for e in entries) >= 40
        assert sum(e.language == language and bool(e.normal) for e in entries) >= 10
        assert sum(e.language == language and e.size != "any" for e in entries) >= 6
    assert all(e.split == "held-out" for e in entries)


def test_a_cube_edges_are_explained_by_edges_and_a_dent_on_a_face_is_not():
    points, dent, edge_distance = cube()
    found = explained(points, ["edges", "corners"])
    assert found[edge_distance < 1 / 40].mean() > 0.95
    assert found[dent].mean() < 0.05 and found[(edge_distance > 4 / 40) & ~dent].mean() < 0.02
    weights, by_edges = feature_weights(points, ["edges"]), explained(points, ["edges"])
    assert by_edges.any() and weights[by_edges].max() < weights[~by_edges].min() and np.all(feature_weights(points, []) == 1)


def test_guided_saliency_seeds_leave_the_edges_a_text_calls_normal_and_find_the_dent():
    points, dent, edge_distance = cube()
    cloud = PointCloud(points=points, labels=dent.astype(np.uint8))
    config = DetectConfig(gating="saliency", n_points=64)
    blind = detect(cloud, config)
    guided = detect(cloud, config, spec=DefectSpec.given("any", ["edges", "corners"]))
    assert not dent[blind.seeds].any() and edge_distance[blind.seeds].max() < 3 / 40  # the rule takes edges
    assert dent[guided.seeds].any() and edge_distance[guided.seeds].min() > 2 / 40
    assert auroc(dent, guided.scores) > 0.95 > auroc(dent, blind.scores)


@pytest.mark.parametrize("text, message", [("", "empty"), ("x" * 3000, "at most")])
def test_guidance_read_refuses_an_empty_or_huge_text_in_one_line(tmp_path, text, message):
    result = runner.invoke(app, ["guidance", "read", text])
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    big = tmp_path / "note.txt"
    big.write_text("pits " * (2 << 20))  # 10 MB
    result = runner.invoke(app, ["guidance", "read", f"@{big}"])
    assert result.exit_code == 2 and str(big) in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # reads with the shipped reader (Gemma 3 270M through llama.cpp)
def test_guidance_read_prints_the_documented_shape_and_reads_clear_phrasings_right():
    clear = {"Only bumps that stick out are defects.": "raised", "Report dents and pits only.": "sunk",
             "튀어나온 돌기만 불량입니다.": "raised", "움푹 파인 곳만 찾아 주세요.": "sunk"}
    for text, kind in clear.items():
        result = runner.invoke(app, ["guidance", "read", text, "--json"])
        assert result.exit_code == 0, result.stderr
        reading = json.loads(result.stdout)
        assert set(reading) == {"kind", "normal", "size", "probabilities", "reader", "abstained"}
        likely = reading["probabilities"]["kind"]
        assert max(likely, key=likely.get) == kind, (text, reading)  # read the right way round, sure or not
        assert reading["kind"] == ("any" if reading["abstained"] else kind)  # an unsure reader says so
        assert DefectSpec.model_validate(reading).kind == reading["kind"]
    result = runner.invoke(app, ["guidance", "read", "Sharp edges and corners are normal on this part."])
    assert result.exit_code == 0 and result.stdout.startswith("guidance: ") and "edges" in result.stdout
