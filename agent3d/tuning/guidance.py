"""``agent3d tune GUIDANCE.toml --method guidance``: a guidance reader (:class:`agent3d.guidance.GuidanceReader`)
for one model, trained on the ``train`` phrasings of a guidance set only.

Each phrasing is read by the frozen model (llama.cpp, :meth:`agent3d.llm.states.LineStateReader.text_state`) in two
ways (:data:`agent3d.guidance.POOLINGS`): the text alone, mean of its states; and the text inside a fixed note, mean of the states of
the note's last 8 tokens, where the model is about to name the kind (the prompt-based sentence embedding of Jiang et
al., "Scaling sentence embeddings with large language models", 2023). The pooling and the probe's regularisation
are chosen by stratified cross-validation on the training phrasings, a mirrored raised / sunk pair kept in one fold
(:func:`mirror_groups`); the held-out phrasings are only scored.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent3d import outputs
from agent3d.base import InputError
from agent3d.guidance import POOLINGS, GuidanceReader, pooled_state
from agent3d.guidance_sets import guidance_set_path, read_guidance_set, shipped_guidance_set
from agent3d.llm.states import LineStateReader

STRENGTHS = (0.001, 0.01, 0.1, 1.0)


def mirror_groups(kinds: list[str]) -> np.ndarray:
    """Cross-validation groups of a guidance set's phrasings: the j-th raised and the j-th sunk phrasing (in file
    order) are one group, as sets are written in mirrored pairs ("Look for bumps." / "Look for pits."), whose
    near-identical states with opposite labels would otherwise sit on both sides of a fold and punish every probe
    that learns anything (seen: accuracies below chance); each ``any`` phrasing is a group of its own.

    Returns
    -------
    ndarray of shape (len(kinds),), int64
    """
    seen = {"raised": 0, "sunk": 0}
    groups = []
    for position, kind in enumerate(kinds):
        if kind in seen:
            groups.append(seen[kind])
            seen[kind] += 1
        else:
            groups.append(len(kinds) + position)
    return np.asarray(groups, dtype=np.int64)


def tune_guidance(guidance_set: Path, out: Path, model: str | None = None, folds: int = 4, seed: int = 0,
                  on_progress: Callable[[str], None] | None = None) -> dict:
    """Train and write a guidance reader.

    Parameters
    ----------
    guidance_set : Path
        A guidance set (TOML, or ``embedded``); its ``train`` entries train, its ``held-out`` entries are scored.
    out : Path
        The reader's folder (``guidance.npz``, ``guidance.json``).
    model : str, optional
        An embedded model's name or a GGUF file; the default embedded model when None.
    folds : int, default 4
    seed : int, default 0
    on_progress : callable, optional

    Returns
    -------
    dict
        The record written as ``guidance.json``.

    Raises
    ------
    InputError
        A malformed guidance set, a set with fewer than ``folds`` training phrasings of a kind, an unusable output.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

    say = on_progress or (lambda text: None)
    guidance_set = guidance_set_path(guidance_set)
    entries = read_guidance_set(guidance_set)
    outputs.check_output(out, folder=True, keep="guidance.json")
    train, held = entries.of("train"), entries.of("held-out")
    start = time.monotonic()
    reader = LineStateReader(model, n_ctx=2048)
    states = {pooling: (np.array([pooled_state(reader, e.text, pooling) for e in train]),
                        np.array([pooled_state(reader, e.text, pooling) for e in held]) if held else None)
              for pooling in POOLINGS}
    kinds = [e.kind for e in train]
    if min(kinds.count(k) for k in set(kinds)) < folds:
        raise InputError(guidance_set, f"needs at least {folds} training phrasings of each kind")
    split = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    groups = mirror_groups(kinds)
    table = {}
    for pooling, (x, _) in states.items():
        standard = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
        for strength in STRENGTHS:
            table[(pooling, strength)] = float(cross_val_score(LogisticRegression(C=strength, max_iter=5000), standard,
                                                               kinds, groups=groups, cv=split).mean())
    pooling, strength = max(table, key=table.get)
    say(f"chosen by {folds}-fold cross-validation on {len(train)} training phrasings: {pooling}, C = {strength}")
    probe = GuidanceReader().fit(states[pooling][0], kinds, strength, seed)
    held_kinds = probe.predict(states[pooling][1]) if held else []
    record = {"method": "guidance", "base_model": {"name": reader.model, "sha256": reader.sha256,
                                                   "model": str(model or "smollm2-135m")},
              "guidance_set": {"path": "embedded" if guidance_set == shipped_guidance_set() else str(guidance_set),
                               "sha256": hashlib.sha256(
                  Path(guidance_set).read_bytes()).hexdigest()},
              "pooling": pooling, "note": POOLINGS[pooling][0], "last_tokens": POOLINGS[pooling][1], "C": strength,
              "cross_validation": {"folds": folds, "accuracy": {f"{p}, C={c}": round(a, 4)
                                                                for (p, c), a in table.items()}},
              "train_phrasings": len(train), "held_out_phrasings": len(held),
              "held_out_accuracy": round(float(np.mean([p == e.kind for p, e in zip(held_kinds, held)])), 4)
              if held else None,
              "seconds": round(time.monotonic() - start, 1)}
    with outputs.staged_folder(out) as staging:
        probe.save(staging, record)
    return probe.record_
