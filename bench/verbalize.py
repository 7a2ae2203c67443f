"""Tokens per verbalized point with the embedded model's tokenizer (SmolLM2 spends a token per digit and per space),
for 3-digit (0-999, before issue 14) and 2-digit (0-99, now) coordinates, and the end-to-end wall time of
`agent3d detect` on the bundled sample with the embedded model (no cache): one warm-up run, then the median, min and
max of five. Prints markdown tables.

    python bench/verbalize.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from agent3d.geometry import CloudContext
from agent3d.io import read_cloud
from agent3d.sampling import sample
from agent3d.verbalize import verbalize

SAMPLE = Path(__file__).parents[1] / "data_samples" / "surface_00.txt"


def tokens_per_point(n_points: int, levels: int, fmt: str) -> float:
    from llama_cpp import Llama

    from agent3d.llm.llama_cpp import default_model_path

    tokenizer = Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    context = CloudContext(read_cloud(SAMPLE).points)
    shown = sample(context.points, n_points, "fps", seed=0)
    view = verbalize(context.points, shown, context.geometry(shown) if fmt == "xyz+geom" else None, fmt, levels)
    text = view.text() + "\n"
    return len(tokenizer.tokenize(text.encode(), add_bos=False, special=False)) / len(view.lines)


def detect_seconds(*options: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "agent3d"), "detect", str(SAMPLE), "--no-cache", *options],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    print("| coordinates | xyz tokens/point | xyz+geom tokens/point |\n|---|---|---|")
    for levels, name in ((1000, "0-999 (3 digits)"), (100, "0-99 (2 digits)")):
        print(f"| {name} | {tokens_per_point(64, levels, 'xyz'):.1f} | {tokens_per_point(64, levels, 'xyz+geom'):.1f} |")
    print("\n| agent3d detect data_samples/surface_00.txt | median wall s | min | max |\n|---|---|---|---|")
    for options in ((), ("--n-points", "256")):
        detect_seconds(*options)  # warm-up: the model file into the page cache
        seconds = [detect_seconds(*options) for _ in range(5)]
        print(f"| defaults {' '.join(options)} | {np.median(seconds):.1f} | {min(seconds):.1f} | {max(seconds):.1f} |")


if __name__ == "__main__":
    main()
