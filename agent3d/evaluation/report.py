"""Writing an evaluation's report: ``summary.json``, ``report.md``, ``roc.png``, renders and ``report.html``
(a jinja2 template beside this module). The figures come from :mod:`agent3d.evaluation.summary`."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import jinja2
import markupsafe
import numpy as np

from agent3d.evaluation import guidance_report
from agent3d.evaluation.metrics import auroc
from agent3d.evaluation.summary import (COLUMNS, INTERVAL_COLUMNS, comparison_lines, interval_rows, read_records,
                                        run_name, table_rows)
from agent3d.outputs import atomic_write, write_json, write_text
from agent3d.viz import render


def write_report(out: Path, summary: dict, load_points: Callable[[str, str], np.ndarray] | None = None,
                 guidance: dict | None = None) -> None:
    """Write ``summary.json``, ``report.md`` (the table), ``roc.png`` (pooled ROC per run) and, when
    ``load_points(class, sample)`` can give the clouds back, renders of the best, median and worst sample of
    each class and a self-contained ``report.html``; with ``guidance`` (the guidance benchmark's figures,
    :func:`agent3d.evaluation.guidance.write_guidance`), its tables and heatmaps in both reports."""
    out = Path(out)
    write_json(out / "summary.json", summary)
    header = "| run | " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [f"# agent3d evaluation of {summary.get('dataset', out)}", "",
             f"Model: {summary.get('model') or 'none (no llm gating)'} ({summary.get('backend') or '-'}); budget {summary.get('budget')}; "
             f"{summary['n_samples']} samples per run; scorer: {summary.get('scorer', '-')}.", "",
             header, "|" + "---|" * (len(COLUMNS) + 1)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary)]
    lines += ["", "P-AUROC, O-AUROC, AUPRO and AP: per class, then mean over classes. Suspect recall: GT regions "
              "with a suspect (or, for saliency/random, a seed) within the region radius. Tokens and seconds: "
              "mean per sample.", "", "![ROC](roc.png)", ""]
    if interval_rows(summary):
        lines += ["## 95 % bootstrap intervals (samples resampled within classes)", "",
                  "| run | " + " | ".join(t for _, t in INTERVAL_COLUMNS) + " |", "|" + "---|" * (len(INTERVAL_COLUMNS) + 1),
                  *["| " + " | ".join(row) + " |" for row in interval_rows(summary)], "",
                  "## Paired comparisons (B - A on the same samples: paired bootstrap interval, two-sided paired permutation p, n samples)", "",
                  *[f"- {line}" for line in comparison_lines(summary)], ""]
    if summary.get("n_failed"):
        lines += [f"## {summary['n_failed']} runs failed (not in the metrics)", "",
                  *[f"- `{f['key']}`: {f['reason']}" for f in summary["failures"]], ""]
    pictures = [Path(p) for p in (guidance or {}).get("pictures", [])]
    if guidance:
        lines += guidance_report.markdown(guidance, pictures)
    write_text(out / "report.md", "\n".join(lines))
    plot_roc(out, summary)
    if load_points is not None:
        examples = render_examples(out, summary, load_points)
        write_html(out, summary, examples, guidance, pictures)


def plot_roc(out: Path, summary: dict) -> None:
    """Pooled point-level ROC curve of every run, in one figure ``roc.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    records = read_records(out)
    figure, axis = plt.subplots(figsize=(5.5, 5), dpi=120)
    for name in summary["per_run"]:
        arrays = [np.load(out / r["scores_file"]) for r in records if run_name(r["gating"], r["prompt"]) == name]
        labels = np.concatenate([a["labels"] for a in arrays])
        scores = np.concatenate([a["scores"] for a in arrays])
        if labels.min() == labels.max():
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (pooled AUROC {auroc(labels, scores):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="false positive rate (points)", ylabel="true positive rate (points)",
             title="Point-level ROC per gating", xlim=(0, 1), ylim=(0, 1))
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    atomic_write(out / "roc.png", lambda tmp: figure.savefig(tmp, format="png"))
    plt.close(figure)


def render_examples(out: Path, summary: dict, load_points: Callable[[str, str], np.ndarray]) -> list[dict]:
    """Render the best, median and worst sample of each class (by per-sample P-AUROC) for every run of the
    evaluation into ``out/renders/``; return one dict per picture (run, class, sample, tag, auroc, path, and the
    arrays of the headline run's median one for an interactive view)."""
    records = read_records(out)
    examples = []
    for run in summary["per_run"]:
        by_class = defaultdict(list)
        for record in (r for r in records if run_name(r["gating"], r["prompt"]) == run):
            arrays = np.load(out / record["scores_file"])
            value = auroc(arrays["labels"], arrays["scores"])
            if value is not None:
                by_class[record["class"]].append((value, record))
        for name, scored in sorted(by_class.items()):
            scored.sort(key=lambda item: item[0])
            picks = {"worst": scored[0], "median": scored[len(scored) // 2], "best": scored[-1]}
            for tag, (value, record) in picks.items():
                examples.append(_render_one(out, render, load_points, run, name, tag, value, record,
                                            interactive=run == summary["run"] and tag == "median"))
    return examples


def _render_one(out: Path, render, load_points, run: str, name: str, tag: str, value: float, record: dict,
                interactive: bool) -> dict:
    arrays = np.load(out / record["scores_file"])
    points = load_points(record["class"], record["sample"])
    marks = np.array([s["index"] for s in record["suspects"]] or record["seeds"], dtype=np.int64)
    path = render(out / "renders" / f"{run.replace('/', '-')}_{name}_{tag}_{record['sample']}.png", points,
                  arrays["scores"], arrays["labels"], marks,
                  title=f"{run}: {name} / {record['sample']}, {tag} of the class, P-AUROC {value:.3f}")
    return {"run": run, "class": name, "sample": record["sample"], "tag": tag, "auroc": value, "path": path,
            "points": points if interactive else None, "scores": arrays["scores"] if interactive else None}


def write_html(out: Path, summary: dict, examples: list[dict], guidance: dict | None = None,
               pictures: list[Path] = ()) -> Path:
    """``out/report.html`` from the ``report.html.j2`` template: the table, the ROC curves and the renders,
    images inlined (readable offline); with plotly installed (the ``viz`` extra), an interactive 3D view of
    each class's median sample; with ``guidance``, the guidance benchmark's tables and heatmaps."""
    def image(path: Path) -> str:
        return f"data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}"

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True)
    page = environment.get_template("report.html.j2").render(
        summary=summary, dataset=str(summary.get("dataset", out)), titles=["run", *(t for _, t in COLUMNS)],
        rows=table_rows(summary), roc=image(out / "roc.png"), interval_titles=["run", *(t for _, t in INTERVAL_COLUMNS)],
        interval_rows=interval_rows(summary), comparisons=comparison_lines(summary),
        examples=[{**e, "image": image(e["path"]), "name": Path(e["path"]).name,
                   "interactive": markupsafe.Markup(_interactive(e["points"], e["scores"]))
                   if e["points"] is not None else ""} for e in examples],
        guidance_titles=guidance_report.TITLES, guidance_rows=guidance_report.table_rows(guidance["runs"])
        if guidance else [], reader_titles=guidance_report.READER_TITLES,
        reader_rows=guidance_report.reader_rows(guidance.get("readers", {})) if guidance else [],
        guidance_pictures=[image(p) for p in pictures])
    path = out / "report.html"
    write_text(path, page)
    return path


def _interactive(points: np.ndarray, scores: np.ndarray, max_points: int = 20000) -> str:
    """A plotly 3D scatter as inline HTML, or nothing when plotly is not installed."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return ""
    keep = np.sort(np.random.default_rng(0).choice(len(points), min(max_points, len(points)), replace=False))
    p = points[keep]
    figure = go.Figure(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers",
                                    marker={"size": 1.5, "color": scores[keep], "colorscale": "Inferno",
                                            "colorbar": {"title": "score"}}))
    figure.update_layout(height=500, margin={"l": 0, "r": 0, "t": 0, "b": 0}, scene={"aspectmode": "data"})
    return figure.to_html(full_html=False, include_plotlyjs="inline")
