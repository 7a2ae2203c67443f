"""The budget trade-off (``evaluate --budget 0.02 --budget 0.05 ...``): one evaluation per budget, each in its own
folder ``budget-B/`` of the run folder (a whole evaluation: resumable, with its report), then P-AUROC and AUPRO
against the fraction of points scored per run, with the seconds split into reading (the language model), scoring
(the classical scorer) and the rest (gating, geometry, I/O), written as ``tradeoff.json``, ``tradeoff.md`` and
``tradeoff.png`` in the run folder. ``all`` scores every point whatever the budget: it is the ceiling each
gated run is read against.
"""

from __future__ import annotations

from pathlib import Path

from agent3d.outputs import atomic_write, write_json, write_text

FIGURES = ("p_auroc", "aupro")


def budget_folder(out: Path, budget: float) -> Path:
    """The evaluation folder of one budget inside a sweep's run folder: ``out/budget-0.05``."""
    return Path(out) / f"budget-{budget:g}"


def tradeoff_rows(summaries: dict[float, dict]) -> dict[str, list[dict]]:
    """Per run (gating / prompt), one row per budget, in budget order.

    Parameters
    ----------
    summaries : dict of float to dict
        Each budget's evaluation summary (:func:`agent3d.api.evaluate`).

    Returns
    -------
    dict of str to list of dict
        ``budget``, ``fraction_scored``, ``p_auroc`` and ``aupro`` with their 95 % ``*_interval`` (None without
        bootstrap), and mean seconds per sample: ``llm_seconds``, ``scoring_seconds``, ``other_seconds`` (the rest of
        ``seconds``: gating, geometry, I/O) and ``seconds``.
    """
    rows: dict[str, list[dict]] = {}
    for budget in sorted(summaries):
        for name, run in summaries[budget]["per_run"].items():
            seconds = run.get("seconds") or 0.0
            llm, scoring = run.get("llm_seconds") or 0.0, run.get("scoring_seconds") or 0.0
            intervals = run.get("intervals") or {}
            rows.setdefault(name, []).append({
                "budget": budget, "fraction_scored": run.get("fraction_scored"),
                **{f: run.get(f) for f in FIGURES}, **{f"{f}_interval": intervals.get(f) for f in FIGURES},
                "llm_seconds": llm, "scoring_seconds": scoring, "other_seconds": max(0.0, seconds - llm - scoring),
                "seconds": seconds})
    return rows


def write_tradeoff(out: Path, summaries: dict[float, dict]) -> dict[str, list[dict]]:
    """Write ``tradeoff.json`` (:func:`tradeoff_rows`), ``tradeoff.md`` (the table) and ``tradeoff.png`` (P-AUROC and
    AUPRO against the fraction scored) into ``out``; returns the rows."""
    rows = tradeoff_rows(summaries)
    write_json(Path(out) / "tradeoff.json", {"budgets": sorted(summaries), "runs": rows})
    lines = ["# Budget trade-off", "", "Mean per sample; seconds split into reading (model), scoring and the rest "
             "(gating, geometry, I/O). Each budget's evaluation is in `budget-B/`.", "",
             "| run | budget | scored | P-AUROC | AUPRO | model s | scoring s | other s | s |", "|---|" + "---|" * 8]
    for name, points in rows.items():
        lines += [f"| {name} | {r['budget']:g} | {_number(r['fraction_scored'])} | {_number(r['p_auroc'])} | "
                  f"{_number(r['aupro'])} | {r['llm_seconds']:.2f} | {r['scoring_seconds']:.2f} | "
                  f"{r['other_seconds']:.2f} | {r['seconds']:.2f} |" for r in points]
    write_text(Path(out) / "tradeoff.md", "\n".join(lines + ["", "![trade-off](tradeoff.png)", ""]))
    plot_tradeoff(Path(out) / "tradeoff.png", rows)
    return rows


def plot_tradeoff(path: Path, rows: dict[str, list[dict]]) -> None:
    """P-AUROC and AUPRO (with their 95 % intervals) against the fraction of points scored, one line per run, a
    run that scores every point (``all``) as a dashed ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    for axis, figure_name, title in zip(axes, FIGURES, ("P-AUROC", "AUPRO")):
        for number, (name, points) in enumerate(rows.items()):
            kept = [r for r in points if r[figure_name] is not None and r["fraction_scored"] is not None]
            if not kept:
                continue
            x, y = [r["fraction_scored"] for r in kept], [r[figure_name] for r in kept]
            colour = f"C{number % 10}"
            if min(x) > 0.999:  # scores every point whatever the budget
                axis.axhline(sum(y) / len(y), color=colour, linestyle="--", linewidth=1, label=f"{name} (every point)")
                continue
            spans = [r[f"{figure_name}_interval"] for r in kept]
            low = [v - s[0] if s and None not in s else 0 for v, s in zip(y, spans)]
            high = [s[1] - v if s and None not in s else 0 for v, s in zip(y, spans)]
            axis.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, color=colour, label=name)
        axis.set(xscale="log", xlabel="fraction of points scored", ylabel=title, title=f"{title} against the budget")
        ticks = sorted({round(r["fraction_scored"], 3) for points in rows.values() for r in points
                        if r["fraction_scored"] is not None and r["fraction_scored"] < 0.999})
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)


def _number(value) -> str:
    return "—" if value is None else f"{value:.3f}"
