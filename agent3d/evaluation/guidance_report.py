"""The guidance benchmark in an evaluation's report: its table (flip AUROC with interval and p, matched P-AUROC and
suspect recall per row and split), each reader's accuracy per field and language, and heatmaps of one cloud
text-blind and under a raised and a sunk phrasing (the kinds given), written by :mod:`agent3d.evaluation.report`
into ``report.md`` and ``report.html``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent3d.guidance import guided_scores, kind_weights
from agent3d.viz import render

TITLES = ["row", "phrasings", "flip AUROC", "95 % interval", "p vs text-blind", "matched P-AUROC",
          "matched suspect recall"]
READER_TITLES = ["reader", "language", "n", "kind", "normal", "size", "abstained"]


def _number(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table_rows(runs: dict) -> list[list[str]]:
    """One row per benchmark row and split (``guidance.json``'s ``runs``), as strings."""
    rows = []
    for row, splits in runs.items():
        for split, figures in splits.items():
            if figures:
                interval = figures.get("flip_interval")
                rows.append([row, split, _number(figures["flip_auroc"]),
                             "—" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]",
                             _number(figures.get("flip_p")), _number(figures["matched_p_auroc"]),
                             _number(figures["matched_suspect_recall"])])
    return rows


def reader_rows(readers: dict) -> list[list[str]]:
    """One row per reader and language (``guidance.json``'s ``readers``), as strings."""
    return [[name, language, str(f["n"]), _number(f["kind"]), _number(f["normal"]), _number(f["size"]),
             _number(f["abstained"])] for name, languages in readers.items() for language, f in languages.items()]


def markdown(guidance: dict, pictures: list[Path]) -> list[str]:
    """The report's "Guidance" section as markdown lines."""
    lines = ["## Guidance benchmark (text-blind runs, weighted and steered by what each reader read)", "",
             "| " + " | ".join(TITLES) + " |", "|" + "---|" * len(TITLES),
             *["| " + " | ".join(row) + " |" for row in table_rows(guidance["runs"])], "",
             "Flip AUROC: over anomalous points of known kind, the score under a raised phrasing minus under its sunk "
             "counterpart (0.5: the words change nothing); interval over clouds, p: exact sign-flip test against the "
             "text-blind row.", ""]
    if guidance.get("readers"):
        lines += ["| " + " | ".join(READER_TITLES) + " |", "|" + "---|" * len(READER_TITLES),
                  *["| " + " | ".join(row) + " |" for row in reader_rows(guidance["readers"])], ""]
    lines += [f"![{path.stem}]({path.relative_to(path.parent.parent)})" for path in pictures]
    return lines + [""] if pictures else lines


def heatmaps(out: Path, record: dict, points: np.ndarray, displacement: np.ndarray) -> list[Path]:
    """One cloud's stored scores text-blind, then weighted as for a raised and a sunk phrasing (the kind given),
    into ``out/renders/guidance-*.png``.

    Parameters
    ----------
    out : Path
        The run folder.
    record : dict
        One stored sample record (``scores_file``, ``class``, ``sample``, ``gating``).
    points : ndarray of shape (n_points, 3), float64
    displacement : ndarray of shape (n_points,), float64
        Signed displacement (:func:`agent3d.guidance.cloud_displacement`).
    """
    with np.load(out / record["scores_file"], allow_pickle=False) as data:
        scores, labels = data["scores"].astype(np.float64), data["labels"]
        scored = data["scored"].astype(bool) if "scored" in data.files else np.ones(len(scores), dtype=bool)
    paths = []
    for name, kind in (("text-blind", None), ("raised", "raised"), ("sunk", "sunk")):
        weighted = scores if kind is None else guided_scores(scores, scored, kind_weights(displacement, kind))
        title = f"{record['gating']}: {record['sample']}, " + ("text-blind" if kind is None else f"{kind} asked")
        paths.append(render(out / "renders" / f"guidance-{name}.png", points, weighted, labels, n_views=2,
                            size=(900, 380), title=title))
    return paths
