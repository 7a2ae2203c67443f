"""``agent3d evaluate``: every gating x prompt on every sample of a dataset, metrics per class and overall."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from agent3d.cli.common import config_from, config_options, exit_codes, read_guidance
from agent3d.config import GATINGS, BackendConfig, DetectConfig


@config_options(DetectConfig, BackendConfig, repeatable=("gating", "prompt", "budget"),
                defaults={"gating": list(GATINGS)})
def evaluate(
    dataset: Path = typer.Argument(..., help="Labeled folder, Real3D-AD or Anomaly-ShapeNet layout."),
    out: Path = typer.Option(..., help="Run folder: config.json, samples.jsonl, summary.json, report.md, roc.png."),
    reference: list[Path] = typer.Option([], help="Normal reference clouds for every class (repeatable); "
                                                  "default: the dataset's own, else self-reference."),
    workers: int = typer.Option(1, min=1, max=1024, help="Samples evaluated in parallel processes on this "
                                                         "machine."),
    concurrency: int = typer.Option(1, min=1, max=1024, help="Samples in flight at once in this process (threads), "
                                                             "for a hosted model (--backend openai): requests "
                                                             "overlap."),
    keep_plane: bool = typer.Option(False, "--keep-plane", help="MVTec 3D-AD: keep the background plane "
                                                                "(removed by default, as BTF does)."),
    scheduler: Optional[str] = typer.Option(None, help="Run the samples on a Dask cluster: its scheduler's "
                                                       "address, tcp://HOST:PORT."),
    bootstrap: int = typer.Option(1000, min=0, max=1_000_000, help="Bootstrap resamples for the 95% intervals and "
                                                                   "paired tests (0: none)."),
    guidance_set: Optional[Path] = typer.Option(None, help="A guidance set (TOML; 'embedded': the shipped one): "
                                                           "guidance.json holds flip AUROC and matched figures per "
                                                           "run and phrasing split."),
    compare_reader: list[Path] = typer.Option([], help="With --guidance-set: another guidance reader (tune --method "
                                                       "guidance) to benchmark beside --guidance-reader (repeatable)."),
    **options,
) -> None:
    """Run every gating x prompt on every sample of a dataset; metrics per class and overall. Several --budget values
    sweep the budget: one evaluation per budget in OUT/budget-B, and tradeoff.md / .png / .json in OUT."""
    from agent3d.api import evaluate as run_evaluate
    from agent3d.api import evaluate_budgets

    budgets = list(dict.fromkeys(options["budget"]))
    with exit_codes():
        gatings = list(dict.fromkeys(options["gating"]))
        detect_config = config_from(DetectConfig, options, gating=gatings[0], prompt=(options["prompt"] or ["geom"])[0],
                                    guidance=read_guidance(options["guidance"]), budget=budgets[0])
        run = {"gatings": gatings, "prompts": options["prompt"], "config": detect_config,
               "backend": config_from(BackendConfig, options), "references": reference, "workers": workers,
               "concurrency": concurrency, "scheduler": scheduler, "remove_plane": not keep_plane,
               "bootstrap": bootstrap, "guidance_set": guidance_set, "guidance_readers": compare_reader}
        if len(budgets) > 1:
            swept = evaluate_budgets(dataset, out, budgets, progress=lambda folder: lambda total, done:
                                     evaluation_progress(total, done, folder), **run)
            print_tradeoff(swept["tradeoff"], out)
            return
        summary = run_evaluate(dataset, out, progress=lambda total, done: evaluation_progress(total, done, out), **run)
    print_summary(summary, out)
    if "guidance" in summary:
        print_guidance(summary["guidance"])


def print_tradeoff(rows: dict, out: Path) -> None:
    """The budget sweep's table: P-AUROC, AUPRO and seconds per run and budget."""
    table = Table(title=f"budget trade-off (each budget's evaluation in {out}/budget-B)")
    for column in ("run", "budget", "scored", "P-AUROC", "AUPRO", "model s", "score s", "other s"):
        table.add_column(column, justify="left" if column == "run" else "right", no_wrap=True)
    for name, points in rows.items():
        for r in points:
            table.add_row(name, f"{r['budget']:g}", *("—" if r[k] is None else f"{r[k]:.3f}" for k in
                                                     ("fraction_scored", "p_auroc", "aupro")),
                          *(f"{r[k]:.2f}" for k in ("llm_seconds", "scoring_seconds", "other_seconds")))
    Console(width=max(100, Console().width)).print(table)
    Console().print(f"written: {out / 'tradeoff.md'}, {out / 'tradeoff.png'}, {out / 'tradeoff.json'}",
                    soft_wrap=True)


def print_guidance(rows: dict) -> None:
    """The guidance benchmark's table: flip AUROC, matched P-AUROC and suspect recall per run and phrasing split."""
    table = Table(title="guidance (flip AUROC: 0.5 for any text-blind run)")
    for column in ("run", "phrasings", "flip AUROC", "95% interval", "p vs blind", "matched P-AUROC", "matched recall"):
        table.add_column(column, justify="left" if column in ("run", "phrasings") else "right")
    for name, splits in rows.items():
        for split, f in splits.items():
            if f is None:
                continue
            interval = f"[{f['flip_interval'][0]:.3f}, {f['flip_interval'][1]:.3f}]" if f["flip_interval"] else "—"
            table.add_row(name, split, "—" if f["flip_auroc"] is None else f"{f['flip_auroc']:.3f}", interval,
                          "—" if f["flip_p"] is None else f"{f['flip_p']:.3g}", f"{f['matched_p_auroc']:.3f}",
                          f"{f['matched_suspect_recall']:.3f}")
    Console().print(table)


def evaluation_progress(total: int, done: int, out: Path):
    """A rich progress bar over (sample, run) records with the failures so far and the running pooled
    P-AUROC per run (over the records of this session)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from sklearn.metrics import roc_auc_score

    @contextmanager
    def bar():
        seen: dict[str, tuple[list, list]] = {}
        failed = [0]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[auroc]}"), console=Console(stderr=True)) as progress:
            task = progress.add_task("evaluating", total=total, completed=done, auroc="")

            def on_record(record: dict) -> None:
                if "failed" in record:
                    failed[0] += 1
                    progress.update(task, advance=1, description=f"evaluating ({failed[0]} failed)")
                    return
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

            try:
                yield on_record
            except BaseException:
                if not progress.tasks[0].completed - done:  # nothing ran: the error line is all the user sees
                    progress.live.transient = True
                raise

    return bar()


def print_summary(summary: dict, out: Path) -> None:
    """The report table in the terminal (short headers; at least 120 columns wide so numbers stay whole)."""
    from agent3d.evaluation.summary import comparison_lines, table_rows

    console = Console(width=max(120, Console().width))
    model = summary.get("model") or "none"
    if summary.get("adapter"):
        model += f" + adapter {summary['adapter']}"
    table = Table(title=f"agent3d evaluate {summary['dataset']}  ({summary['n_samples']} samples per run, "
                        f"model {model}, scorer {summary['scorer']})")
    for title in ("run", "P-AUROC", "O-AUROC", "AUPRO", "AP", "recall", "scored", "tok in", "tok out", "LLM s",
                  "score s", "s"):
        table.add_column(title, justify="left" if title == "run" else "right", no_wrap=True)
    for row in table_rows(summary):
        table.add_row(*row)
    console.print(table)
    for name, metrics in summary["per_run"].items():
        if metrics.get("llm_calls"):
            console.print(f"{name}: {metrics['llm_calls']} LLM calls, {metrics['llm_cached']} answered from the cache, "
                          f"{metrics['llm_retries']} transport retries, {metrics['llm_failures']} unusable after retries")
    for line in comparison_lines(summary):
        console.print(line, soft_wrap=True)
    if summary.get("n_failed"):
        console.print(f"[red]{summary['n_failed']} runs failed[/red] (not in the metrics; reasons in "
                      f"{out / 'samples.jsonl'}), e.g. {summary['failures'][0]['reason']}", soft_wrap=True)
    written = ["config.json", "samples.jsonl", "scores/", "summary.json", "report.md", "report.html", "roc.png",
               "renders/"] + (["llm_log.jsonl"] if (out / "llm_log.jsonl").is_file() else [])
    console.print(f"written: {', '.join(str(out / name) for name in written if (out / name.rstrip('/')).exists())}",
                  soft_wrap=True)
