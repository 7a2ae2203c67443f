"""The cost curve: scoring seconds (and whole-detection seconds) against the fraction of points scored, per scorer
and gating, beside scoring every point (issue 35).

Not a test: it prints figures and writes ``cost.json`` and ``cost.png`` to ``--out``. Every configuration runs
``agent3d.detect`` in this process with a scorer fitted once, each call with a fresh scoring state (so nothing is
carried from one configuration to the next); the best of ``--repeats`` runs is kept, after one warm-up call.

Clouds:
- ``pointsgrade``: the given labelled clouds (default: surfaces 10-12 of ``shared/data/pointsgrade``, about 22k
  points each); the memory bank's reference is pointsgrade surface 00 (a cost figure only: its quality on these
  clouds is not a result);
- ``500k``: the Stanford bunny mesh sampled uniformly by area to 500,000 points, the memory bank's reference an
  independent sampling (another seed).

Usage: python bench/scoring_cost.py --out runs/cost [--clouds pointsgrade 500k] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scorer import sample_surface

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5)
GATINGS = ("cascade", "saliency", "random")


def clouds(name: str) -> tuple[list, np.ndarray]:
    """The clouds of one set and the memory bank's reference."""
    from agent3d.cloud import PointCloud
    from agent3d.io import read_cloud

    if name == "pointsgrade":
        tests = [read_cloud(SHARED / "pointsgrade" / f"surface_{i:02d}.txt") for i in (10, 11, 12)]
        return tests, read_cloud(SHARED / "pointsgrade" / "surface_00.txt").points
    mesh = SHARED / "scans" / "stanford-bunny.obj"
    return [PointCloud(sample_surface(mesh, 500_000, 1), source="bunny-500k")], sample_surface(mesh, 500_000, 2)


def timed(cloud, scorer, gating: str, budget: float, growth: str, repeats: int) -> dict:
    """The best of ``repeats`` detections: seconds, scoring seconds, fraction scored."""
    from agent3d.config import DetectConfig
    from agent3d.pipeline import detect

    config = DetectConfig(gating=gating, budget=budget, growth=growth)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        found = detect(cloud, config, None, scorer)
        runs.append((time.perf_counter() - start, found.scoring_seconds, float(found.scored.mean())))
    best = min(runs)
    return {"seconds": best[0], "scoring_seconds": min(r[1] for r in runs), "fraction_scored": best[2]}


def measure(set_name: str, scorer_name: str, repeats: int) -> list[dict]:
    """Every gating and fraction (fixed growth; adaptive at 0.1) and ``all``, per cloud of the set."""
    from agent3d.scoring import build_scorer

    tests, reference = clouds(set_name)
    scorer = build_scorer(scorer_name, [reference] if scorer_name == "memory-bank" else [])
    rows = []
    for cloud in tests:
        timed(cloud, scorer, "saliency", 0.1, "fixed", 1)  # warm-up: imports, open3d, the learned model
        base = dict(set=set_name, scorer=scorer_name, cloud=Path(cloud.source).name, n_points=len(cloud))
        every = timed(cloud, scorer, "all", 1.0, "fixed", repeats)
        rows.append({**base, "gating": "all", "growth": "fixed", "budget": 1.0, **every})
        for gating in GATINGS:
            for budget in FRACTIONS:
                rows.append({**base, "gating": gating, "growth": "fixed", "budget": budget,
                             **timed(cloud, scorer, gating, budget, "fixed", repeats)})
            rows.append({**base, "gating": gating, "growth": "adaptive", "budget": 0.1,
                         **timed(cloud, scorer, gating, 0.1, "adaptive", repeats)})
        for row in rows[-(len(GATINGS) * (len(FRACTIONS) + 1) + 1):]:
            row["scoring_ratio"] = row["scoring_seconds"] / every["scoring_seconds"]
            row["seconds_ratio"] = row["seconds"] / every["seconds"]
            print(f"| {set_name} | {scorer_name} | {row['cloud']} | {row['gating']} | {row['growth']} | "
                  f"{row['fraction_scored']:.3f} | {row['scoring_seconds']:.2f} | {row['scoring_ratio']:.2f} | "
                  f"{row['seconds']:.2f} | {row['seconds_ratio']:.2f} |", flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Scoring seconds over all's against the fraction scored, one panel per set and scorer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["set"], r["scorer"]) for r in rows})
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, (set_name, scorer) in zip(axes[0], panels):
        mine = [r for r in rows if (r["set"], r["scorer"]) == (set_name, scorer) and r["growth"] == "fixed"]
        for gating in GATINGS:
            runs = [r for r in mine if r["gating"] == gating]
            budgets = sorted({r["budget"] for r in runs})
            axis.plot([np.median([r["fraction_scored"] for r in runs if r["budget"] == b]) for b in budgets],
                      [np.median([r["scoring_ratio"] for r in runs if r["budget"] == b]) for b in budgets], "o-",
                      label=gating)
        axis.plot([0, 1], [0, 1], ":", color="grey", label="proportional")
        axis.axhline(1.0, color="black", lw=0.8, label="all")
        axis.set(title=f"{set_name}, {scorer}", xlabel="fraction of points scored",
                 ylabel="scoring seconds / all's (median over clouds)", xlim=(0, 0.55), ylim=(0, 1.1))
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clouds", nargs="+", default=["pointsgrade", "500k"], choices=["pointsgrade", "500k"])
    parser.add_argument("--scorers", nargs="+", default=["self-reference", "memory-bank"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--plot-only", action="store_true", help="redraw cost.png from --out's cost.json")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads((args.out / "cost.json").read_text()), args.out / "cost.png")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    print("| set | scorer | cloud | gating | growth | fraction scored | scoring s | x all | detect s | x all |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for set_name in args.clouds:
        for scorer in args.scorers:
            rows += measure(set_name, scorer, args.repeats)
            (args.out / "cost.json").write_text(json.dumps(rows, indent=1))  # kept as it goes
    plot(rows, args.out / "cost.png")


if __name__ == "__main__":
    main()
