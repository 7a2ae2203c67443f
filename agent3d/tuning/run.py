"""``agent3d tune`` end to end: read labeled datasets, build examples, train, write the adapter and ``tune.json``.

Everything that can be wrong with the input is checked before anything is written; the adapter files
and ``tune.json`` appear only when training has finished (``tune.json`` last).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent3d import outputs
from agent3d.datasets import expand_patterns, load_dataset
from agent3d.file_checks import InputError
from agent3d.llm.adapters import ADAPTER_RECORD, check_weights
from agent3d.llm.transformers import load_base, model_identity, pick_device
from agent3d.outputs import write_json
from agent3d.prompts import load_prompt
from agent3d.tuning import package_versions
from agent3d.tuning.examples import TuneExample, cloud_examples
from agent3d.tuning.train import CHECKPOINT, TuneConfig, checkpoint_config, peft_model, read_state, train


def collect_examples(datasets: list[Path], prompt, n_points: int, samplings: int, guidance: str = "",
                     val_fraction: float = 0.15, seed: int = 0,
                     empty_fraction: float = 0.0) -> tuple[list[TuneExample], list[TuneExample], dict]:
    """Training and validation examples; the validation clouds are held out whole. Of the training examples
    with an empty target, a seeded ``empty_fraction`` is kept; validation keeps them all.

    Returns
    -------
    train, val : list of TuneExample
    counts : dict
        Clouds and examples per split, and examples whose target names something.

    Raises
    ------
    InputError
        An unreadable dataset or cloud, a cloud without labels, or no anomalous cloud at all.
    """
    clouds = [s.load() for d in datasets for s in load_dataset(d).samples]
    if not any(c.labels.any() for c in clouds):
        raise InputError(datasets[0], "no anomalous point in any cloud: nothing to learn from")
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(len(clouds))[: max(1, int(round(val_fraction * len(clouds))))].tolist()) \
        if len(clouds) > 1 else set()
    train_set, val_set = [], []
    for number, cloud in enumerate(clouds):
        seeds = [seed + 1000 * number + k for k in range(samplings if number not in held else 1)]
        (val_set if number in held else train_set).extend(
            cloud_examples(cloud, prompt, n_points, seeds, guidance=guidance))
    empty = [e for e in train_set if not e.positives]
    kept = {id(empty[i]) for i in rng.permutation(len(empty))[: int(round(empty_fraction * len(empty)))]}
    train_set = [e for e in train_set if e.positives or id(e) in kept]
    if not train_set:
        raise InputError(datasets[0], "no training example names a shown point on a defect: more --n-points?")
    val_set = [val_set[i] for i in rng.permutation(len(val_set))]
    counts = {"clouds_train": len(clouds) - len(held), "clouds_val": len(held), "examples_train": len(train_set),
              "examples_val": len(val_set), "train_with_targets": sum(bool(e.positives) for e in train_set),
              "val_with_targets": sum(bool(e.positives) for e in val_set)}
    return train_set, val_set or train_set[:1], counts


def check_output(out: Path, config: TuneConfig, resume: bool) -> None:
    """Refuse what :func:`agent3d.outputs.check_output` refuses (a file, an unwritable place), an output folder that
    holds a finished adapter, or a resume without a matching checkpoint.

    Raises
    ------
    InputError
    """
    outputs.check_output(out, folder=True, keep=CHECKPOINT)  # a folder of the user's own files is never written into
    if (out / ADAPTER_RECORD).is_file():
        raise InputError(out, "already holds a tuned adapter; choose another --out")
    recorded = checkpoint_config(out) if out.is_dir() else None
    if resume and recorded is None:
        raise InputError(out, "no checkpoint to resume from")
    if resume and recorded != config.model_dump():
        changed = sorted(k for k in recorded if recorded.get(k) != config.model_dump().get(k))
        raise InputError(out, f"checkpoint was made with other settings ({', '.join(changed)} differ)")
    if not resume and recorded is not None:
        raise InputError(out, "holds a checkpoint of an unfinished run; add --resume or choose another --out")
    if resume:  # the whole checkpoint, before any example is made or model loaded
        check_weights(out / CHECKPOINT)
        read_state(out / CHECKPOINT / "state.pt")


def load_checkpoint_weights(model, folder: Path) -> None:
    """Load a checkpoint's adapter weights into a fresh adapter of the same configuration (peft cannot reload a
    prompt-tuning adapter as trainable), every tensor's name and shape checked first.

    Raises
    ------
    InputError
        Weights of another adapter (names or shapes differ), naming the file.
    """
    import peft

    weights = peft.utils.load_peft_weights(str(folder))
    expected = {k: tuple(v.shape) for k, v in peft.get_peft_model_state_dict(model).items()}
    given = {k: tuple(v.shape) for k, v in weights.items()}
    if given != expected:
        wrong = sorted(set(given) ^ set(expected)) or sorted(k for k in given if given[k] != expected[k])
        raise InputError(folder / "adapter_model.safetensors", f"weights do not fit this adapter ({len(wrong)} "
                                                               f"tensors differ, e.g. {wrong[0][:80]})")
    peft.set_peft_model_state_dict(model, weights)


def tune(datasets: list[Path], out: Path, config: TuneConfig, model: str | None = None, prompt: str = "geom",
         prompts_dir: str | None = None, n_points: int = 64, samplings: int = 4, guidance: str = "",
         device: str = "auto", resume: bool = False, on_step: Callable[[dict], None] | None = None,
         on_examples: Callable[[dict], None] | None = None) -> dict:
    """Tune an adapter and write it with its record.

    Parameters
    ----------
    datasets : list of Path
        Labeled datasets (any layout ``evaluate`` reads; quoted shell patterns are expanded).
    out : Path
        Adapter folder: ``adapter_config.json``, ``adapter_model.safetensors``, ``tune.json``.
    config : TuneConfig
    model : str, optional
        GGUF file or Hugging Face folder; the embedded SmolLM2-135M by default.
    prompt, prompts_dir : str
        The prompt template the adapter is tuned for.
    n_points : int, default 64
        Points shown per example (use the same ``--n-points`` in detect / evaluate).
    samplings : int, default 4
        Examples per training cloud (sampling seeds).
    guidance : str, default ""
    device : {"auto", "cpu", "cuda"}
    resume : bool, default False
    on_step, on_examples : callable, optional
        Progress callbacks (see :func:`agent3d.tuning.train.train`; ``on_examples`` gets the counts).

    Returns
    -------
    dict
        The ``tune.json`` record.

    Raises
    ------
    InputError
        Bad datasets, model or output folder (nothing is written).
    ValueError
        An unknown prompt.
    """
    import torch

    datasets = expand_patterns(datasets)
    template = load_prompt(prompt, prompts_dir)
    check_output(out, config, resume)
    identity = model_identity(model)
    device = pick_device(device)  # a missing CUDA is refused before any work
    train_set, val_set, counts = collect_examples(datasets, template, n_points, samplings, guidance,
                                                  seed=config.seed, empty_fraction=config.empty_fraction)
    if on_examples:
        on_examples(counts)
    base, tokenizer = load_base(identity, device)
    torch.manual_seed(config.seed)
    model_ = peft_model(base, config)
    if resume:
        load_checkpoint_weights(model_, out / CHECKPOINT)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    curve = train(model_, tokenizer, train_set, val_set, config, out, resume, on_step)
    tmp = out / "final.tmp"
    model_.save_pretrained(str(tmp))
    for file in tmp.iterdir():
        os.chmod(file, 0o644)  # adapters are for sharing, as every result (safetensors writes them private)
        file.replace(out / file.name)
    shutil.rmtree(tmp)
    record = {"base_model": {"name": identity.name, "path": identity.path, "sha256": identity.sha256},
              "method": config.method, "prompt": {"name": template.name, "hash": template.digest,
                                                  "format": template.format},
              "guidance": guidance, "n_points": n_points, "samplings": samplings,
              "datasets": [str(d) for d in datasets], **counts, "config": config.model_dump(),
              "steps": curve[-1]["step"], "curve": curve, "seconds": round(time.monotonic() - start, 1),
              "device": str(model_.device), "trainable_parameters": sum(p.numel() for p in model_.parameters()
                                                                         if p.requires_grad),
              "versions": package_versions("torch", "transformers", "peft")}
    write_json(out / ADAPTER_RECORD, record)
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    return record
