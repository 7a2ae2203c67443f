"""Evaluation runs side by side: what each run was (config.json) and how it scored (summary.json)."""

from __future__ import annotations

import json
from pathlib import Path

from agent3d.evaluation.statistics import class_curves, paired_difference
from agent3d.evaluation.summary import COLUMNS, read_records, run_name
from agent3d.file_checks import InputError
from agent3d.gating import strategy

HIGHER_IS_BETTER = {"p_auroc", "o_auroc", "aupro", "ap", "suspect_recall"}
LOWER_IS_BETTER = {"tokens_prompt", "tokens_completion", "llm_seconds", "seconds"}


def is_run(folder: Path) -> bool:
    """A folder written by ``agent3d evaluate`` (it has config.json and summary.json)."""
    return (folder / "config.json").is_file() and (folder / "summary.json").is_file()


def list_runs(root: str | Path) -> list[dict]:
    """One entry per run in ``root`` (or ``root`` itself when it is a run), sorted by path.

    Each entry: path, dataset, gatings, prompts with their content hashes, model, adapter (name@hash),
    backend, scorer, rounds, version, samples and the best gated row with its P-AUROC (:func:`best_row`).

    Raises
    ------
    ValueError
        When ``root`` holds no run.
    """
    root = Path(root)
    if is_run(root):
        folders = [root]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and is_run(p)) if root.is_dir() else []
    if not folders:
        raise InputError(root, "no evaluation run here (a run folder has config.json and summary.json)")
    entries = []
    for folder in folders:
        config, summary = read_run_file(folder, "config.json"), read_run_file(folder, "summary.json")
        entries.append({"path": str(folder), "dataset": config.get("dataset"), "gatings": config.get("gatings"),
                        "prompts": config.get("prompt_hashes", {}), "model": summary.get("model"),
                        "backend": summary.get("backend"), "scorer": summary.get("scorer"),
                        "adapter": summary.get("adapter"),
                        "rounds": config.get("detect", config).get("rounds", 1), "version": config.get("version"),
                        "samples": summary.get("n_samples"), **best_row(summary)})
    return entries


def read_run_file(folder: Path, name: str) -> dict:
    """``config.json`` or ``summary.json`` of a run, checked for the shape the listing reads.

    Raises
    ------
    InputError
        Unreadable JSON, not an object, or (summary) ``per_run`` that is not an object of rows whose metrics are
        numbers or null; the message names the file.
    """
    file = folder / name
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(file, f"unreadable JSON ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(file, "not a JSON object")
    if name == "summary.json":
        rows = data.get("per_run")
        if not isinstance(rows, dict) or not all(isinstance(r, dict) for r in rows.values()):
            raise InputError(file, "per_run must be an object of rows")
        for row, metrics in rows.items():
            bad = [key for key, _ in COLUMNS if not isinstance(metrics.get(key), (int, float, type(None)))
                   or isinstance(metrics.get(key), bool)]
            if bad:
                raise InputError(file, f"per_run.{row[:40]}.{bad[0]} must be a number or null")
    if name == "config.json" and not isinstance(data.get("detect", {}), dict):
        raise InputError(file, "detect must be an object")
    return data


def best_row(summary: dict) -> dict:
    """``{"run", "p_auroc"}`` of the row with the highest P-AUROC among those that gate (not ``all``, which scores
    every point and would always win), else of the first row."""
    rows = {name: m.get("p_auroc") for name, m in summary.get("per_run", {}).items()}
    gated = {name: value for name, value in rows.items() if strategy(name.split("/")[0]).budgeted and value is not None}
    if gated:
        name = max(gated, key=gated.get)
        return {"run": name, "p_auroc": gated[name]}
    return {"run": summary.get("run"), "p_auroc": summary.get("p_auroc")}


def load_rows(spec: str) -> dict[str, dict]:
    """The metric rows of a run: ``DIR`` (every row) or ``DIR#ROW`` (one row, e.g. ``runs/p#llm/geom``).

    Raises
    ------
    ValueError
        Not a run, or no such row.
    """
    folder, _, row = spec.partition("#")
    if not is_run(Path(folder)):
        raise InputError(folder, "not an evaluation run (no config.json and summary.json)")
    rows = read_run_file(Path(folder), "summary.json")["per_run"]
    if row:
        if row not in rows:
            raise InputError(folder, f"no row '{row}' (rows: {', '.join(rows)})")
        return {row: rows[row]}
    return rows


def compare(rows_a: dict[str, dict], rows_b: dict[str, dict], folders: tuple[str, str] | None = None,
            n_resamples: int = 1000) -> list[dict]:
    """Deltas B - A for every metric of the rows both have (or of the single rows given on each side).

    Parameters
    ----------
    rows_a, rows_b : dict of row name to metrics
    folders : (str, str), optional
        The two run folders: P-AUROC, AUPRO and suspect recall then get a paired bootstrap interval of B - A
        and a paired permutation p-value over the samples both runs finished
        (:func:`agent3d.evaluation.statistics.paired_difference`).
    n_resamples : int, default 1000

    Returns
    -------
    list of dict
        ``{"row", "metric", "a", "b", "delta", "better", "interval", "p"}`` with ``better`` in
        {"A", "B", "=", ""} ("" where a value is missing or the metric has no better direction, like fraction
        scored); ``interval`` and ``p`` are None where no paired statistics were computed.
    """
    if len(rows_a) == 1 and len(rows_b) == 1:
        (name_a, a), (name_b, b) = next(iter(rows_a.items())), next(iter(rows_b.items()))
        pairs = [(name_a if name_a == name_b else f"{name_a} vs {name_b}", a, b, name_a, name_b)]
    else:
        pairs = [(name, rows_a[name], rows_b[name], name, name) for name in rows_a if name in rows_b]
    result = []
    for name, a, b, row_a, row_b in pairs:
        paired = paired_rows(folders, row_a, row_b, n_resamples) if folders else {}
        for key, _ in COLUMNS:
            va, vb = a.get(key), b.get(key)
            delta = vb - va if va is not None and vb is not None else None
            better = ""
            if delta is not None and (key in HIGHER_IS_BETTER or key in LOWER_IS_BETTER):
                sign = delta if key in HIGHER_IS_BETTER else -delta
                better = "B" if sign > 1e-12 else "A" if sign < -1e-12 else "="
            found = paired.get(key, {})
            result.append({"row": name, "metric": key, "a": va, "b": vb, "delta": delta, "better": better,
                           "interval": found.get("interval"), "p": found.get("p")})
    return result


def paired_rows(folders: tuple[str, str], row_a: str, row_b: str, n_resamples: int) -> dict:
    """Paired bootstrap of row B of one run folder against row A of the other, on their common samples
    (empty when they share fewer than two)."""
    records = [[r for r in read_records(Path(folder)) if run_name(r["gating"], r["prompt"]) == row]
               for folder, row in zip(folders, (row_a, row_b))]
    common = {(r["class"], r["sample"]) for r in records[0]} & {(r["class"], r["sample"]) for r in records[1]}
    if len(common) < 2:
        return {}
    curves = [class_curves(Path(folder), rs, common) for folder, rs in zip(folders, records)]
    return paired_difference(curves[0], curves[1], n_resamples)
