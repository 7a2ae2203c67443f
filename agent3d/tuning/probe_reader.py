"""``agent3d tune generated --method guidance``: the frozen model's linear probe (Alain & Bengio, 2016), trained on
phrasings of :mod:`agent3d.guidance_corpus` instead of a hand-written set.

Each phrasing is read by the frozen model through llama.cpp inside the note of :data:`agent3d.guidance.NOTE` (the
states of its last 8 tokens averaged: :func:`agent3d.guidance.pooled_state`); logistic regressions on the
standardised states give the kind, the size and each normal feature. The regularisation is chosen by
cross-validation grouped by template (:class:`sklearn.model_selection.StratifiedGroupKFold`: a construction never on
both sides of a fold), and the abstention threshold on the cross-validated kind probabilities
(:func:`agent3d.tuning.reader.abstention_threshold`). The hand-written held-out set is never read here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent3d import outputs
from agent3d.guidance import NOTE, GuidanceReader, pooled_state
from agent3d.guidance_corpus import generate
from agent3d.llm.states import LineStateReader
from agent3d.spec import KINDS
from agent3d.tuning.reader import abstention_threshold, targets

STRENGTHS = (0.001, 0.01, 0.1, 1.0)
POOLING = "note, last 8 tokens"


def tune_probe_reader(out: Path, model: str | None = "gemma-3-270m", n: int = 3000, folds: int = 4, seed: int = 0,
                      on_progress: Callable[[str], None] | None = None) -> dict:
    """Train and write a probe guidance reader on generated phrasings (``guidance.npz``, ``guidance.json``).

    Parameters
    ----------
    out : Path
    model : str, default "gemma-3-270m"
        An embedded model's name or a GGUF file.
    n : int, default 3000
        Generated phrasings (English and Korean in turn).
    folds : int, default 4
    seed : int, default 0
    on_progress : callable, optional

    Returns
    -------
    dict
        The record written as ``guidance.json``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    say = on_progress or (lambda text: None)
    outputs.check_output(out, folder=True, keep="guidance.json")
    start = time.monotonic()
    corpus = generate(n, seed=seed)
    reader = LineStateReader(model, n_ctx=2048)
    states = np.array([pooled_state(reader, e["text"], POOLING) for e in corpus], dtype=np.float64)
    say(f"read {len(corpus)} phrasings ({time.monotonic() - start:.0f} s)")
    mean, scale = states.mean(axis=0), states.std(axis=0) + 1e-6
    standard = (states - mean) / scale
    kind, normal, size = targets(corpus)
    groups = np.unique([e["template"] for e in corpus], return_inverse=True)[1]
    split = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    table, predicted = {}, {}
    for strength in STRENGTHS:
        predicted[strength] = cross_val_predict(LogisticRegression(C=strength, max_iter=3000), standard, kind,
                                                groups=groups, cv=split, method="predict_proba")
        table[strength] = float((predicted[strength].argmax(axis=1) == kind).mean())
        say(f"C = {strength}: grouped cross-validated kind accuracy {table[strength]:.3f}")
    strength = max(table, key=table.get)
    threshold = abstention_threshold(predicted[strength], kind)
    arrays = {"mean": mean, "scale": scale}
    fitted = LogisticRegression(C=strength, max_iter=3000).fit(standard, kind)
    arrays["coef"], arrays["intercept"] = fitted.coef_, fitted.intercept_
    fitted = LogisticRegression(C=strength, max_iter=3000).fit(standard, size)
    arrays["size_coef"], arrays["size_intercept"] = fitted.coef_, fitted.intercept_
    rows = [LogisticRegression(C=strength, max_iter=3000).fit(standard, normal[:, j]) for j in range(normal.shape[1])]
    arrays["normal_coef"] = np.vstack([r.coef_ for r in rows])
    arrays["normal_intercept"] = np.concatenate([r.intercept_ for r in rows])
    record = {"method": "guidance", "base_model": {"name": reader.model, "sha256": reader.sha256,
                                                   "model": str(model or "smollm2-135m")},
              "pooling": POOLING, "note": NOTE, "last_tokens": 8, "C": strength,
              "corpus": {"generator": "agent3d.guidance_corpus", "n": n, "seed": seed},
              "cross_validation": {"folds": folds, "grouped_by": "template",
                                   "kind_accuracy": {str(c): round(a, 4) for c, a in table.items()}},
              "abstain_below": threshold, "seconds": round(time.monotonic() - start, 1)}
    probe = GuidanceReader()
    probe.classes_, probe.arrays_ = list(KINDS), arrays
    with outputs.staged_folder(out) as staging:
        probe.save(staging, record)
    return probe.record_
