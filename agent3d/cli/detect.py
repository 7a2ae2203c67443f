"""``agent3d detect``: one cloud through the whole flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from agent3d.cli.common import config_from, config_options, exit_codes, read_guidance, silence_progress_bars
from agent3d.cloud import Detection, PointCloud
from agent3d.config import BackendConfig, DetectConfig
from agent3d.file_checks import check_folder
from agent3d.io import read_cloud, read_gt
from agent3d.outputs import check_output, write_json, write_ply
from agent3d.spec import DefectSpec


def load_input(file: Path, gt: Path | None) -> PointCloud:
    """Read the cloud and, when given, its ground truth (matched by nearest neighbour)."""
    cloud = read_cloud(file)
    if gt is not None:
        cloud.labels = read_gt(gt, cloud.points)
    return cloud


@config_options(DetectConfig, BackendConfig)
def detect(
    file: Path = typer.Argument(..., help="Point cloud: .ply .pcd .obj .xyz .txt .csv .pts .npy .npz"),
    reference: list[Path] = typer.Option([], help="Normal reference cloud or folder (repeatable)."),
    gt: Optional[Path] = typer.Option(None, help="Ground-truth file (x y z label), matched by nearest neighbour."),
    out: Optional[Path] = typer.Option(None, help="Write detection.json and scores.ply here."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    log_dir: Optional[Path] = typer.Option(None, help="Append every request and reply to DIR/llm_log.jsonl."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live status line while the model works (it shows "
                                                            "only on a terminal), no library progress bars."),
    **options,
) -> None:
    """Find suspects with the language model and score them with the classical detector."""
    from agent3d.api import check_detect, fitted_scorer
    from agent3d.api import detect as run_detect
    from agent3d.llm.status import live_status
    from agent3d.verdict import verdict

    if quiet:
        silence_progress_bars()
    with exit_codes():
        config = config_from(DetectConfig, options, guidance=read_guidance(options["guidance"]))
        backend_config = config_from(BackendConfig, options)
        if out is not None:
            check_output(out, folder=True)
            for name in ("detection.json", "scores.ply"):  # both are written, or neither
                check_output(out / name, folder=False)
        if log_dir is not None:  # checked even when no model is asked (a wrong place is a mistake either way)
            check_folder(log_dir, "--log-dir")
        adapter = check_detect(config, backend_config)  # a bad prompt, adapter or learned model: refused first
        cloud = load_input(file, gt)
        fitted = fitted_scorer(reference, config.scorer, config.seed)
        with live_status(not quiet):
            result = run_detect(cloud, config, backend=backend_config, log_dir=log_dir, scorer=fitted)
        table = verdict(cloud, result, config, fitted) if cloud.labels is not None and cloud.labels.any() else None
    if out is not None:
        written = write_outputs(out, cloud, result)
        if not as_json:
            typer.echo(f"written: {', '.join(map(str, written))}", err=True)
    if as_json:
        typer.echo(json.dumps({**result.to_json(), **({"verdict": table} if table else {})}))
    else:
        zero_shot = result.backend == "llama-cpp" and adapter is None  # the embedded model, asked to answer
        print_detection(result, cloud, zero_shot=zero_shot)
        if result.guidance:
            spec = DefectSpec.model_validate(result.guidance["spec"])
            follow = ("nothing steered: the run is text-blind" if spec.abstained and not spec.normal else
                      "every score weighted by its point's fit to it; the verdict judges the regions of the kind read")
            typer.echo(f"guidance: {spec.line()}; {follow} (docs: Guidance)", err=True)
        elif config.guidance:
            typer.echo("guidance: shown to the model in the prompt only (--guidance-reader none)", err=True)
        if table:
            print_verdict(table)


def write_outputs(out: Path, cloud: PointCloud, result: Detection) -> list[Path]:
    """Write ``detection.json`` and ``scores.ply`` (fields anomaly_score, suspect, scored, label); return
    their paths."""
    suspect = np.zeros(len(cloud), dtype=np.float32)
    suspect[[s.index for s in result.suspects]] = 1
    fields = {"anomaly_score": result.scores, "suspect": suspect, "scored": result.scored}
    if cloud.labels is not None:
        fields["label"] = cloud.labels
    write_ply(out / "scores.ply", cloud.points, fields)
    write_json(out / "detection.json", {"file": cloud.source, **result.to_json()})
    return [out / "detection.json", out / "scores.ply"]


def print_verdict(table: dict) -> None:
    """The verdict panel: P-AUROC and GT regions hit of this run and of the baselines on the same cloud."""
    from agent3d.verdict import verdict_line

    panel = Table(title="verdict: this cloud has ground truth (same scorer and budget for every row)")
    for column in ("gating", "P-AUROC", "GT regions with a suspect or seed"):
        panel.add_column(column, justify="left" if column == "gating" else "right")
    for gating, figures in table.items():
        hit = "— (scores every point)" if figures["regions_hit"] is None else f"{figures['regions_hit']} of {figures['regions']}"
        p_auroc = "—" if figures["p_auroc"] is None else f"{figures['p_auroc']:.3f}"
        panel.add_row(f"[bold]{gating}[/bold] (this run)" if gating == next(iter(table)) else gating, p_auroc, hit)
    console = Console()
    console.print(panel)
    console.print(verdict_line(table))


def print_detection(result: Detection, cloud: PointCloud, top: int = 10, zero_shot: bool = False) -> None:
    """Print the result as rich tables: a summary, then the top suspects (``zero_shot``: the llama.cpp model was
    asked to answer, no head read it; the summary then says whether a head ships)."""
    from agent3d.gating import strategy

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
        cached = f" ({result.llm.cached} from the cache)" if result.llm.cached else ""
        summary.add_row("llm", f"{result.llm.calls} calls{cached}, {result.llm.tiles} tiles, dropped: {dropped}")
        for failure in result.llm.failures:
            summary.add_row("[red]llm failure[/red]", failure)
    if zero_shot:
        from agent3d.llm.head import head_ships

        if not head_ships():
            summary.add_row("reading", "zero-shot: no head adapter ships with this version (none beat the saliency "
                                       "rule on held-out surfaces; docs: results, 'Reading the model')")
    console.print(summary)
    if result.suspects:
        table = Table(title=f"top suspects ({min(top, len(result.suspects))} of {len(result.suspects)})")
        for column in ("id", "index", "xyz", "confidence", "reason"):
            table.add_column(column)
        for s in result.suspects[:top]:
            table.add_row(s.id, str(s.index), " ".join(f"{v:.3f}" for v in s.xyz), f"{s.confidence:.2f}", s.reason)
        console.print(table)
    elif strategy(result.gating).needs_backend:
        console.print("no suspects: nothing was scored above the floor")
