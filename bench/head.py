"""Which head to ship, decided on the training surfaces only: grouped cross-validation of line rankings.

For pointsgrade surfaces 00-09 (the training set; 10-19 are never read here unless --all-twenty), builds the
prompts detect would send (``geom``, FPS, several sampling seeds per surface), reads the frozen embedded model's
per-line states (cached), and scores out-of-fold rankings by suspect recall at 8 and 16 for: every head candidate,
forward and both-directions readings, the learned baseline (gradient-boosted trees on the numbers the text shows),
the saliency rule and random lines, beside the cap (the best any ranking could reach).

    python bench/head.py --n-points 64 --samplings 6
    python bench/head.py --n-points 64 --samplings 2 --all-twenty --forward-only   # 5-fold CV over all 20 surfaces

Prints a table and writes it as JSON (``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from agent3d.io import read_cloud
from agent3d.llm.states import LineStateReader
from agent3d.prompts import load_prompt
from agent3d.tuning.heads import HEAD_CANDIDATES, features_fitter, head_fitter, out_of_fold
from agent3d.tuning.lines import line_examples, read_states, recall_at

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pointsgrade"


def cap(examples, k: int) -> float:
    """Best recall any k lines could reach: greedy cover of the regions (max-coverage, (1 - 1/e) exact at worst;
    exact here, where a line hits at most one region)."""
    hit = total = 0
    for e in examples:
        covered = np.zeros(e.hits.shape[1], dtype=bool)
        for _ in range(k):
            gain = (e.hits & ~covered).sum(axis=1)
            if gain.max() == 0:
                break
            covered |= e.hits[int(np.argmax(gain))]
        hit, total = hit + int(covered.sum()), total + e.hits.shape[1]
    return hit / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-points", type=int, default=64)
    parser.add_argument("--samplings", type=int, default=6)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--all-twenty", action="store_true", help="all 20 surfaces (the report's 5-fold CV)")
    parser.add_argument("--forward-only", action="store_true", help="skip the reversed reading (half the time)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = [f"surface_{i:02d}.txt" for i in range(20 if args.all_twenty else 10)]
    prompt = load_prompt("geom")
    start = time.perf_counter()
    examples = []
    for number, name in enumerate(names):
        cloud = read_cloud(DATA / name)
        examples += line_examples(cloud, prompt, args.n_points, [1000 * number + s for s in range(args.samplings)])
    reader = LineStateReader()
    read_states(reader, examples, both_directions=not args.forward_only,
                on_example=lambda i, n: print(f"\rstates {i}/{n} ({time.perf_counter() - start:.0f} s)", end="",
                                              flush=True))
    print()
    width = reader.n_embd
    forward_only = [e.states[:, :width] for e in examples]
    both = [e.states for e in examples]
    rng = np.random.default_rng(0)
    rows = {"cap": {k: cap(examples, k) for k in (8, 16)}}
    rankings = {"saliency": [e.salience for e in examples], "random": [rng.random(len(e.ids)) for e in examples],
                "learned (features)": out_of_fold(examples, features_fitter(), args.folds)}
    for name, (kind, strength) in HEAD_CANDIDATES.items():
        for direction, states in (("forward", forward_only), ("both", both))[:1 if args.forward_only else 2]:
            for e, s in zip(examples, states):
                e.states = s
            rankings[f"head {name} {direction}"] = out_of_fold(examples, head_fitter(kind, strength), args.folds)
    for name, scores in rankings.items():
        rows[name] = {k: recall_at(examples, scores, k)[0] / recall_at(examples, scores, k)[1] for k in (8, 16)}
    print(f"{len(names)} surfaces x {args.samplings} samplings, {args.n_points} shown points, "
          f"{args.folds}-fold grouped CV; {time.perf_counter() - start:.0f} s")
    print(f"{'ranking':40s} recall@8  recall@16")
    for name, row in rows.items():
        print(f"{name:40s} {row[8]:.3f}     {row[16]:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"surfaces": names, "samplings": args.samplings, "n_points": args.n_points,
                                         "folds": args.folds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
