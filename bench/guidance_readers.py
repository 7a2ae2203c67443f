"""Guidance readers side by side on the hand-written held-out phrasings (``agent3d/shipped/guidance-held-out.toml``):
accuracy per field (kind, normal features, size) and language, abstentions, expected calibration error of the kind
with a reliability diagram, and seconds per reading.

Readers: every reader folder named by ``--reader NAME=DIR`` (``embedded``: the shipped one), read as ``agent3d
guidance read`` reads; and, with ``--choice MODEL``, few-shot constrained choice with calibration (method (c) of
``bench/guidance_methods.py``): six generated phrasings as examples, the answer constrained to `` raised`` /
`` sunk`` / `` any``, a logistic regression on the three log-probabilities fitted on ``--calibrate`` further
generated phrasings (contextual calibration, Zhao et al., ICML 2021). Nothing here is chosen on the held-out set: it
is read once per reader and scored.

Usage (from the repository root)::

    python bench/guidance_readers.py --reader shipped=embedded --reader probe=runs/reader-probe \\
        --reader lora=runs/reader-gemma --choice smollm2-135m --out runs/readers
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from guidance_methods import ASK, NOTE, choice_logprobs

from agent3d.evaluation.guidance import reading_accuracy
from agent3d.guidance import read_spec, resolve_reader
from agent3d.guidance_sets import read_guidance_set
from agent3d.guidance_corpus import generate
from agent3d.spec import KINDS, DefectSpec


def expected_calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> tuple[float, list]:
    """ECE over equal-width confidence bins (Guo et al., ICML 2017) and the diagram's bins (lower edge, mean
    confidence, accuracy, count)."""
    edges = np.linspace(0, 1, bins + 1)
    error, rows = 0.0, []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
            rows.append([float(low), float(confidence[inside].mean()), float(right[inside].mean()), int(inside.sum())])
    return float(error), rows


def choice_specs(model: str, entries, calibrate: int) -> tuple[list[DefectSpec], float]:
    """Few-shot constrained choice, calibrated on generated phrasings; the specs and seconds per reading."""
    import llama_cpp
    from sklearn.linear_model import LogisticRegression

    from agent3d.llm.llama_cpp import load_llama

    corpus = generate(calibrate + 60, seed=11)
    shots = [next(e for e in corpus if e["kind"] == kind and e["language"] == language)
             for language in ("en", "ko") for kind in KINDS]
    rest = [e for e in corpus if e not in shots][:calibrate]
    examples = "".join(ASK.format(e["text"]) + f" {e['kind']}\n\n" for e in shots)
    llm, _ = load_llama(llama_cpp.Llama, model, n_ctx=1024, n_batch=1024)
    fit = choice_logprobs(llm, [NOTE + "\n" + examples + ASK.format(e["text"]) for e in rest])
    start = time.perf_counter()
    held = choice_logprobs(llm, [NOTE + "\n" + examples + ASK.format(e.text) for e in entries])
    seconds = (time.perf_counter() - start) / len(entries)
    llm.close()
    calibration = LogisticRegression(max_iter=5000).fit(fit, [e["kind"] for e in rest])
    probabilities = calibration.predict_proba(held)
    specs = [DefectSpec.from_probabilities({k: float(p[list(calibration.classes_).index(k)]) for k in KINDS}, {}, {},
                                           f"choice, {model}") for p in probabilities]
    return specs, seconds


def figures(entries, specs: list[DefectSpec], seconds: float) -> dict:
    truth = np.array([KINDS.index(e.kind) for e in entries])
    probabilities = np.array([[s.probabilities.kind[k] for k in KINDS] for s in specs])
    ece, diagram = expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == truth)
    pairs = {"en": [], "ko": []}
    for e, s in zip(entries, specs):
        pairs[e.language].append(s.probabilities.kind["raised"] - s.probabilities.kind["sunk"])
    featured = [i for i, e in enumerate(entries) if e.normal]
    return {"accuracy": reading_accuracy(entries, specs), "ece": round(ece, 4), "reliability": diagram,
            "normal_recall_on_feature_phrasings": float(np.mean([specs[i].normal == sorted(entries[i].normal)
                                                                 for i in featured])),
            "normal_false_alarms": float(np.mean([bool(s.normal) for e, s in zip(entries, specs) if not e.normal])),
            "seconds_per_reading": round(seconds, 3)}


def plot(out: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 5), dpi=120)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for name, result in results.items():
        rows = np.array(result["reliability"])
        axis.plot(rows[:, 1], rows[:, 2], marker="o", label=f"{name} (ECE {result['ece']:.3f})")
    axis.set(xlabel="confidence in the kind read", ylabel="share read right", xlim=(0.3, 1), ylim=(0, 1),
             title="Reliability of the kind, held-out phrasings")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "reliability.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", action="append", default=[], help="NAME=DIR (DIR: embedded or a reader folder)")
    parser.add_argument("--choice", action="append", default=[], help="a model for calibrated few-shot choice")
    parser.add_argument("--calibrate", type=int, default=150)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    entries = read_guidance_set("held-out").guidance
    results, readings = {}, {}
    for pair in args.reader:
        name, folder = pair.split("=", 1)
        reader = resolve_reader(folder)
        read_spec(reader, "warm-up: load the model")
        start = time.perf_counter()
        specs = [read_spec(reader, e.text) for e in entries]
        results[name] = figures(entries, specs, (time.perf_counter() - start) / len(entries))
        readings[name] = [s.summary() for s in specs]
        print(name, json.dumps(results[name]["accuracy"]), "ECE", results[name]["ece"], flush=True)
        write(args.out, results, readings)  # each reader's figures kept as soon as they exist
    for model in args.choice:
        specs, seconds = choice_specs(model, entries, args.calibrate)
        name = f"choice 6-shot calibrated, {model}"
        results[name] = figures(entries, specs, seconds)
        readings[name] = [s.summary() for s in specs]
        print(name, json.dumps(results[name]["accuracy"]), "ECE", results[name]["ece"], flush=True)
        write(args.out, results, readings)


def write(out: Path, results: dict, readings: dict) -> None:
    (out / "readers.json").write_text(json.dumps({"results": results, "readings": readings}, indent=1,
                                                 ensure_ascii=False))
    plot(out, results)


if __name__ == "__main__":
    main()
