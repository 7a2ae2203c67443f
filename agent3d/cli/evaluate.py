"""``agent3d evaluate``: every gating x prompt on every sample of a dataset, metrics per class and overall."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from agent3d.cli.common import config_from, config_options, exit_codes, read_guidance
from agent3d.config import GATINGS, BackendConfig, DetectConfig


@config_options(DetectConfig, BackendConfig, repeatable=("gating", "prompt"), defaults={"gating": list(GATINGS)})
def evaluate(
    dataset: Path = typer.Argument(..., help="Labeled folder, Real3D-AD or Anomaly-ShapeNet layout."),
    out: Path = typer.Option(..., help="Run folder: config.json, samples.jsonl, summary.json, report.md, roc.png."),
    reference: list[Path] = typer.Option([], help="Normal reference clouds for every class (repeatable); "
                                                  "default: the dataset's own, else self-reference."),
    workers: int = typer.Option(1, min=1, help="Samples evaluated in parallel processes on this machine."),
    concurrency: int = typer.Option(1, min=1, help="Samples in flight at once in this process (threads), for a "
                                                   "hosted model (--backend openai): requests overlap."),
    keep_plane: bool = typer.Option(False, "--keep-plane", help="MVTec 3D-AD: keep the background plane "
                                                                "(removed by default, as BTF does)."),
    scheduler: Optional[str] = typer.Option(None, help="Run the samples on a Dask cluster: its scheduler's "
                                                       "address, tcp://HOST:PORT."),
    bootstrap: int = typer.Option(1000, min=0, help="Bootstrap resamples for the 95% intervals and paired tests "
                                                    "(0: none)."),
    **options,
) -> None:
    """Run every gating x prompt on every sample of a dataset; metrics per class and overall."""
    from agent3d import __version__
    from agent3d.evaluation.datasets import load_dataset
    from agent3d.evaluation.distributed import connect
    from agent3d.evaluation.report import write_report
    from agent3d.evaluation.summary import summarize
    from agent3d.evaluation.runner import EvalConfig, check_config, run_evaluation
    from agent3d.evaluation.store import done_keys, run_lock
    from agent3d.io import check_output, read_references
    from agent3d.learned import load_learned
    from agent3d.prompts import load_prompt

    with exit_codes():
        gatings = list(dict.fromkeys(options["gating"]))
        prompts = list(dict.fromkeys(options["prompt"])) if "llm" in gatings else []
        detect_config = config_from(DetectConfig, options, gating=gatings[0], prompt=(prompts or ["geom"])[0],
                                    guidance=read_guidance(options["guidance"]))
        backend_config = config_from(BackendConfig, options)
        hashes = {name: load_prompt(name, detect_config.prompts_dir).digest for name in prompts}
        adapter, adapter_hash = None, None
        if "llm" in gatings:
            backend_config.check()  # a missing --model, an adapter a hosted model cannot use: refused before work
            adapter, adapter_hash = _adapter(backend_config, hashes, detect_config)
        if "learned" in gatings:
            load_learned(detect_config.learned)  # an unreadable learned baseline is refused before anything is written
        data = load_dataset(dataset)
        read_references(reference, not keep_plane)  # a bad --reference is refused before anything is written
        check_output(out, folder=True, keep="config.json")
        config = EvalConfig(dataset=str(dataset), layout=data.layout, gatings=gatings, prompts=prompts,
                            prompt_hashes=hashes, references=[str(r) for r in reference], detect=detect_config,
                            backend=backend_config, adapter_hash=adapter_hash,
                            remove_plane=not keep_plane,
                            version=__version__)
        check_config(out, config)
        client = connect(scheduler) if scheduler else None
        with run_lock(out), client or nullcontext():
            total, done = len(data.samples) * len(config.runs()), len(done_keys(out))
            with evaluation_progress(total, done, out) as on_record:
                run_evaluation(data, config, out, workers, on_record, concurrency, client)
            llm = "llm" in gatings
            summary = summarize(out, config.runs(), {
                "dataset": str(dataset), "layout": data.layout, "backend": backend_config.backend if llm else None,
                "model": (backend_config.model or "embedded SmolLM2-135M-Instruct") if llm else None,
                "adapter": f"{adapter}@{config.adapter_hash}" if llm and adapter else None,
                "budget": detect_config.budget, "version": __version__, "bootstrap": bootstrap},
                n_resamples=bootstrap, seed=detect_config.seed)
            samples = {(s.class_name, s.name): s for s in data.samples}
            write_report(out, summary, lambda name, sample: samples[(name, sample)].load(not keep_plane).points)
    print_summary(summary, out)


def _adapter(backend_config: BackendConfig, hashes: dict[str, str], detect_config: DetectConfig
             ) -> tuple[str | None, str | None]:
    """The adapter an ``llm`` run applies (its name and content hash), checked against every prompt and the
    guidance before anything is written: a head adapter (llama-cpp; the shipped one by default with the embedded
    model) or a PEFT adapter (transformers).

    Raises
    ------
    InputError
        An adapter that does not exist, does not fit the backend, or was trained on another prompt or guidance.
    """
    if backend_config.backend == "llama-cpp":
        from agent3d.llm.head import resolve_head

        head = resolve_head(backend_config.adapter, backend_config.model)
        if head is None:
            return None, None
        for name, digest in hashes.items():
            head.check(name, digest, detect_config.guidance)
        return str(backend_config.adapter or "embedded"), head.digest
    if backend_config.backend == "transformers" and backend_config.adapter not in (None, "none"):
        from agent3d.llm.transformers import adapter_digest, resolve_adapter

        return backend_config.adapter, adapter_digest(resolve_adapter(backend_config.adapter))
    return None, None


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

            yield on_record

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
    for title in ("run", "P-AUROC", "O-AUROC", "AUPRO", "AP", "recall", "scored", "tok in", "tok out", "LLM s", "s"):
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
