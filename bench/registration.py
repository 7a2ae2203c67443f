"""Benchmark of registration and of the registration and fused scorers (prints figures; not a test).

Clouds as in ``bench/scorer.py``: the Stanford bunny sampled uniformly by area; the test cloud is given a
random rigid pose; references are two independent samplings. Each configuration runs in a fresh
subprocess so peak RSS is its own.

Columns: ``register s`` = :func:`agent3d.scoring.registration.register_best` of the posed test cloud against both
references (RANSAC on FPFH + point-to-plane ICP; clouds above 100k points go through a 100k working
subsample); ``fit s`` = the scorer's ``fit`` (for ``fused``, both scorers and the held-out normalisation);
``scoring s`` = ``score(points, gated)`` end to end (registration included).

Usage: python bench/registration.py [--sizes 20000 500000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).parent))
from scorer import DEFAULT_MESH, sample_surface  # noqa: E402  (sibling benchmark script)


def run_one(n_points: int, scorer_name: str, gating: str) -> dict:
    from agent3d.gating import gate, random_seeds
    from agent3d.scoring import build_scorer
    from agent3d.sampling import working_cloud
    from agent3d.scoring.registration import register_best
    from agent3d.sampling import sample

    points = Rotation.from_euler("xyz", [30, -50, 80], degrees=True).apply(sample_surface(DEFAULT_MESH, n_points, 1))
    references = [sample_surface(DEFAULT_MESH, n_points, seed) for seed in (2, 3)]
    figures = {"n_points": n_points, "scorer": scorer_name, "gating": gating}
    start = time.perf_counter()
    figures["fitness"] = register_best(points[working_cloud(points)], references).fitness
    figures["register_s"] = time.perf_counter() - start
    start = time.perf_counter()
    scorer = build_scorer(scorer_name, references)
    figures["fit_s"] = time.perf_counter() - start
    seeds = np.empty(0, dtype=np.int64) if gating == "all" else random_seeds(sample(points, 256), 8)
    gated = gate(gating, points, seeds, 0.1)
    start = time.perf_counter()
    scorer.score_samples(points, gated)
    figures["scoring_s"] = time.perf_counter() - start
    figures["n_scored"] = len(gated)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 500000])
    parser.add_argument("--one", nargs=3, metavar=("N", "SCORER", "GATING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(int(args.one[0]), args.one[1], args.one[2])))
        return
    print("| points | scorer | gating | scored | register s | fitness | fit s | scoring s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_points in args.sizes:
        for scorer in ("registration", "fused"):
            for gating in ("all", "random"):
                out = subprocess.run([sys.executable, __file__, "--one", str(n_points), scorer, gating],
                                     capture_output=True, text=True, check=True)
                f = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {n_points:,} | {scorer} | {gating} | {f['n_scored']:,} | {f['register_s']:.2f} | "
                      f"{f['fitness']:.3f} | {f['fit_s']:.2f} | {f['scoring_s']:.2f} | {f['peak_rss_mb']:,.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
