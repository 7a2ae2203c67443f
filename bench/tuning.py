"""Seconds per tuning step of the embedded SmolLM2-135M (transformers, CPU), by method, precision and length.

Each configuration trains a few steps (forward + backward + AdamW, batch 1) on a real example: a pointsgrade
cloud verbalized by the ``geom`` prompt at ``--n-points`` 32 (about 1,000 tokens), and a random 512-token
sequence. The first step of each configuration is a warm-up and not counted.

    python bench/tuning.py            # about 10 minutes on 2 cores
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from agent3d.io import read_cloud
from agent3d.llm.transformers import load_base, model_identity
from agent3d.prompts import load_prompt
from agent3d.tuning.examples import cloud_examples
from agent3d.tuning.train import TuneConfig, encode, peft_model

CLOUD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pointsgrade" / "surface_00.txt"
CONFIGURATIONS = [  # (label, method, lora_layers, bf16 autocast)
    ("LoRA r16, all 30 layers", "lora", 0, False),
    ("LoRA r16, last 10 layers", "lora", 10, False),
    ("prompt tuning, 20 virtual tokens", "prompt", 0, False),
    ("LoRA r16, all layers, bf16 autocast", "lora", 0, True),
]


def seconds_per_step(model, ids, labels, bf16: bool, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps


def main() -> None:
    identity = model_identity(None)
    example = cloud_examples(read_cloud(CLOUD), load_prompt("geom"), 32, [0])[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| configuration | tokens | s / step |\n|---|---|---|")
    for label, method, layers, bf16 in CONFIGURATIONS:
        base, tokenizer = load_base(identity)
        real = encode(example, tokenizer)
        noise = torch.randint(100, 10000, (512,)).tolist()
        model = peft_model(base, TuneConfig(method=method, lora_layers=layers))
        for ids, labels in ((real[0], real[1]), (noise, noise)):
            print(f"| {label} | {len(ids)} | {seconds_per_step(model, ids, labels, bf16, 1 if bf16 else 3):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
