"""Summaries of an evaluation folder: ``summary.json``, ``report.md`` and ``roc.png``.

Every metric is computed per class and then averaged over classes (DESIGN.md). The top-level
fields of ``summary.json`` are those of the first run (first ``--gating`` with the first
``--prompt``); ``per_gating``, ``per_prompt`` and ``per_run`` hold the others.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent3d.evaluation.metrics import aupro, auroc, average_precision
from agent3d.io import write_json

COLUMNS = [("p_auroc", "P-AUROC"), ("o_auroc", "O-AUROC"), ("aupro", "AUPRO"), ("ap", "AP"),
           ("suspect_recall", "suspect recall"), ("fraction_scored", "fraction scored"),
           ("tokens_prompt", "prompt tokens"), ("tokens_completion", "completion tokens"),
           ("llm_seconds", "LLM s"), ("seconds", "seconds")]


def run_name(gating: str, prompt: str | None) -> str:
    """``"llm/geom"`` for LLM gating, the gating name otherwise."""
    return f"{gating}/{prompt}" if prompt else gating


def read_records(out: Path) -> list[dict]:
    """The records of ``out/samples.jsonl`` (empty when there is none)."""
    path = Path(out) / "samples.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
        "llm_failures": sum(r["llm_failures"] for r in records),
        "n_samples": len(records),
    }


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
    overall["llm_failures"] = sum(m["llm_failures"] for m in per_class.values())
    overall["n_samples"] = len(records)
    return {**overall, "per_class": per_class}


def summarize(out: Path, runs: list[tuple[str, str | None]], meta: dict) -> dict:
    """The ``summary.json`` object of an evaluation folder.

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
    records = read_records(out)
    if not records:
        raise ValueError(f"{out}: no finished sample to summarize")
    grouped = defaultdict(list)
    for record in records:
        grouped[run_name(record["gating"], record["prompt"])].append(record)
    per_run = {run_name(*r): run_metrics(out, grouped[run_name(*r)]) for r in runs if grouped[run_name(*r)]}
    first = next(iter(per_run))
    per_gating, per_prompt = {}, {}
    for (gating, prompt) in runs:
        name = run_name(gating, prompt)
        if name in per_run:
            per_gating.setdefault(gating, per_run[name])
            if prompt:
                per_prompt[prompt] = per_run[name]
    return {**per_run[first], "run": first, "per_gating": per_gating, "per_prompt": per_prompt,
            "per_run": per_run, **meta}


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


def write_report(out: Path, summary: dict, load_points: Callable[[str, str], np.ndarray] | None = None) -> None:
    """Write ``summary.json``, ``report.md`` (the table), ``roc.png`` (pooled ROC per run) and, when
    ``load_points(class, sample)`` can give the clouds back, renders of the best, median and worst sample of
    each class and a self-contained ``report.html``."""
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
    (out / "report.md").write_text("\n".join(lines))
    plot_roc(out, summary)
    if load_points is not None:
        examples = render_examples(out, summary, load_points)
        write_html(out, summary, examples)


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
    figure.savefig(out / "roc.png")
    plt.close(figure)


def render_examples(out: Path, summary: dict, load_points: Callable[[str, str], np.ndarray]) -> list[dict]:
    """Render the best, median and worst sample of each class (by per-sample P-AUROC of the headline run)
    into ``out/renders/``; return one dict per picture (class, sample, tag, auroc, path, and the arrays of
    the median one for an interactive view)."""
    from agent3d.viz import render

    records = [r for r in read_records(out) if run_name(r["gating"], r["prompt"]) == summary["run"]]
    by_class = defaultdict(list)
    for record in records:
        arrays = np.load(out / record["scores_file"])
        value = auroc(arrays["labels"], arrays["scores"])
        if value is not None:
            by_class[record["class"]].append((value, record))
    examples = []
    for name, scored in sorted(by_class.items()):
        scored.sort(key=lambda item: item[0])
        picks = {"worst": scored[0], "median": scored[len(scored) // 2], "best": scored[-1]}
        for tag, (value, record) in picks.items():
            arrays = np.load(out / record["scores_file"])
            points = load_points(record["class"], record["sample"])
            marks = np.array([s["index"] for s in record["suspects"]] or record["seeds"], dtype=np.int64)
            path = render(out / "renders" / f"{name}_{tag}_{record['sample']}.png", points, arrays["scores"],
                          arrays["labels"], marks, title=f"{name} / {record['sample']}: {tag} of the class, "
                                                          f"P-AUROC {value:.3f} ({summary['run']})")
            examples.append({"class": name, "sample": record["sample"], "tag": tag, "auroc": value, "path": path,
                             "points": points if tag == "median" else None,
                             "scores": arrays["scores"] if tag == "median" else None})
    return examples


def write_html(out: Path, summary: dict, examples: list[dict]) -> Path:
    """``out/report.html``: the table, the ROC curves and the renders, images inlined (readable offline);
    with plotly installed (the ``viz`` extra), an interactive 3D view of each class's median sample."""
    def image(path: Path) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}" alt="{path.name}">'

    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in [("run", "run"), *COLUMNS])
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in table_rows(summary))
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>agent3d evaluation</title><style>"
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
             f"<h1>agent3d evaluation of {html.escape(str(summary.get('dataset', out)))}</h1>",
             f"<p>Model: {html.escape(str(summary.get('model') or 'none (no llm gating)'))}; budget "
             f"{summary.get('budget')}; {summary['n_samples']} samples per run; scorer {summary.get('scorer', '-')}.</p>",
             f"<table><tr>{head}</tr>{rows}</table>", "<h2>Point-level ROC</h2>", image(out / "roc.png"),
             f"<h2>Heatmaps ({html.escape(summary['run'])}): best, median and worst sample per class</h2>",
             "<p>Colour: anomaly score; cyan rings: ground-truth anomalous points; green crosses: suspects (or seeds).</p>"]
    for example in examples:
        parts.append(f"<h3>{html.escape(example['class'])} / {html.escape(example['sample'])} — {example['tag']} "
                     f"(P-AUROC {example['auroc']:.3f})</h3>{image(example['path'])}")
        if example["points"] is not None:
            parts.append(_interactive(example["points"], example["scores"]))
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
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
