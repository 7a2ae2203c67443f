"""The quality and cost table of gatings against scoring every point, from finished budget sweeps (issue 35).

Not a test: it reads ``evaluate --budget ... --growth fixed|adaptive`` runs and prints, per gating, growth and budget:
P-AUROC and AUPRO, each over all's, the paired p against all (exact permutation test over the clouds, from
``summary.json``), scoring seconds per cloud and their ratio to all's in the same run.

Usage: python bench/gating_quality.py RUN [RUN ...]   (each RUN: an evaluate folder with budget-*/summary.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(run: Path) -> list[str]:
    """Markdown rows of one sweep."""
    out = []
    for folder in sorted(run.glob("budget-*"), key=lambda p: float(p.name.split("-")[1])):
        summary = json.loads((folder / "summary.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        growth = config.get("detect", {}).get("growth", "fixed")
        per_run = summary["per_run"]
        every = per_run["all"]
        for name, figures in per_run.items():
            if name == "all":
                continue
            versus = figures.get("versus", {}).get("all", {})
            p = [versus.get(key, {}).get("p") for key in ("p_auroc", "aupro")]
            out.append(f"| {name} | {growth} | {summary['budget']} | {figures['fraction_scored']:.3f} | "
                       f"{figures['p_auroc']:.3f} ({figures['p_auroc'] / every['p_auroc']:.3f} x) | "
                       f"{figures['aupro']:.3f} ({figures['aupro'] / every['aupro']:.3f} x) | "
                       f"{p[0]:.3g} / {p[1]:.3g} | {figures['scoring_seconds']:.2f} | "
                       f"{figures['scoring_seconds'] / every['scoring_seconds']:.2f} |")
        out.append(f"| all | — | {summary['budget']} | 1.000 | {every['p_auroc']:.3f} | {every['aupro']:.3f} | — | "
                   f"{every['scoring_seconds']:.2f} | 1.00 |")
    return out


def main() -> None:
    print("| gating | growth | budget | fraction scored | P-AUROC (x all) | AUPRO (x all) | p vs all (P-AUROC / AUPRO) "
          "| scoring s / cloud | x all |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in sys.argv[1:]:
        print(f"| **{run}** | | | | | | | | |")
        for row in rows(Path(run)):
            print(row)


if __name__ == "__main__":
    main()
