"""The coverage curve a user of large scans needs: suspect recall and seconds per sample of the head (one forward
pass, no generation; tiles of at most --max-prompt-tokens) against the saliency rule, as more points are shown.

    python bench/coverage.py DATASET --adapter ADAPTER --out runs/coverage [--n-points 64 256 1024]

Runs ``agent3d evaluate DATASET --gating llm --gating saliency --n-points N`` once per N (resuming what is done),
prints a table and draws ``OUT/coverage.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--adapter", default="embedded")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-points", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--max-suspects", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for n in args.n_points:
        out = args.out / f"n{n}"
        command = [sys.executable, "-m", "agent3d", "evaluate", str(args.dataset), "--gating", "llm", "--gating",
                   "saliency", "--n-points", str(n), "--max-suspects", str(args.max_suspects), "--adapter",
                   args.adapter, "--bootstrap", "1000", "--no-cache", "--out", str(out)]  # seconds measured, not cached
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        summary = json.loads((out / "summary.json").read_text())
        for run in ("llm/geom", "saliency"):
            figures = summary["per_run"][run]
            rows.append({"n_points": n, "run": "head" if run.startswith("llm") else run,
                         "suspect_recall": figures["suspect_recall"],
                         "interval": figures["intervals"]["suspect_recall"], "llm_seconds": figures["llm_seconds"],
                         "seconds": figures["seconds"], "tokens_prompt": figures["tokens_prompt"],
                         "llm_cached": figures["llm_cached"]})
    print(f"{'shown':>6} {'run':9} {'recall':>7} {'95% interval':>16} {'LLM s':>7} {'s':>6} {'prompt tokens':>14}")
    for r in rows:
        low, high = r["interval"]
        cached = "  (answered from the reply cache: LLM s is not reading time)" if r["llm_cached"] else ""
        print(f"{r['n_points']:>6} {r['run']:9} {r['suspect_recall']:7.3f} [{low:.3f}, {high:.3f}]  "
              f"{r['llm_seconds']:7.1f} {r['seconds']:6.1f} {r['tokens_prompt']:14,.0f}{cached}")
    (args.out / "coverage.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.out / "coverage.png")


def plot(rows: list[dict], file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (recall, seconds) = plt.subplots(1, 2, figsize=(9, 3.4))
    for run, style in (("head", "o-"), ("saliency", "s--")):
        mine = [r for r in rows if r["run"] == run]
        n = [r["n_points"] for r in mine]
        recall.errorbar(n, [r["suspect_recall"] for r in mine], capsize=3, fmt=style, label=run,
                        yerr=[[r["suspect_recall"] - r["interval"][0] for r in mine],
                              [r["interval"][1] - r["suspect_recall"] for r in mine]])
        seconds.plot(n, [r["seconds"] for r in mine], style, label=run)
    for axis, label in ((recall, "suspect recall (95% interval)"), (seconds, "seconds per sample")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("shown points")
        axis.set_ylabel(label)
        axis.legend()
    figure.tight_layout()
    figure.savefig(file, dpi=120)


if __name__ == "__main__":
    main()
