"""The ``agent3d`` command line (typer + rich).

Exit codes: 0 ok, 2 bad input (one line naming the file and the problem), 3 backend failure.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from agent3d.cloud import Detection, PointCloud
from agent3d.io import InputError, read_cloud, read_gt, read_references, write_json, write_ply
from agent3d.llm.base import Backend, BackendError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Can a language model, reading a point cloud as text, point at the defect?")


class BackendName(str, Enum):
    llama_cpp = "llama-cpp"
    openai = "openai"


class Gating(str, Enum):
    llm = "llm"
    saliency = "saliency"
    random = "random"
    all = "all"


class ObjectScore(str, Enum):
    max = "max"
    topk_mean = "topk-mean"


class Sampling(str, Enum):
    fps = "fps"
    voxel = "voxel"


@app.callback()
def main() -> None:
    """agent3d: LLM-gated 3D anomaly detection on point clouds."""


def fail(message: str, code: int) -> None:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(f"agent3d: {message}", err=True)
    raise typer.Exit(code)


def make_backend(name: str, model: str | None, base_url: str | None, use_cache: bool) -> Backend:
    """Build the chosen backend, wrapped in the response cache unless ``use_cache`` is False.

    Raises
    ------
    InputError
        A ``--model`` file that cannot be loaded.
    BackendError
        Missing extra, missing API key, ``openai`` without ``--model``.
    """
    from agent3d.llm.cache import CachedBackend

    if name == "openai":
        from agent3d.llm.openai import OpenAIBackend

        if not model:
            raise BackendError("--backend openai needs --model")
        backend = OpenAIBackend(model, base_url=base_url)
    else:
        from agent3d.llm.llama_cpp import LlamaCppBackend

        backend = LlamaCppBackend(model)
    return CachedBackend(backend) if use_cache else backend


def make_scorer(references: list[Path], seed: int):
    """The memory-bank scorer fitted on the reference clouds, or the self-reference scorer without any.

    Raises
    ------
    InputError
        An unreadable reference.
    """
    from agent3d.scoring import MemoryBankScorer, SelfReferenceScorer

    if not references:
        return SelfReferenceScorer(seed=seed)
    clouds = read_references(references)
    return MemoryBankScorer(seed=seed).fit([c.points for c in clouds], [c.source for c in clouds])


def load_input(file: Path, gt: Path | None) -> PointCloud:
    """Read the cloud and, when given, its ground truth (matched by nearest neighbour)."""
    cloud = read_cloud(file)
    if gt is not None:
        cloud.labels = read_gt(gt, cloud.points)
    return cloud


@app.command()
def detect(
    file: Path = typer.Argument(..., help="Point cloud: .ply .pcd .obj .xyz .txt .csv .pts .npy .npz"),
    reference: list[Path] = typer.Option([], help="Normal reference cloud or folder (repeatable): "
                                                  "memory-bank scorer; without it, self-reference."),
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
    seed: int = typer.Option(0, help="Seed for sampling and decoding."),
    gt: Optional[Path] = typer.Option(None, help="Ground-truth file (x y z label), matched by nearest neighbour."),
    out: Optional[Path] = typer.Option(None, help="Write detection.json and scores.ply here."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model even if the reply is cached."),
) -> None:
    """Find suspects with the language model and score them with the classical detector."""
    from agent3d.pipeline import DetectConfig
    from agent3d.pipeline import detect as run_detect

    config = DetectConfig(n_points=n_points, sampling=sampling.value, prompt=prompt,
                          prompts_dir=str(prompts_dir) if prompts_dir else None,
                          max_prompt_tokens=max_prompt_tokens, gating=gating.value, budget=budget,
                          object_score=object_score.value, topk=topk, retries=retries, seed=seed)
    try:
        config.check()
        cloud = load_input(file, gt)
        scorer = make_scorer(reference, seed)
        llm = make_backend(backend.value, model, base_url, not no_cache) if gating == Gating.llm else None
        result = run_detect(cloud, config, llm, scorer)
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
