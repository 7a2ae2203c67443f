"""The ``agent3d`` command line (typer + rich).

Exit codes: 0 ok, 2 bad input (one line naming the file and the problem), 3 backend failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from agent3d.cli_catalog import prompts_app, runs_app
from agent3d.cli_common import (
    BackendName,
    Gating,
    ObjectScore,
    Sampling,
    ScorerName,
    fail,
)
from agent3d.cloud import Detection, PointCloud
from agent3d.io import (
    InputError,
    read_cloud,
    read_gt,
    read_references,
    write_json,
    write_ply,
)
from agent3d.llm import make_backend
from agent3d.llm.base import BackendError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Can a language model, reading a point cloud as text, point at the defect?")
app.add_typer(prompts_app, name="prompts")
app.add_typer(runs_app, name="runs")


@app.callback()
def main() -> None:
    """agent3d: LLM-gated 3D anomaly detection on point clouds."""


def make_scorer(references: list[Path], name: str, seed: int):
    """The named scorer fitted on the reference clouds (``auto``: fused with references, else self-reference).

    Raises
    ------
    InputError
        An unreadable reference.
    ValueError
        A reference-based scorer without references, or references that cannot be registered.
    """
    from agent3d.fusion import build_scorer

    clouds = read_references(references)
    return build_scorer(name, [c.points for c in clouds], [c.source for c in clouds], seed)


def load_input(file: Path, gt: Path | None) -> PointCloud:
    """Read the cloud and, when given, its ground truth (matched by nearest neighbour)."""
    cloud = read_cloud(file)
    if gt is not None:
        cloud.labels = read_gt(gt, cloud.points)
    return cloud


@app.command()
def detect(
    file: Path = typer.Argument(..., help="Point cloud: .ply .pcd .obj .xyz .txt .csv .pts .npy .npz"),
    reference: list[Path] = typer.Option([], help="Normal reference cloud or folder (repeatable)."),
    scorer: ScorerName = typer.Option(ScorerName.auto, help="Classical scorer; auto = fused with references, "
                                                            "self-reference without."),
    backend: BackendName = typer.Option(BackendName.llama_cpp, help="Language-model backend."),
    model: Optional[str] = typer.Option(None, help="GGUF file (llama-cpp; default: embedded SmolLM2-135M) "
                                                   "or model name (openai)."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL (openai backend)."),
    prompt: str = typer.Option("geom", help="Prompt template name."),
    prompts_dir: Optional[Path] = typer.Option(None, help="Folder of your own prompt templates."),
    gating: Gating = typer.Option(Gating.llm, help="Which points the scorer checks."),
    budget: float = typer.Option(0.1, help="Fraction of points the scorer may touch (all but 'all' gating)."),
    object_score: ObjectScore = typer.Option(ObjectScore.max, help="Object score from the point scores."),
    topk: int = typer.Option(10, help="k of topk-mean."),
    n_points: int = typer.Option(256, help="Points shown to the language model."),
    sampling: Sampling = typer.Option(Sampling.fps, help="How those points are chosen."),
    max_prompt_tokens: int = typer.Option(6000, help="Token budget per request; the view is tiled to fit."),
    retries: int = typer.Option(2, help="Retries of an unusable reply, with the error fed back."),
    rounds: int = typer.Option(1, help="Agent rounds: later rounds look closer around the suspects."),
    seed: int = typer.Option(0, help="Seed for sampling and decoding."),
    gt: Optional[Path] = typer.Option(None, help="Ground-truth file (x y z label), matched by nearest neighbour."),
    out: Optional[Path] = typer.Option(None, help="Write detection.json and scores.ply here."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model even if the reply is cached."),
    timeout: float = typer.Option(120.0, help="Seconds per request to an OpenAI-compatible server."),
    retry_seconds: float = typer.Option(60.0, help="Total seconds that retries of failed requests may add."),
    log_dir: Optional[Path] = typer.Option(None, help="Append every request and reply to DIR/llm_log.jsonl."),
) -> None:
    """Find suspects with the language model and score them with the classical detector."""
    from agent3d.pipeline import DetectConfig
    from agent3d.pipeline import detect as run_detect

    config = DetectConfig(n_points=n_points, sampling=sampling.value, prompt=prompt,
                          prompts_dir=str(prompts_dir) if prompts_dir else None,
                          max_prompt_tokens=max_prompt_tokens, gating=gating.value, budget=budget,
                          object_score=object_score.value, topk=topk, retries=retries, rounds=rounds, seed=seed)
    try:
        config.check()
        cloud = load_input(file, gt)
        fitted = make_scorer(reference, scorer.value, seed)
        llm = (make_backend(backend.value, model, base_url, not no_cache, timeout, retry_seconds, log_dir)
               if gating == Gating.llm else None)
        result = run_detect(cloud, config, llm, fitted)
    except InputError as error:
        fail(str(error), 2)
    except ValueError as error:
        fail(str(error), 2)
    except BackendError as error:
        fail(f"backend failure: {error}", 3)
    if out is not None:
        write_outputs(out, cloud, result)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        print_detection(result, cloud)


def write_outputs(out: Path, cloud: PointCloud, result: Detection) -> None:
    """Write ``detection.json`` and ``scores.ply`` (fields anomaly_score, suspect, scored, label)."""
    suspect = np.zeros(len(cloud), dtype=np.float32)
    suspect[[s.index for s in result.suspects]] = 1
    fields = {"anomaly_score": result.scores, "suspect": suspect, "scored": result.scored}
    if cloud.labels is not None:
        fields["label"] = cloud.labels
    write_ply(out / "scores.ply", cloud.points, fields)
    write_json(out / "detection.json", {"file": cloud.source, **result.to_json()})


def print_detection(result: Detection, cloud: PointCloud, top: int = 10) -> None:
    """Print the result as rich tables: a summary, then the top suspects."""
    console = Console()
    data = result.to_json()
    summary = Table(title=f"agent3d detect {cloud.source}", show_header=False)
    summary.add_row("object score", f"{result.object_score:.4f}")
    summary.add_row("scored", f"{result.n_scored:,} of {result.n_points:,} points ({result.gating} gating, "
                              f"budget {result.budget:g}, {result.scorer} scorer)")
    if result.reference:
        summary.add_row("reference", ", ".join(result.reference))
    if result.registration:
        summary.add_row("registration", f"fitness {result.registration['fitness']:.3f}, inlier RMSE "
                                        f"{result.registration['inlier_rmse']:.4g} (reference "
                                        f"{result.registration['reference']})")
    summary.add_row("tokens", f"{data['tokens']['prompt']:,} prompt, {data['tokens']['completion']:,} completion")
    summary.add_row("seconds", f"{result.seconds:.2f}")
    summary.add_row("backend", f"{result.backend or '-'}  model {result.model or '-'}  prompt {result.prompt or '-'}")
    if result.llm is not None:
        dropped = ", ".join(f"{k} {v}" for k, v in result.llm.dropped.items() if v) or "none"
        summary.add_row("llm", f"{result.llm.calls} calls, {result.llm.tiles} tiles, dropped: {dropped}")
        for failure in result.llm.failures:
            summary.add_row("[red]llm failure[/red]", failure)
    console.print(summary)
    if result.suspects:
        table = Table(title=f"top suspects ({min(top, len(result.suspects))} of {len(result.suspects)})")
        for column in ("id", "index", "xyz", "confidence", "reason"):
            table.add_column(column)
        for s in result.suspects[:top]:
            table.add_row(s.id, str(s.index), " ".join(f"{v:.3f}" for v in s.xyz), f"{s.confidence:.2f}", s.reason)
        console.print(table)
    elif result.gating == "llm":
        console.print("no suspects: nothing was scored above the floor")


@app.command()
def evaluate(
    dataset: Path = typer.Argument(..., help="Labeled folder, Real3D-AD or Anomaly-ShapeNet layout."),
    out: Path = typer.Option(..., help="Run folder: config.json, samples.jsonl, summary.json, report.md, roc.png."),
    gating: list[Gating] = typer.Option(list(Gating), help="Gating strategies to compare (repeatable)."),
    prompt: list[str] = typer.Option(["geom"], help="Prompt templates for llm gating (repeatable)."),
    reference: list[Path] = typer.Option([], help="Normal reference clouds for every class (repeatable); "
                                                  "default: the dataset's own, else self-reference."),
    scorer: ScorerName = typer.Option(ScorerName.auto, help="Classical scorer; auto = fused with references, "
                                                            "self-reference without."),
    budget: float = typer.Option(0.1, help="Fraction of points the scorer may touch."),
    backend: BackendName = typer.Option(BackendName.llama_cpp, help="Language-model backend."),
    model: Optional[str] = typer.Option(None, help="GGUF file or model name (default: embedded SmolLM2-135M)."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL."),
    n_points: int = typer.Option(256, help="Points shown to the language model."),
    rounds: int = typer.Option(1, help="Agent rounds: later rounds look closer around the suspects."),
    object_score: ObjectScore = typer.Option(ObjectScore.max, help="Object score from the point scores."),
    topk: int = typer.Option(10, help="k of topk-mean."),
    workers: int = typer.Option(1, help="Samples evaluated in parallel processes."),
    seed: int = typer.Option(0, help="Seed for sampling, gating and decoding."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model even if the reply is cached."),
) -> None:
    """Run every gating x prompt on every sample of a dataset; metrics per class and overall."""
    from agent3d import __version__
    from agent3d.evaluation.datasets import load_dataset
    from agent3d.evaluation.report import summarize, write_report
    from agent3d.evaluation.runner import (
        ConfigMismatch,
        EvalConfig,
        prepare_output,
        run_evaluation,
    )
    from agent3d.pipeline import DetectConfig
    from agent3d.prompts import load_prompt

    gatings = list(dict.fromkeys(g.value for g in gating))
    prompts = list(dict.fromkeys(prompt)) if "llm" in gatings else []
    try:
        DetectConfig(budget=budget, n_points=n_points, topk=topk, rounds=rounds).check()
        data = load_dataset(dataset)
        hashes = {name: load_prompt(name).digest for name in prompts}
        config = EvalConfig(dataset=str(dataset), layout=data.layout, gatings=gatings, prompts=prompts,
                            prompt_hashes=hashes, budget=budget, references=[str(r) for r in reference],
                            backend=backend.value, model=model, base_url=base_url, n_points=n_points,
                            object_score=object_score.value, topk=topk, seed=seed, use_cache=not no_cache,
                            scorer=scorer.value, rounds=rounds, version=__version__)
        total, done = len(data.samples) * len(config.runs()), len(prepare_output(out, config))
        with evaluation_progress(total, done, out) as on_record:
            run_evaluation(data, config, out, workers, on_record)
        with_references = bool(reference or any(data.references.values()))
        scorer_name = scorer.value if scorer != ScorerName.auto else ("fused" if with_references else "self-reference")
        summary = summarize(out, config.runs(), {
            "dataset": str(dataset), "layout": data.layout, "backend": backend.value if "llm" in gatings else None,
            "model": model or ("SmolLM2-135M-Instruct.Q4_1.gguf" if "llm" in gatings and backend.value == "llama-cpp"
                               else None), "budget": budget, "scorer": scorer_name, "version": __version__})
        samples = {(s.class_name, s.name): s for s in data.samples}
        write_report(out, summary, lambda name, sample: samples[(name, sample)].load().points)
    except (InputError, ConfigMismatch, ValueError) as error:
        fail(str(error), 2)
    except BackendError as error:
        fail(f"backend failure: {error}", 3)
    print_summary(summary, out)


def evaluation_progress(total: int, done: int, out: Path):
    """A rich progress bar over (sample, run) records with the running pooled P-AUROC per run
    (over the records of this session)."""
    from contextlib import contextmanager

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from sklearn.metrics import roc_auc_score

    @contextmanager
    def bar():
        seen: dict[str, tuple[list, list]] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[auroc]}"), console=Console(stderr=True)) as progress:
            task = progress.add_task("evaluating", total=total, completed=done, auroc="")

            def on_record(record: dict) -> None:
                name = f"{record['gating']}/{record['prompt']}" if record["prompt"] else record["gating"]
                arrays = np.load(out / record["scores_file"])
                labels, scores = seen.setdefault(name, ([], []))
                labels.append(arrays["labels"])
                scores.append(arrays["scores"])
                running = []
                for run, (ls, ss) in seen.items():
                    pooled = np.concatenate(ls)
                    if pooled.min() != pooled.max():
                        running.append(f"{run} {roc_auc_score(pooled, np.concatenate(ss)):.3f}")
                progress.update(task, advance=1, auroc="P-AUROC " + ", ".join(running))

            yield on_record

    return bar()


def print_summary(summary: dict, out: Path) -> None:
    """The report table in the terminal (short headers; at least 120 columns wide so numbers stay whole)."""
    from agent3d.evaluation.report import table_rows

    console = Console(width=max(120, Console().width))
    table = Table(title=f"agent3d evaluate {summary['dataset']}  ({summary['n_samples']} samples per run, "
                        f"model {summary.get('model') or 'none'})")
    for title in ("run", "P-AUROC", "O-AUROC", "AUPRO", "AP", "recall", "scored", "tok in", "tok out", "LLM s", "s"):
        table.add_column(title, justify="left" if title == "run" else "right", no_wrap=True)
    for row in table_rows(summary):
        table.add_row(*row)
    console.print(table)
    console.print(f"written: {out / 'summary.json'}, {out / 'report.md'}, {out / 'roc.png'}", soft_wrap=True)


@app.command()
def synth(
    source: Path = typer.Argument(..., help="Clean mesh (.obj .ply .stl .off) or point cloud."),
    out: Path = typer.Option(..., help="Dataset folder to write (labeled-folder layout)."),
    n: int = typer.Option(20, help="Test samples (a quarter of them normal)."),
    defects: str = typer.Option("bulge,dent,crack,hole,scratch", help="Comma-separated defect types "
                                "(bulge, dent, crack, scratch, hole, contamination)."),
    n_points: int = typer.Option(20000, help="Points per cloud."),
    references: int = typer.Option(3, help="Clean reference clouds in references/."),
    noise: float = typer.Option(0.1, help="Sensor noise in median point spacings."),
    seed: int = typer.Option(0, help="Seed."),
) -> None:
    """Make a labeled dataset by planting synthetic defects on a clean scan."""
    from agent3d.synth import make_dataset

    try:
        manifest = make_dataset(source, out, n=n, defects=tuple(d.strip() for d in defects.split(",") if d.strip()),
                                n_points=n_points, n_references=references, noise=noise, seed=seed)
    except InputError as error:
        fail(str(error), 2)
    except ValueError as error:
        fail(str(error), 2)
    kinds = [s["type"] for s in manifest["samples"]]
    Console().print(f"wrote {len(kinds)} samples ({', '.join(f'{k} {kinds.count(k)}' for k in dict.fromkeys(kinds))}) "
                    f"and {len(manifest['references'])} references to {out}")


@app.command()
def render(
    source: Path = typer.Argument(..., help="A detect --out folder, its scores.ply, or any point cloud."),
    out: Path = typer.Option(..., help="PNG file to write."),
    views: int = typer.Option(3, help="Views side by side (2-4)."),
    width: int = typer.Option(1200, help="Image width in pixels."),
    height: int = typer.Option(420, help="Image height in pixels."),
) -> None:
    """Render a heatmap of anomaly scores (GT outlined, suspects marked)."""
    from agent3d.io import read_ply_fields
    from agent3d.viz import render as draw

    path = source / "scores.ply" if source.is_dir() else source
    try:
        if not 2 <= views <= 4 or width < 100 or height < 100:
            raise ValueError("--views must be 2-4 and the image at least 100x100 pixels")
        if path.suffix.lower() == ".ply":
            points, fields = read_ply_fields(path)
        else:
            cloud = read_cloud(path)
            points, fields = cloud.points, ({"label": cloud.labels} if cloud.labels is not None else {})
        suspects = np.flatnonzero(fields["suspect"]) if "suspect" in fields else None
        labels = fields["label"].astype(np.uint8) if "label" in fields else None
        draw(out, points, fields.get("anomaly_score"), labels, suspects, n_views=views, size=(width, height),
             title=str(source))
    except (InputError, ValueError) as error:
        fail(str(error), 2)
    Console().print(f"wrote {out}")
