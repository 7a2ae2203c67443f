"""Evaluation runs side by side: what each run was (config.json) and how it scored (summary.json)."""

from __future__ import annotations

import json
from pathlib import Path

from agent3d.evaluation.summary import COLUMNS

HIGHER_IS_BETTER = {"p_auroc", "o_auroc", "aupro", "ap", "suspect_recall"}
LOWER_IS_BETTER = {"tokens_prompt", "tokens_completion", "llm_seconds", "seconds"}


def is_run(folder: Path) -> bool:
    """A folder written by ``agent3d evaluate`` (it has config.json and summary.json)."""
    return (folder / "config.json").is_file() and (folder / "summary.json").is_file()


def list_runs(root: str | Path) -> list[dict]:
    """One entry per run in ``root`` (or ``root`` itself when it is a run), sorted by path.

    Each entry: path, dataset, gatings, prompts with their content hashes, model, adapter (name@hash),
    backend, scorer, rounds, version, samples and the headline run with its P-AUROC.

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
        raise ValueError(f"{root}: no evaluation run here (a run folder has config.json and summary.json)")
    entries = []
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        entries.append({"path": str(folder), "dataset": config.get("dataset"), "gatings": config.get("gatings"),
                        "prompts": config.get("prompt_hashes", {}), "model": summary.get("model"),
                        "backend": summary.get("backend"), "scorer": summary.get("scorer"),
                        "adapter": summary.get("adapter"),
                        "rounds": config.get("detect", config).get("rounds", 1), "version": config.get("version"),
                        "samples": summary.get("n_samples"), "run": summary.get("run"),
                        "p_auroc": summary.get("p_auroc")})
    return entries


def load_rows(spec: str) -> dict[str, dict]:
    """The metric rows of a run: ``DIR`` (every row) or ``DIR#ROW`` (one row, e.g. ``runs/p#llm/geom``).

    Raises
    ------
    ValueError
        Not a run, or no such row.
    """
    folder, _, row = spec.partition("#")
    if not is_run(Path(folder)):
        raise ValueError(f"{folder}: not an evaluation run (no config.json and summary.json)")
    rows = json.loads((Path(folder) / "summary.json").read_text())["per_run"]
    if row:
        if row not in rows:
            raise ValueError(f"{folder}: no row '{row}' (rows: {', '.join(rows)})")
        return {row: rows[row]}
    return rows


def compare(rows_a: dict[str, dict], rows_b: dict[str, dict]) -> list[dict]:
    """Deltas B - A for every metric of the rows both have (or of the single rows given on each side).

    Returns
    -------
    list of dict
        ``{"row", "metric", "a", "b", "delta", "better"}`` with ``better`` in {"A", "B", "=", ""}
        ("" where a value is missing or the metric has no better direction, like fraction scored).
    """
    if len(rows_a) == 1 and len(rows_b) == 1:
        (name_a, a), (name_b, b) = next(iter(rows_a.items())), next(iter(rows_b.items()))
        pairs = [(name_a if name_a == name_b else f"{name_a} vs {name_b}", a, b)]
    else:
        pairs = [(name, rows_a[name], rows_b[name]) for name in rows_a if name in rows_b]
    result = []
    for name, a, b in pairs:
        for key, _ in COLUMNS:
            va, vb = a.get(key), b.get(key)
            delta = vb - va if va is not None and vb is not None else None
            better = ""
            if delta is not None and (key in HIGHER_IS_BETTER or key in LOWER_IS_BETTER):
                sign = delta if key in HIGHER_IS_BETTER else -delta
                better = "B" if sign > 1e-12 else "A" if sign < -1e-12 else "="
            result.append({"row": name, "metric": key, "a": va, "b": vb, "delta": delta, "better": better})
    return result
