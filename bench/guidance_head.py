"""Method (a) of the guidance issue: a head on the frozen model's per-line states, trained with labels that follow the
guidance — does the model, given the words inside the ``detect`` prompt, turn them into a different per-line answer?

For each model: the ``geom`` prompt of 64 FPS-shown points (one sampling per cloud), with each guidance phrasing in
it, is read by llama.cpp (:class:`agent3d.llm.states.LineStateReader`; states cached on disk). A line is positive
under a phrasing when it would hit a ground-truth region of the phrasing's kind (:func:`agent3d.defects.
region_kinds`). A logistic head (:func:`agent3d.tuning.heads.fit_head`) is trained on pointsgrade 00-09 with
the first ``--pairs`` raised / sunk pairs of the shipped set's training phrasings; a second head on the same clouds
read without guidance, with every region's lines positive, is the text-blind baseline. Scored on 10-19 with the same
training phrasings and with as many held-out pairs:

- flip AUROC over lines that hit a region of one known kind (raised = 1): a line's score under the raised
  phrasing minus its score under the sunk one (any text-blind detector: 0.5), mean over pairs;
- matched suspect recall: the top ``--k`` lines under a phrasing against the regions of its kind, beside the blind
  head's and the saliency rule's top ``--k``.

Usage::

    python bench/guidance_head.py data/pg-train data/pg-val --model smollm2-135m --model gemma-3-270m \\
        --out runs/guidance-head.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agent3d.datasets import load_dataset
from agent3d.defects import region_kinds
from agent3d.evaluation.metrics import auroc
from agent3d.guidance_sets import read_guidance_set
from agent3d.llm.states import LineStateReader
from agent3d.prompts import load_prompt
from agent3d.tuning.heads import fit_head
from agent3d.tuning.lines import line_examples, read_states


def pairs(entries, split: str, n: int) -> list[tuple[str, str]]:
    """The first ``n`` (raised, sunk) phrasing pairs of ``split``, in file order."""
    raised = [e.text for e in entries if e.split == split and e.kind == "raised"]
    sunk = [e.text for e in entries if e.split == split and e.kind == "sunk"]
    return list(zip(raised, sunk))[:n]


def examples(clouds, prompt, texts: list[str], reader, seed: int) -> dict:
    """Per cloud: the region kind of every hit column and, per text, the example read under it."""
    out = []
    for number, cloud in enumerate(clouds):
        _, defects = region_kinds(cloud.points, cloud.labels)
        per_text = {}
        for text in texts:
            example = line_examples(cloud, prompt, 64, [seed + number], guidance=text)[0]
            read_states(reader, [example])
            per_text[text] = example
        out.append({"kinds": np.array([d.kind for d in defects]), "by_text": per_text})
    return out


def labels_for(cloud: dict, text: str, kind: str | None) -> np.ndarray:
    """1 where the line hits a region of ``kind`` (any region for None)."""
    hits = cloud["by_text"][text].hits
    chosen = np.ones(hits.shape[1], dtype=bool) if kind is None else cloud["kinds"] == kind
    return hits[:, chosen].any(axis=1).astype(np.uint8)


def recall(cloud: dict, text: str, kind: str, scores: np.ndarray, k: int) -> tuple[int, int]:
    """Regions of ``kind`` hit by the top ``k`` lines, and their number."""
    hits = cloud["by_text"][text].hits[:, cloud["kinds"] == kind]
    return int(hits[np.argsort(-scores)[:k]].any(axis=0).sum()), hits.shape[1]


def measure(model: str, train_clouds, val_clouds, entries, n_pairs: int, k: int, seed: int) -> dict:
    prompt = load_prompt("geom")
    reader = LineStateReader(model)
    trained, held = pairs(entries, "train", n_pairs), pairs(entries, "held-out", n_pairs)
    start = time.perf_counter()
    train = examples(train_clouds, prompt, [t for p in trained for t in p] + [""], reader, seed)
    kinds = {t: kind for p in trained for t, kind in zip(p, ("raised", "sunk"))}
    states = np.vstack([c["by_text"][t].states for c in train for t in kinds])
    guided = fit_head(states, np.concatenate([labels_for(c, t, kinds[t]) for c in train for t in kinds]), "logistic")
    blind = fit_head(np.vstack([c["by_text"][""].states for c in train]),
                     np.concatenate([labels_for(c, "", None) for c in train]), "logistic")
    val = examples(val_clouds, prompt, [t for p in trained + held for t in p] + [""], reader, seed + 100)
    figures = {"seconds": round(time.perf_counter() - start, 1), "n_embd": reader.n_embd}
    for split, chosen in (("train", trained), ("held-out", held)):
        flips, found = [], {"guided head": [0, 0], "blind head": [0, 0], "saliency": [0, 0]}
        for raised, sunk in chosen:
            labels, diff = [], []
            for cloud in val_clouds_kinds(val):
                r, s = (cloud["by_text"][t] for t in (raised, sunk))
                one = labels_for(cloud, raised, "raised") != labels_for(cloud, raised, "sunk")
                labels.append(labels_for(cloud, raised, "raised")[one])
                diff.append((logit(guided, r.states) - logit(guided, s.states))[one])
                for text, kind in ((raised, "raised"), (sunk, "sunk")):
                    example = cloud["by_text"][text]
                    for name, scores in (("guided head", logit(guided, example.states)),
                                         ("blind head", logit(blind, cloud["by_text"][""].states)),
                                         ("saliency", example.salience)):
                        hit, total = recall(cloud, text, kind, scores, k)
                        found[name][0] += hit
                        found[name][1] += total
            flips.append(auroc(np.concatenate(labels), np.concatenate(diff)))
        figures[split] = {"flip_auroc": round(float(np.mean(flips)), 3), "flip_per_pair": [round(f, 3) for f in flips],
                          "matched_recall": {n: round(h / max(1, t), 3) for n, (h, t) in found.items()}}
    return figures


def logit(head: dict, states: np.ndarray) -> np.ndarray:
    """A logistic head's logit per line (:func:`agent3d.tuning.heads.fit_head`'s arrays)."""
    return (((states - head["mean"]) / head["scale"]) @ head["w0"] + head["b0"]).ravel()


def val_clouds_kinds(val: list[dict]) -> list[dict]:
    """The validation clouds that have regions of both kinds (flip AUROC needs both)."""
    return [c for c in val if {"raised", "sunk"} <= set(c["kinds"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path)
    parser.add_argument("val", type=Path)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    entries = read_guidance_set("embedded").guidance
    train = [s.load() for s in load_dataset(args.train).samples]
    val = [s.load() for s in load_dataset(args.val).samples]
    results = {}
    for model in args.model:
        results[model] = measure(model, train, val, entries, args.pairs, args.k, seed=0)
        print(model, json.dumps(results[model]), flush=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
