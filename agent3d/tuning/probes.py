"""``agent3d tune --method head|features|prompt-head|lora-head`` end to end: labeled lines in, an adapter folder out.

- ``head``: the frozen model (llama.cpp embedding mode) reads every training prompt once; a head is chosen by
  grouped cross-validation over the training clouds (:func:`agent3d.tuning.heads.choose_head`), refitted on all
  of them, and written as ``head.npz`` + ``head.json`` (:mod:`agent3d.llm.head`). No torch.
- ``prompt-head`` / ``lora-head``: virtual tokens or LoRA trained through the model with a linear head
  (:mod:`agent3d.tuning.joint`; torch), written as the PEFT adapter + ``head.npz`` + ``head.json``.
- ``features``: the learned no-LLM baseline (:mod:`agent3d.learned`) on the same lines, written as
  ``features.skops`` + ``features.json``.

Validation clouds (``val``) are held out whole and only scored: suspect recall at ``max_suspects`` of the head
(or the baseline), the saliency rule and random lines on the same prompts. Everything is checked before anything
is written, and the folder appears whole or not at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent3d import outputs
from agent3d.datasets import expand_patterns, load_dataset
from agent3d.file_checks import InputError
from agent3d.learned import FEATURES, MODEL_FILE, RECORD_FILE, N_NEAR
from agent3d.llm.head import HEAD_RECORD, HEAD_WEIGHTS, forward
from agent3d.llm.states import LAYER, POOLING, LineStateReader
from agent3d.llm.torch_states import LAYER as TORCH_LAYER
from agent3d.llm.transformers import load_base, model_identity, pick_device, prompt_format
from agent3d.prompts import load_prompt
from agent3d.tuning import package_versions
from agent3d.tuning.heads import HEAD_CANDIDATES, choose_head, f1_threshold, fit_features, fit_head
from agent3d.tuning.joint import final_threshold, line_probabilities, train_joint
from agent3d.tuning.lines import LineExample, line_examples, read_states, recall_at

JOINT_METHODS = ("prompt-head", "lora-head")


def labeled_lines(datasets: list[Path], prompt, n_points: int, samplings: int, guidance: str, max_suspects: int,
                  seed: int = 0) -> list[LineExample]:
    """Line examples of every cloud of ``datasets`` (``samplings`` seeds each).

    Raises
    ------
    InputError
        An unreadable dataset or cloud, a cloud without labels, or no line on a defect at all.
    """
    clouds = [s.load() for d in datasets for s in load_dataset(d).samples]
    examples = []
    for number, cloud in enumerate(clouds):
        seeds = [seed + 1000 * number + k for k in range(samplings)]
        examples += line_examples(cloud, prompt, n_points, seeds, guidance=guidance, max_suspects=max_suspects)
    if not any(e.labels.any() for e in examples):
        raise InputError(datasets[0], "no shown line lies on a defect in any cloud: nothing to learn (more --n-points?)")
    return examples


def _figures(examples: list[LineExample], scores: list[np.ndarray], k: int, seed: int) -> dict:
    """Suspect recall at ``k`` of ``scores``, of the saliency rule and of random lines on the same examples."""
    rng = np.random.default_rng(seed)
    rankings = {"model": scores, "saliency": [e.salience for e in examples],
                "random": [rng.random(len(e.ids)) for e in examples]}
    figures = {}
    for name, ranking in rankings.items():
        hit, total = recall_at(examples, ranking, k)
        figures[name] = {"recall": round(hit / max(total, 1), 4), "regions_hit": hit, "regions": total}
    return figures


def tune_probe(method: str, datasets: list[Path], out: Path, val: list[Path] | None = None, model: str | None = None,
               prompt: str = "geom", prompts_dir: str | None = None, n_points: int = 64, samplings: int = 6,
               guidance: str = "", max_suspects: int = 8, folds: int = 5, seed: int = 0,
               on_progress: Callable[[str], None] | None = None, config=None, device: str = "auto") -> dict:
    """Train a head (``method="head"``), the learned baseline (``"features"``) or a head through the model
    (``"prompt-head"``, ``"lora-head"``) and write its folder.

    Parameters
    ----------
    method : {"head", "features", "prompt-head", "lora-head"}
    datasets : list of Path
        Labeled training datasets (any layout ``evaluate`` reads, or single labeled files).
    out : Path
        The adapter folder to write.
    val : list of Path, optional
        Held-out labeled datasets, only scored.
    model : str, optional
        GGUF file (``head``); the embedded SmolLM2-135M by default.
    prompt, prompts_dir, guidance : str
        The prompt the head reads, exactly as detect renders it (recorded; detect refuses another).
    n_points : int, default 64
        Points shown per prompt (use the same ``--n-points`` in detect / evaluate).
    samplings : int, default 6
        Prompts per training cloud (FPS seeds).
    max_suspects : int, default 8
        The ``k`` of suspect recall used to choose and to report.
    folds : int, default 5
        Grouped cross-validation folds over the training clouds.
    seed : int, default 0
    on_progress : callable, optional
        Called with a line of text as the work goes on.
    config : TuneConfig, optional
        ``prompt-head`` / ``lora-head``: steps, learning rate, virtual tokens, LoRA rank and layers, seed.
    device : {"auto", "cpu", "cuda"}, default "auto"
        ``prompt-head`` / ``lora-head``.

    Returns
    -------
    dict
        The record written as ``head.json`` / ``features.json``.

    Raises
    ------
    InputError
        Bad datasets, model or output folder (nothing is written).
    ValueError
        An unknown or region prompt.
    """
    say = on_progress or (lambda text: None)
    datasets, val = expand_patterns(datasets), expand_patterns(val or [])
    overlap = {p.resolve() for p in datasets} & {p.resolve() for p in val}
    if overlap:
        raise InputError(sorted(overlap)[0], "is both a training and a validation dataset")
    template = load_prompt(prompt, prompts_dir)
    record_name = RECORD_FILE if method == "features" else HEAD_RECORD
    outputs.check_output(out, folder=True, keep=record_name)
    start = time.monotonic()
    train = labeled_lines(datasets, template, n_points, samplings, guidance, max_suspects, seed)
    held = labeled_lines(val, template, n_points, 1, guidance, max_suspects, seed + 10**6) if val else []
    say(f"{len(train)} training prompts from {len({e.cloud for e in train})} clouds, {len(held)} validation prompts")
    record = {"method": method, "prompt": {"name": template.name, "hash": template.digest, "format": template.format},
              "guidance": guidance, "n_points": n_points, "samplings": samplings, "max_suspects": max_suspects,
              "datasets": [str(d) for d in datasets], "validation_datasets": [str(v) for v in val or []],
              "examples_train": len(train), "examples_val": len(held), "lines_train": int(sum(len(e.ids) for e in train)),
              "positive_lines_train": int(sum(e.labels.sum() for e in train))}
    if method == "head":
        reader = LineStateReader(model)
        read_states(reader, train + held, on_example=lambda i, n: say(f"states {i}/{n}"))
        best, table = choose_head(train, max_suspects, folds, seed)
        kind, strength = HEAD_CANDIDATES[best]
        arrays = fit_head(np.vstack([e.states for e in train]), np.concatenate([e.labels for e in train]),
                          kind, strength, seed)
        threshold = f1_threshold(np.concatenate([e.labels for e in train]), np.concatenate(table[best]["scores"]))
        record.update({"base_model": {"name": reader.model, "sha256": reader.sha256, "format": reader.format},
                       "layer": LAYER,
                       "pooling": POOLING, "directions": "forward", "head": best, "threshold": round(threshold, 6),
                       "cross_validation": {"folds": folds, "k": max_suspects,
                                            "recall": {n: round(t["recall"], 4) for n, t in table.items()}},
                       "validation": _figures(held, [forward(arrays, e.states) for e in held], max_suspects, seed)
                       if held else None})
    elif method in JOINT_METHODS:
        arrays = _tune_joint(record, train, held, model, config, device, max_suspects, seed, say)
    else:
        estimator = fit_features(np.vstack([e.features for e in train]), np.concatenate([e.labels for e in train]),
                                 seed)
        record.update({"features": list(FEATURES), "n_near": N_NEAR, "estimator": "HistGradientBoostingClassifier",
                       "validation": _figures(held, [estimator.predict_proba(e.features)[:, 1] for e in held],
                                              max_suspects, seed) if held else None})
    record["seconds"] = round(time.monotonic() - start, 1)
    record["versions"] = package_versions("scikit-learn", "llama_cpp_python", "skops", "torch", "transformers", "peft")
    with outputs.staged_folder(out) as staging:
        if method != "features":
            np.savez(staging / HEAD_WEIGHTS, **arrays)
        if method in JOINT_METHODS:
            record.pop("network").save_pretrained(str(staging))
            for file in staging.iterdir():
                os.chmod(file, 0o644)  # adapters are for sharing (safetensors writes them private)
        if method == "features":
            import skops.io

            skops.io.dump(estimator, staging / MODEL_FILE)
        outputs.write_json(staging / record_name, record)
    return record


def _tune_joint(record: dict, train: list[LineExample], held: list[LineExample], model: str | None, config,
                device: str, k: int, seed: int, say: Callable[[str], None]) -> dict:
    """Train ``prompt-head`` / ``lora-head``; fill ``record`` (the trained PEFT model under ``network``, taken out
    before the record is written) and return the head's arrays."""
    identity = model_identity(model)
    base, tokenizer = load_base(identity, pick_device(device))
    network, head, probe, curve = train_joint(base, tokenizer, train, config, k, say)
    say("final probabilities")
    threshold = final_threshold(train, line_probabilities(network, head, tokenizer, train))
    record.update({"base_model": {"name": identity.name, "sha256": identity.sha256,
                                  "format": prompt_format(tokenizer)}, "layer": TORCH_LAYER,
                   "pooling": POOLING, "directions": "forward", "head": "logistic, trained through the model",
                   "threshold": round(threshold, 6), "probe": probe, "config": config.model_dump(), "curve": curve,
                   "trainable_parameters": sum(p.numel() for p in network.parameters() if p.requires_grad) + head.weight.numel() + 1,
                   "device": str(network.device), "network": network,
                   "validation": _figures(held, line_probabilities(network, head, tokenizer, held), k, seed)
                   if held else None})
    return head.arrays()
