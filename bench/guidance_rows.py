"""The guidance benchmark of a finished text-blind evaluation, again, with guidance readers that were not there when
it ran (a reader trained later): ``guidance.json`` (and ``report.md`` / ``report.html``) rewritten with a row per
reader beside the text-blind and "kind given" rows, exactly as ``evaluate --guidance-set ... --compare-reader``
would have written them.

Usage (from the folder ``evaluate`` ran in: the run's configuration names the dataset as it was given)::

    python bench/guidance_rows.py runs/edges-fandisk data_samples/guidance-edges.toml --reader embedded
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent3d.datasets import load_dataset
from agent3d.evaluation.guidance import write_guidance
from agent3d.evaluation.report import write_report
from agent3d.evaluation.store import EvalConfig
from agent3d.guidance import resolve_reader
from agent3d.guidance_sets import read_guidance_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished text-blind evaluation")
    parser.add_argument("guidance_set", help="a guidance set (TOML, embedded or held-out)")
    parser.add_argument("--reader", action="append", default=[], help="embedded or a reader folder")
    args = parser.parse_args()
    run = EvalConfig.model_validate_json((args.run / "config.json").read_text())
    dataset = load_dataset(run.dataset)
    readers = {reader.name_: reader for reader in (resolve_reader(r) for r in args.reader)}
    figures = write_guidance(args.run, dataset, read_guidance_set(args.guidance_set), readers, run)
    summary = json.loads((args.run / "summary.json").read_text())
    samples = {(s.class_name, s.name): s for s in dataset.samples}
    write_report(args.run, summary, lambda name, sample: samples[(name, sample)].load(run.remove_plane).points,
                 figures)
    for row, splits in figures["runs"].items():
        held = splits.get("held-out")
        if held:
            print(f"{row:50s} flip {held['flip_auroc']} matched P-AUROC {held['matched_p_auroc']:.3f} "
                  f"recall {held['matched_suspect_recall']:.3f}")
    print(json.dumps(figures.get("readers", {})))


if __name__ == "__main__":
    main()
