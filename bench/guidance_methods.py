"""Guidance methods side by side: which kind of defect each method reads from each phrasing of a guidance set, and
what that reading does to a finished evaluation's scores (``agent3d evaluate ... --guidance-set`` figures).

Methods, each with every model named by ``--model`` (a ``NAME=READER`` pair: an embedded model's name and its
guidance reader folder, ``embedded`` for the shipped one):

- ``probe`` (the shipped route, the model as a text encoder): agent3d's guidance reader, a linear probe on the
  frozen model's pooled state of the text (``agent3d tune --method guidance``).
- ``choice, zero-shot`` (guidance -> specification by constrained generation): the model completes a fixed note
  with one word, the answer constrained to ``raised`` / ``sunk`` / ``any`` (each is one token in both models), its
  probabilities the next-token distribution renormalised over the three (closed-set scoring; Brown et al.,
  NeurIPS 2020).
- ``choice, 6-shot``: the same note after six training phrasings with their kinds (the first two of each kind in
  file order), in the order that answers the other training phrasings best.
- ``choice, 6-shot, calibrated``: a logistic regression on the three answer log-probabilities of the 6-shot
  prompt, fitted on the other training phrasings (contextual calibration, Zhao et al., ICML 2021): the
  "tuned if zero-shot fails" step that needs no gradient through the model.
- ``keywords`` (no language model): TF-IDF of words and word pairs + logistic regression on the training
  phrasings.

Nothing is chosen on the held-out phrasings or on the evaluation's clouds: the prompt, the six examples and the
calibration are fixed or fitted on training phrasings only.

Usage (from the folder ``evaluate`` ran in: the run's configuration names the dataset as it was given)::

    agent3d evaluate data/pg-val --gating saliency --gating all --n-points 64 --out runs/methods-val64
    python bench/guidance_methods.py runs/methods-val64 --model smollm2-135m=runs/guide2-smollm2-135m \\
        --model gemma-3-270m=embedded --out runs/methods-val64/methods.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import llama_cpp
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from agent3d.datasets import load_dataset
from agent3d.evaluation.guidance import guidance_benchmark
from agent3d.evaluation.store import EvalConfig
from agent3d.guidance import read_spec, resolve_reader
from agent3d.guidance_sets import read_guidance_set
from agent3d.spec import KINDS
from agent3d.llm.llama_cpp import load_llama

NOTE = ('An inspector\'s note says which defects to report on a scanned surface: raised ones (bumps, material above '
        'the surface), sunk ones (pits, dents, material below the surface), or any.\n')
ASK = 'Note: "{}"\nDefects to report:'
SHOTS = 2  # training phrasings of each kind shown before the note
ORDERS = {"grouped": [(0, "raised"), (1, "raised"), (0, "sunk"), (1, "sunk"), (0, "any"), (1, "any")],
          "interleaved": [(0, "raised"), (0, "sunk"), (0, "any"), (1, "raised"), (1, "sunk"), (1, "any")],
          "interleaved, any first": [(0, "any"), (0, "raised"), (0, "sunk"), (1, "any"), (1, "raised"), (1, "sunk")]}


def choice_logprobs(llm, prompts: list[str]) -> np.ndarray:
    """Log-probabilities of the answers `` raised``, `` sunk``, `` any`` as the next token after each prompt,
    renormalised over the three, read by ``llm`` (a ``llama_cpp.Llama``); ndarray of shape (len(prompts), 3),
    float64."""
    answers = [llm.tokenize(f" {kind}".encode(), add_bos=False, special=False) for kind in KINDS]
    assert all(len(a) == 1 for a in answers), "each answer must be one token"
    rows = []
    for prompt in prompts:
        llm.reset()
        llm.eval(llm.tokenize(prompt.encode(), add_bos=True, special=False))
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        logits = last.astype(np.float64)[[a[0] for a in answers]]
        rows.append(logits - np.logaddexp.reduce(logits))
    return np.array(rows)


def as_kinds(probabilities: np.ndarray, classes=KINDS) -> list[dict]:
    """Rows of probabilities as the benchmark's readings: one ``{kind: p}`` per phrasing."""
    return [{str(kind): float(p) for kind, p in zip(classes, row)} for row in probabilities]


def choice_readings(model: str, entries) -> tuple[dict[str, list[dict]], dict]:
    """The three choice methods' readings of every entry (:data:`NOTE`, :data:`ASK`, :data:`SHOTS`), and the
    order of the examples, chosen among :data:`ORDERS` by the 6-shot accuracy on the training phrasings that are not
    examples (a few-shot answer leans to the last example's kind)."""
    llm, _ = load_llama(llama_cpp.Llama, model, n_ctx=1024, n_batch=1024)  # one load serves every prompt set
    train = [i for i, e in enumerate(entries) if e.split == "train"]
    first = {kind: [j for j in train if entries[j].kind == kind][:SHOTS] for kind in KINDS}
    fit_on = [i for i in train if i not in sum(first.values(), [])]
    few, accuracy = {}, {}
    for name, order in ORDERS.items():
        shots = [first[kind][n] for n, kind in order]
        examples = "".join(ASK.format(entries[i].text) + f" {entries[i].kind}\n\n" for i in shots)
        few[name] = choice_logprobs(llm, [NOTE + "\n" + examples + ASK.format(e.text) for e in entries])
        accuracy[name] = float(np.mean([KINDS[np.argmax(few[name][i])] == entries[i].kind for i in fit_on]))
    order = max(accuracy, key=accuracy.get)
    zero = choice_logprobs(llm, [NOTE + ASK.format(e.text) for e in entries])
    llm.close()
    calibration = LogisticRegression(max_iter=5000).fit(few[order][fit_on], [entries[i].kind for i in fit_on])
    return ({"choice, zero-shot": as_kinds(np.exp(zero)), "choice, 6-shot": as_kinds(np.exp(few[order])),
             "choice, 6-shot, calibrated": as_kinds(calibration.predict_proba(few[order]), calibration.classes_)},
            {"order": order, "train_accuracy_by_order": accuracy})


def keyword_readings(entries) -> list[dict]:
    """TF-IDF (words and word pairs) + logistic regression, fitted on the training phrasings."""
    train = [e for e in entries if e.split == "train"]
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=5000))
    model.fit([e.text for e in train], [e.kind for e in train])
    return as_kinds(model.predict_proba([e.text for e in entries]), model.classes_)


def reading_figures(entries, readings: list[dict], seconds: float) -> dict:
    """Per split: kind accuracy, how often each kind is answered, and how decided the reading is."""
    figures = {"seconds_per_phrasing": round(seconds / len(entries), 3)}
    for split in ("train", "held-out"):
        chosen = [(e, r) for e, r in zip(entries, readings) if e.split == split]
        answers = [max(r, key=r.get) for _, r in chosen]
        figures[split] = {
            "kind_accuracy": round(float(np.mean([a == e.kind for a, (e, _) in zip(answers, chosen)])), 3),
            "answered": {kind: answers.count(kind) for kind in KINDS},
            "mean_raised_minus_sunk": {kind: round(float(np.mean(
                [r.get("raised", 0) - r.get("sunk", 0) for e, r in chosen if e.kind == kind])), 3)
                for kind in ("raised", "sunk")}}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished evaluation's folder (text-blind runs)")
    parser.add_argument("--model", action="append", required=True, help="NAME=READER (an embedded model, its probe)")
    parser.add_argument("--guidance-set", default="embedded")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    entries = read_guidance_set(args.guidance_set).guidance
    readings, figures = {}, {}
    start = time.perf_counter()
    readings["keywords"] = keyword_readings(entries)
    figures["keywords"] = reading_figures(entries, readings["keywords"], time.perf_counter() - start)
    for pair in args.model:
        model, reader = pair.split("=", 1)
        start = time.perf_counter()
        readings[f"probe, {model}"] = [read_spec(resolve_reader(reader), e.text).probabilities.kind for e in entries]
        figures[f"probe, {model}"] = reading_figures(entries, readings[f"probe, {model}"], time.perf_counter() - start)
        start = time.perf_counter()
        chosen, figures[f"choice order, {model}"] = choice_readings(model, entries)
        for name, value in chosen.items():
            readings[f"{name}, {model}"] = value
            figures[f"{name}, {model}"] = reading_figures(entries, value, (time.perf_counter() - start) / (len(ORDERS) + 1))
        print(json.dumps({k: v for k, v in figures.items() if model in k}, indent=1), flush=True)
    run = EvalConfig.model_validate_json((args.run / "config.json").read_text())
    benchmark = guidance_benchmark(args.run, load_dataset(run.dataset), read_guidance_set(args.guidance_set), readings,
                                   run)["runs"]
    args.out.write_text(json.dumps({"reading": figures, "benchmark": benchmark, "readings": readings}, indent=1))
    for row, splits in benchmark.items():
        for split, f in splits.items():
            if f:
                print(f"{row:55s} {split:9s} flip {f['flip_auroc']:.3f} {f['flip_interval']} p {f['flip_p']} "
                      f"matched P-AUROC {f['matched_p_auroc']:.3f} recall {f['matched_suspect_recall']:.3f}")


if __name__ == "__main__":
    main()
