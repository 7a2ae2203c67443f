"""Aggregation of an evaluation folder into the ``summary.json`` object and the report table's rows.

Every metric is computed per class and then averaged over classes (docs/design.md, "Metrics"). The top-level
fields of the summary are those of the first run (first ``--gating`` with the first ``--prompt``);
``per_gating``, ``per_prompt`` and ``per_run`` hold the others.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from agent3d.evaluation.metrics import aupro, auroc, average_precision
from agent3d.evaluation.statistics import (
    BASELINES,
    RELIABLE_N,
    class_curves,
    format_difference,
    intervals,
    paired_difference,
)
from agent3d.evaluation.store import read_lines, scores_usable
from agent3d.file_checks import InputError

COLUMNS = [("p_auroc", "P-AUROC"), ("o_auroc", "O-AUROC"), ("aupro", "AUPRO"), ("ap", "AP"),
           ("suspect_recall", "suspect recall"), ("fraction_scored", "fraction scored"),
           ("tokens_prompt", "prompt tokens"), ("tokens_completion", "completion tokens"),
           ("llm_seconds", "LLM s"), ("scoring_seconds", "scoring s"), ("seconds", "seconds")]
INTERVAL_COLUMNS = [("p_auroc", "P-AUROC"), ("o_auroc", "O-AUROC"), ("aupro", "AUPRO"), ("ap", "AP"),
                    ("suspect_recall", "suspect recall")]
MAX_LISTED = 50  # failures listed by name in summary.json and the report (all are counted)


def run_name(gating: str, prompt: str | None) -> str:
    """``"llm/geom"`` for LLM gating, the gating name otherwise."""
    return f"{gating}/{prompt}" if prompt else gating


def read_records(out: Path, failed: bool = False) -> list[dict]:
    """The records of ``out/samples.jsonl`` (empty when there is none): the finished runs, or with
    ``failed=True`` those that could not be done (they carry ``"failed"``, the reason)."""
    records = read_lines(Path(out))
    if failed:
        return [r for r in records if "failed" in r]
    usable = {}  # the last usable record of each key: a sample redone after its score file went bad replaces it
    for record in records:
        if "failed" not in record and scores_usable(Path(out), record):
            usable[record["key"]] = record
    return list(usable.values())


def class_metrics(out: Path, records: list[dict]) -> dict:
    """Metrics of one run on one class, from its records and score files."""
    arrays = [np.load(Path(out) / r["scores_file"]) for r in records]
    labels = np.concatenate([a["labels"] for a in arrays])
    scores = np.concatenate([a["scores"] for a in arrays])
    regions = sum(r["regions"] for r in records)
    hits = [r["regions_hit"] for r in records if r["regions_hit"] is not None]
    return {
        "p_auroc": auroc(labels, scores),
        "o_auroc": auroc(np.array([r["label"] for r in records]), np.array([r["object_score"] for r in records])),
        "aupro": aupro([a["regions"].astype(np.int64) for a in arrays], [a["scores"] for a in arrays]),
        "ap": average_precision(labels, scores),
        "suspect_recall": sum(hits) / regions if hits and regions else None,
        "fraction_scored": sum(r["n_scored"] for r in records) / sum(r["n_points"] for r in records),
        "tokens_prompt": float(np.mean([r["tokens_prompt"] for r in records])),
        "tokens_completion": float(np.mean([r["tokens_completion"] for r in records])),
        "llm_seconds": float(np.mean([r["llm_seconds"] for r in records])),
        "seconds": float(np.mean([r["seconds"] for r in records])),
        "scoring_seconds": _mean_known([r.get("scoring_seconds") for r in records]),
        "llm_failures": sum(r["llm_failures"] for r in records),
        "llm_calls": sum(r.get("llm_calls", 0) for r in records),
        "llm_cached": sum(r.get("llm_cached", 0) for r in records),
        "llm_retries": sum(r.get("llm_retries", 0) for r in records),
        "n_samples": len(records),
    }


def _mean_known(values: list) -> float | None:
    """The mean of the values recorded (records written before a field existed hold None), or None."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def run_metrics(out: Path, records: list[dict]) -> dict:
    """Per-class metrics of one run and their mean over classes (None where no class defines one)."""
    by_class = defaultdict(list)
    for record in records:
        by_class[record["class"]].append(record)
    per_class = {name: class_metrics(out, rs) for name, rs in sorted(by_class.items())}
    overall = {}
    for key in per_class[next(iter(per_class))]:
        values = [m[key] for m in per_class.values() if m[key] is not None]
        overall[key] = float(np.mean(values)) if values else None
    for key in ("llm_failures", "llm_calls", "llm_cached", "llm_retries"):
        overall[key] = sum(m[key] for m in per_class.values())
    overall["n_samples"] = len(records)
    return {**overall, "per_class": per_class}


def summarize(out: Path, runs: list[tuple[str, str | None]], meta: dict, n_resamples: int = 1000,
              seed: int = 0) -> dict:
    """The ``summary.json`` object of an evaluation folder, with bootstrap intervals and paired comparisons
    (:mod:`agent3d.evaluation.statistics`) unless ``n_resamples`` is 0.

    Parameters
    ----------
    out : Path
    runs : list of (gating, prompt)
        In the order of the command line; the first is the headline.
    meta : dict
        Extra fields to record (dataset, backend, model, budget ...).

    Raises
    ------
    ValueError
        When the folder holds no record.
    """
    records, failures = read_records(out), read_records(out, failed=True)
    if not records:
        first = f"; e.g. {failures[0]['failed']}" if failures else ""
        raise InputError(out, f"no finished sample to summarize ({len(failures)} failed{first})")
    grouped = defaultdict(list)
    for record in records:
        grouped[run_name(record["gating"], record["prompt"])].append(record)
    per_run = {run_name(*r): run_metrics(out, grouped[run_name(*r)]) for r in runs if grouped[run_name(*r)]}
    for name, metrics in per_run.items():
        metrics["failed"] = sum(run_name(f["gating"], f["prompt"]) == name for f in failures)
    if n_resamples:
        add_statistics(out, {name: grouped[name] for name in per_run}, per_run, n_resamples, seed)
    first = next(iter(per_run))
    per_gating, per_prompt = {}, {}
    for (gating, prompt) in runs:
        name = run_name(gating, prompt)
        if name in per_run:
            per_gating.setdefault(gating, per_run[name])
            if prompt:
                per_prompt[prompt] = per_run[name]
    scorers = ", ".join(sorted({r["scorer"] for r in records}))  # what really scored, class by class
    return {**per_run[first], "run": first, "per_gating": per_gating, "per_prompt": per_prompt,
            "per_run": per_run, "scorer": scorers, "n_failed": len(failures),
            "failures": [{"key": f["key"], "reason": f["failed"]} for f in failures[:MAX_LISTED]], **meta}


def add_statistics(out: Path, records: dict[str, list[dict]], per_run: dict, n_resamples: int, seed: int) -> None:
    """Add ``intervals`` (95 % bootstrap interval per metric) and ``versus`` (paired differences against the
    ``random`` and ``saliency`` runs on the samples both finished) to each run's entry of ``per_run``. Each run's
    score files are read once; a pair reads them again only when the two runs finished different samples."""
    samples = {name: {(r["class"], r["sample"]) for r in rs} for name, rs in records.items()}
    curves = {name: class_curves(out, rs) for name, rs in records.items()}

    def restricted(name: str, common: set) -> list:
        return curves[name] if common == samples[name] else class_curves(out, records[name], common)

    for name in records:
        per_run[name]["intervals"] = intervals(curves[name], n_resamples, seed=seed)
        sizes = [len(c.object_labels) for c in curves[name]]
        per_run[name]["intervals_n"] = int(sum(sizes))
        per_run[name]["intervals_reliable"] = min(sizes) >= RELIABLE_N
        per_run[name]["versus"] = {}
        for baseline in BASELINES:
            mirrored = name in BASELINES and BASELINES.index(name) < BASELINES.index(baseline)
            if baseline == name or baseline not in records or mirrored:  # saliency - random, not also its mirror
                continue
            common = samples[name] & samples[baseline]
            per_run[name]["versus"][baseline] = paired_difference(
                restricted(baseline, common), restricted(name, common), n_resamples, seed=seed)


def interval_rows(summary: dict) -> list[list[str]]:
    """Rows ``[run, "0.505 [0.479, 0.534]", ...]`` for the metrics of ``INTERVAL_COLUMNS`` (empty without
    intervals)."""
    rows = []
    for name, metrics in summary["per_run"].items():
        if "intervals" in metrics:
            n = metrics.get("intervals_n")
            label = name if n is None else f"{name} (n = {n}{'' if metrics.get('intervals_reliable') else ', unreliable'})"
            rows.append([label] + [format_metric(key, metrics[key]) + format_interval(metrics["intervals"][key])
                                   for key, _ in INTERVAL_COLUMNS])
    return rows


def format_interval(interval: list) -> str:
    """`` [0.479, 0.534]``, or "" when undefined."""
    return "" if not interval or interval[0] is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def comparison_lines(summary: dict) -> list[str]:
    """``"llm/geom - random P-AUROC: -0.006 [-0.043, +0.035], p = 0.74"`` for every run and baseline."""
    lines = []
    for name, metrics in summary["per_run"].items():
        for baseline, found in metrics.get("versus", {}).items():
            lines += [format_difference(name, baseline, title, found[key]) for key, title in INTERVAL_COLUMNS
                      if key in found and found[key]["diff"] is not None]
    return lines


def table_rows(summary: dict) -> list[list[str]]:
    """Rows ``[run, metric...]`` of the report table, formatted."""
    rows = []
    for name, metrics in summary["per_run"].items():
        rows.append([name] + [format_metric(key, metrics[key]) for key, _ in COLUMNS])
    return rows


def format_metric(key: str, value) -> str:
    """A metric value as the tables show it (— for missing)."""
    if value is None:
        return "—"
    if key.startswith("tokens"):
        return f"{value:,.0f}"
    if key.endswith("seconds"):
        return f"{value:.1f}"
    return f"{value:.3f}"
