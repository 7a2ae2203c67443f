"""Method (b) of the guidance issue, on the guidance text: a LoRA adapter and a linear head trained through the model
on the training phrasings (LoRA: Hu et al., ICLR 2022; peft), against the frozen model's probe that agent3d ships.

The text is read inside the note the shipped probe uses (:data:`agent3d.guidance.NOTE`), the final states of its
last 8 tokens averaged (the decoder only: no vocabulary projection), and a linear head gives raised / sunk / any.
LoRA rank 8 on the attention's query and value projections of every layer; AdamW (adapter 5e-4, head 5e-3), 15
epochs of the training phrasings in shuffled batches of 4 (left-padded), seed 0 — fixed before any run, nothing chosen on held-out
phrasings. The readings then weight a finished evaluation's stored scores (the guidance benchmark), as the other
methods' do in ``bench/guidance_methods.py``.

Usage (from the folder ``evaluate`` ran in: the run's configuration names the dataset as it was given)::

    python bench/guidance_lora.py runs/methods-val64 --model smollm2-135m --model gemma-3-270m \\
        --out runs/methods-val64/lora.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from guidance_methods import as_kinds, reading_figures

from agent3d.datasets import load_dataset
from agent3d.evaluation.guidance import guidance_benchmark
from agent3d.evaluation.store import EvalConfig
from agent3d.guidance import NOTE
from agent3d.guidance_sets import read_guidance_set
from agent3d.spec import KINDS
from agent3d.llm.transformers import load_base, model_identity

LAST, RANK, EPOCHS, BATCH, ADAPTER_RATE, HEAD_RATE = 8, 8, 15, 4, 5e-4, 5e-3


def lora_readings(model: str, entries, seed: int = 0) -> list[dict]:
    """Train the adapter and head on the ``train`` entries; the kind probabilities of every entry."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base, tokenizer = load_base(model_identity(model))
    model_ = get_peft_model(base, LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.05,
                                             target_modules=["q_proj", "v_proj"]))
    decoder = model_.base_model.model.model  # the decoder stack: final states after the last norm
    head = torch.nn.Linear(base.config.hidden_size, len(KINDS))
    optimizer = torch.optim.AdamW([{"params": [p for p in model_.parameters() if p.requires_grad],
                                    "lr": ADAPTER_RATE}, {"params": head.parameters(), "lr": HEAD_RATE}])
    tokenizer.padding_side = "left"  # the last tokens of every text line up at the end of the batch
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def logits(rows: list[int]):
        batch = tokenizer([NOTE.format(entries[i].text) for i in rows], return_tensors="pt", padding=True)
        positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
        states = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         position_ids=positions).last_hidden_state
        return head(states[:, -LAST:].mean(dim=1))

    train = np.array([i for i, e in enumerate(entries) if e.split == "train"])
    order = np.random.default_rng(seed)
    model_.train()
    for _ in range(EPOCHS):
        shuffled = order.permutation(train)
        for start in range(0, len(shuffled), BATCH):
            rows = [int(i) for i in shuffled[start:start + BATCH]]
            target = torch.tensor([KINDS.index(entries[i].kind) for i in rows])
            loss = torch.nn.functional.cross_entropy(logits(rows), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model_.eval()
    with torch.no_grad():
        probabilities = np.vstack([torch.softmax(logits([i]), dim=1).numpy() for i in range(len(entries))])
    return as_kinds(probabilities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished evaluation's folder (text-blind runs)")
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    guidance_set = read_guidance_set("embedded")
    readings, figures = {}, {}
    for model in args.model:
        start = time.perf_counter()
        readings[f"lora + head, {model}"] = lora_readings(model, guidance_set.guidance)
        figures[f"lora + head, {model}"] = reading_figures(guidance_set.guidance, readings[f"lora + head, {model}"],
                                                           time.perf_counter() - start)
        print(json.dumps(figures[f"lora + head, {model}"]), flush=True)
        args.out.with_suffix(".readings.json").write_text(json.dumps(readings))
    run = EvalConfig.model_validate_json((args.run / "config.json").read_text())
    benchmark = guidance_benchmark(args.run, load_dataset(run.dataset), guidance_set, readings, run)["runs"]
    args.out.write_text(json.dumps({"reading": figures, "benchmark": benchmark, "readings": readings}, indent=1))
    for row, splits in benchmark.items():
        for split, f in splits.items():
            if f and "lora" in row:
                print(f"{row:45s} {split:9s} flip {f['flip_auroc']:.3f} {f['flip_interval']} p {f['flip_p']} "
                      f"matched P-AUROC {f['matched_p_auroc']:.3f}")


if __name__ == "__main__":
    main()
