"""Tuning a causal LM to read verbalized clouds: PEFT prompt tuning or LoRA, loss on the reply tokens only.

- Prompt tuning: ``n_virtual_tokens`` learnable embeddings prepended to every prompt, the model frozen
  (Lester, Al-Rfou & Constant, "The Power of Scale for Parameter-Efficient Prompt Tuning", EMNLP 2021).
- LoRA: trainable low-rank updates of the attention and MLP projections (Hu et al., ICLR 2022).

Both through peft. One example per optimizer step (AdamW, linear warm-up then cosine decay; constant
after warm-up under a time limit), float32 on the CPU (bf16 autocast was 20x slower than float32 on this
machine's AVX2-only CPU), bf16 autocast on CUDA. LoRA may be limited to the last layers: backpropagation
then stops there, which halves the cost of a step on a CPU. A validation split of whole clouds is decoded with the
same constrained decoder as ``--backend transformers`` at every evaluation step. Checkpoints (adapter,
optimizer, step, curve) let a killed run resume where it stopped.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent3d.agent import ReplyError, parse_reply
from agent3d.config import TuneConfig
from agent3d.file_checks import InputError
from agent3d.llm.transformers import SchemaDecoder, chat_ids
from agent3d.tuning.examples import TuneExample

CHECKPOINT = "checkpoint"


def encode(example: TuneExample, tokenizer) -> tuple[list[int], list[int]]:
    """Input ids (prompt + reply + end of turn) and labels (-100 on the prompt: loss on the reply only)."""
    prompt = chat_ids(tokenizer, example.messages)
    reply = tokenizer.encode(example.target, add_special_tokens=False) + [tokenizer.eos_token_id]
    return prompt + reply, [-100] * len(prompt) + reply


def peft_model(base, config: TuneConfig):
    """``base`` wrapped with a fresh prompt-tuning or LoRA adapter (peft); only the adapter trains."""
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    if config.method.startswith("prompt"):
        init = getattr(PromptTuningInit, "SAMPLE_VOCAB", PromptTuningInit.RANDOM)
        adapter = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.virtual_tokens,
                                     prompt_tuning_init=init)
    else:
        n_layers = base.config.num_hidden_layers
        layers = list(range(max(0, n_layers - config.lora_layers), n_layers)) if config.lora_layers else None
        adapter = LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=2 * config.lora_r,
                             lora_dropout=0.05, layers_to_transform=layers,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"])
    return get_peft_model(base, adapter)


def validate(decoder: SchemaDecoder, examples: list[TuneExample]) -> dict:
    """Decode ``examples`` with the constrained decoder (on the model being tuned) and measure what the replies name.

    Returns
    -------
    dict
        ``recall``: share of examples with a shown defect whose reply names at least one of its ids;
        ``false_alarms``: share of examples with nothing to name whose reply names something;
        ``named``: mean number of ids named; ``invalid``: unusable replies.
    """
    hits, positives, alarms, empties, named, invalid = 0, 0, 0, 0, 0, 0
    decoder.model.eval()
    for example in examples:
        text, _, _ = decoder.generate(example.messages, example.schema)
        try:
            ids = {s.id for s in parse_reply(text, set(example.schema["properties"]["suspects"]["items"]
                                                       ["properties"]["id"]["enum"])).suspects}
        except ReplyError:
            invalid += 1
            ids = set()
        named += len(ids)
        if example.positives:
            positives += 1
            hits += bool(ids & set(example.positives))
        else:
            empties += 1
            alarms += bool(ids)
    return {"recall": hits / positives if positives else None, "false_alarms": alarms / empties if empties else None,
            "named": named / max(len(examples), 1), "invalid": invalid}


def learning_rate_at(step: int, config: TuneConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % over ``steps`` (constant under ``minutes``)."""
    if step < config.warmup:
        return config.learning_rate * (step + 1) / config.warmup
    if config.minutes is not None:
        return config.learning_rate
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(model, tokenizer, train_set: list[TuneExample], val_set: list[TuneExample], config: TuneConfig,
          out: Path, resume: bool = False, on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Train the adapter of ``model`` (a peft model) and return the curve.

    Parameters
    ----------
    model : peft.PeftModel
        From :func:`peft_model`, or loaded from a checkpoint when resuming.
    tokenizer : transformers tokenizer
    train_set, val_set : list of TuneExample
    config : TuneConfig
    out : Path
        Checkpoints go to ``out/checkpoint``.
    resume : bool, default False
        Continue from ``out/checkpoint`` (its optimizer state, step and curve).
    on_step : callable, optional
        Called with ``{"step", "loss", "lr", "seconds"}`` after every step and with ``{"step", "val": {...}}``
        after every validation.

    Returns
    -------
    list of dict
        One entry per validation: step, mean training loss since the last one, and :func:`validate`'s figures.
    """
    import torch

    device = model.device
    decoder = SchemaDecoder(model, tokenizer)  # its grammar compiler is built once, not at every validation
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    step, curve, losses = 0, [], []
    if resume:
        step, curve, losses = _load_state(out / CHECKPOINT / "state.pt", optimizer)
    order = np.random.default_rng(config.seed).permutation(np.resize(np.arange(len(train_set)), config.steps
                                                                     if config.minutes is None else 10**6))
    torch.manual_seed(config.seed + step)
    random.seed(config.seed + step)
    start, autocast = time.monotonic(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                       enabled=device.type == "cuda")
    while step < len(order) and (config.minutes is None and step < config.steps
                                 or config.minutes is not None and time.monotonic() - start < 60 * config.minutes):
        model.train()
        ids, labels = encode(train_set[order[step]], tokenizer)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config)
        with autocast:
            loss = model(input_ids=torch.tensor([ids], device=device), labels=torch.tensor([labels], device=device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(loss.item())
        if on_step:
            on_step({"step": step, "loss": losses[-1], "lr": learning_rate_at(step - 1, config),
                     "seconds": time.monotonic() - start})
        if step % config.eval_every == 0:
            curve.append(_evaluate(decoder, val_set, config, step, losses, on_step))
            losses = []
        if step % config.checkpoint_every == 0:
            save_checkpoint(model, optimizer, out, step, curve, losses, config)
    if not curve or curve[-1]["step"] != step:
        curve.append(_evaluate(decoder, val_set, config, step, losses, on_step))
    return curve


def _evaluate(decoder, val_set, config, step, losses, on_step) -> dict:
    figures = validate(decoder, val_set[: config.n_val])
    entry = {"step": step, "train_loss": round(float(np.mean(losses)), 4) if losses else None, **figures}
    if on_step:
        on_step({"step": step, "val": entry})
    return entry


def save_checkpoint(model, optimizer, out: Path, step: int, curve: list, losses: list, config: TuneConfig) -> None:
    """Write ``out/checkpoint`` (adapter, optimizer state, step, curve, config) atomically: a kill while
    writing leaves the previous checkpoint intact."""
    import torch

    tmp, final, old = out / f"{CHECKPOINT}.tmp", out / CHECKPOINT, out / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "curve": curve, "losses": losses}, tmp / "state.pt")
    (tmp / "config.json").write_text(config.model_dump_json())
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_config(out: Path) -> dict | None:
    """The configuration recorded in ``out/checkpoint`` (or the previous one, if a write was cut short).

    Raises
    ------
    InputError
        A ``config.json`` that is not a JSON object.
    """
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        if (out / name / "config.json").is_file():
            if name != CHECKPOINT:
                (out / name).rename(out / CHECKPOINT)
            file = out / CHECKPOINT / "config.json"
            try:
                recorded = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as error:
                raise InputError(file, f"not a checkpoint configuration ({type(error).__name__})") from None
            if not isinstance(recorded, dict):
                raise InputError(file, "not a checkpoint configuration (not a JSON object)")
            return recorded
    return None


def read_state(file: Path) -> dict:
    """A checkpoint's ``state.pt``: tensors and plain data only (``weights_only=True``: nothing is unpickled, so a
    crafted file cannot run code), with its optimizer state, step, curve and losses.

    Raises
    ------
    InputError
        A missing, foreign or garbage file, naming it.
    """
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            state = torch.load(file, weights_only=True, map_location="cpu")
        state = {"optimizer": dict(state["optimizer"]), "step": int(state["step"]), "curve": list(state["curve"]),
                 "losses": list(state["losses"])}
    except Exception as error:  # torch raises many kinds for a foreign file; all mean "not our checkpoint"
        raise InputError(file, f"not a checkpoint of agent3d tune ({type(error).__name__})") from None
    return state


def _load_state(file: Path, optimizer) -> tuple[int, list, list]:
    """Step, curve and losses of a checkpoint (:func:`read_state`), loading the optimizer's state.

    Raises
    ------
    InputError
        A garbage file, or an optimizer state that does not fit these parameters, naming the file.
    """
    state = read_state(file)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise InputError(file, f"optimizer state does not fit this adapter ({type(error).__name__})") from None
    return state["step"], state["curve"], state["losses"]
