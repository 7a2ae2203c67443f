"""Benchmark of the classical scorers: seconds and peak RSS per stage, per cloud size and gating.

Not a test: it prints figures. Each configuration runs in a fresh subprocess, so the peak resident
memory (``ru_maxrss``) is that configuration's own.

Clouds: the surface of ``shared/data/scans/stanford-bunny.obj`` (a range scan) sampled uniformly by area
(open3d) to 20k, 100k and 500k points; the reference of the memory bank is an independent sampling
of the same surface (another seed).

Stages:
- bank: ``MemoryBankScorer.fit`` on the reference (group features + greedy coreset);
- features: group features of the gated points alone, on the working cloud (part of scoring, shown
  to split the cost);
- scoring: ``scorer.score_samples(points, gated)`` end to end (features, nearest neighbours, interpolation).

Gatings: ``all`` scores every point; ``saliency`` and ``random`` grow 8 seeds to the budget (0.1).
``llm`` gating scores exactly like them (8 seeds, same budget, same growth); its model time is in
``agent3d detect``'s own report, not here.

Usage: python bench/scorer.py [--sizes 20000 100000 500000] [--mesh PATH]
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

DEFAULT_MESH = Path(__file__).resolve().parents[2] / "shared" / "data" / "scans" / "stanford-bunny.obj"


def sample_surface(mesh_path: Path, n_points: int, seed: int) -> np.ndarray:
    """Points of shape (n_points, 3) sampled uniformly by area on the mesh surface."""
    import open3d as o3d

    o3d.utility.random.seed(seed)
    mesh = o3d.io.read_triangle_mesh(str(mesh_path))
    return np.asarray(mesh.sample_points_uniformly(number_of_points=n_points).points)


def run_one(mesh: Path, n_points: int, scorer_name: str, gating: str) -> dict:
    """Time one configuration in this process and return its figures."""
    from scipy.spatial import cKDTree

    from agent3d.gating import gate, random_seeds, saliency_seeds
    from agent3d.features import group_features
    from agent3d.geometry import local_geometry
    from agent3d.sampling import sample
    from agent3d.scoring import MemoryBankScorer, SelfReferenceScorer
    from agent3d.sampling import working_cloud

    points = sample_surface(mesh, n_points, seed=1)
    reference = sample_surface(mesh, n_points, seed=2) if scorer_name == "memory-bank" else None
    figures = {"n_points": n_points, "scorer": scorer_name, "gating": gating}
    start = time.perf_counter()
    if scorer_name == "memory-bank":
        scorer = MemoryBankScorer().fit([reference])
    else:
        scorer = SelfReferenceScorer()
    figures["bank_s"] = time.perf_counter() - start
    start = time.perf_counter()
    seeds = np.empty(0, dtype=np.int64)
    if gating != "all":
        shown = sample(points, 256)
        if gating == "saliency":
            geometry = local_geometry(points, shown)
            seeds = saliency_seeds(shown, geometry.curvature, geometry.residual, 8)
        else:
            seeds = random_seeds(shown, 8)
    gated = gate(gating, points, seeds, 0.1)
    figures["gating_s"] = time.perf_counter() - start
    figures["n_scored"] = len(gated)
    start = time.perf_counter()
    work = working_cloud(points)
    local = np.unique(cKDTree(points[work]).query(points[gated], workers=-1)[1])
    group_features(points[work], local)
    figures["features_s"] = time.perf_counter() - start
    start = time.perf_counter()
    scorer.score_samples(points, gated)
    figures["scoring_s"] = time.perf_counter() - start
    figures["points_per_s"] = len(gated) / figures["scoring_s"]
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000, 500000])
    parser.add_argument("--scorers", nargs="+", default=["memory-bank", "self-reference"])
    parser.add_argument("--gatings", nargs="+", default=["all", "saliency", "random"])
    parser.add_argument("--mesh", type=Path, default=DEFAULT_MESH)
    parser.add_argument("--one", nargs=3, metavar=("N", "SCORER", "GATING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.mesh, int(args.one[0]), args.one[1], args.one[2])))
        return
    print("| points | scorer | gating | scored | bank s | gating s | features s | scoring s | points/s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n_points in args.sizes:
        for scorer in args.scorers:
            for gating in args.gatings:
                out = subprocess.run([sys.executable, __file__, "--mesh", str(args.mesh), "--one", str(n_points),
                                      scorer, gating], capture_output=True, text=True, check=True)
                f = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {n_points:,} | {scorer} | {gating} | {f['n_scored']:,} | {f['bank_s']:.2f} | "
                      f"{f['gating_s']:.2f} | {f['features_s']:.2f} | {f['scoring_s']:.2f} | "
                      f"{f['points_per_s']:,.0f} | {f['peak_rss_mb']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
