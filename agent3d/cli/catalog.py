"""``agent3d prompts`` (list, show, render) and ``agent3d runs`` (list, compare)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from agent3d.cli.common import choices, exit_codes
from agent3d.config import BACKENDS, MAX_SEED, MAX_SHOWN, DetectConfig
from agent3d.io import read_cloud

Backend = choices(BACKENDS)
prompts_app = typer.Typer(no_args_is_help=True, help="List, show and render prompt templates.")
runs_app = typer.Typer(no_args_is_help=True, help="List and compare evaluation runs.")


@prompts_app.command("list")
def prompts_list(prompts_dir: Optional[Path] = typer.Option(None, help="Folder of your own prompt templates."),
                 as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """The available prompts: name, version, format, content hash, description."""
    from agent3d.prompts import list_prompts

    if as_json:
        typer.echo(json.dumps([{"name": p.name, "version": p.version, "format": p.format, "hash": p.digest,
                                "description": p.description} for p in list_prompts(prompts_dir)]))
        return
    table = Table(title=f"prompts in {prompts_dir or 'agent3d (shipped)'}")
    for column in ("name", "version", "format", "hash", "description"):
        table.add_column(column)
    for prompt in list_prompts(prompts_dir):
        table.add_row(prompt.name, str(prompt.version), prompt.format, prompt.digest, prompt.description)
    Console().print(table)


@prompts_app.command("show")
def prompts_show(name: str, prompts_dir: Optional[Path] = typer.Option(None, help="Folder of prompt templates.")) -> None:
    """The templates of one prompt, as written."""
    from agent3d.prompts import load_prompt

    with exit_codes():
        prompt = load_prompt(name, prompts_dir)
    typer.echo(f"# {prompt.name} v{prompt.version} ({prompt.format}, {prompt.digest}): {prompt.description}")
    for title, text in (("system", prompt.system), ("user", prompt.user), ("zoom", prompt.zoom)):
        typer.echo(f"\n## {title}\n{text.rstrip()}")
    for number, (user, assistant) in enumerate(prompt.examples, start=1):
        typer.echo(f"\n## example {number}\nuser: {user}\nassistant: {assistant}")


@prompts_app.command("render")
def prompts_render(
    name: str,
    file: Path = typer.Argument(..., help="The point cloud to verbalize."),
    prompts_dir: Optional[Path] = typer.Option(None, help="Folder of prompt templates."),
    backend: Backend = typer.Option(Backend("llama-cpp"), help="Whose tokenizer counts the tokens."),
    model: Optional[str] = typer.Option(None, help="GGUF file, Hugging Face folder or model name."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL."),
    n_points: int = typer.Option(DetectConfig.model_fields["n_points"].default, min=1, max=MAX_SHOWN,
                                 help="Points shown to the language model."),
    guidance: str = typer.Option("", help="What is normal for this part and what a defect looks like, or @FILE."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="Seed for sampling."),
) -> None:
    """Print the exact first-round messages for FILE and their token count, without calling the model."""
    from agent3d.agent import prompt_messages
    from agent3d.cli.common import read_guidance
    from agent3d.geometry import CloudContext
    from agent3d.config import BackendConfig
    from agent3d.llm import make_backend
    from agent3d.prompts import load_prompt
    from agent3d.sampling import sample
    from agent3d.verbalize import overview_of, shown_view

    with exit_codes():
        prompt = load_prompt(name, prompts_dir)
        cloud = read_cloud(file)
        context = CloudContext(cloud.points, seed=seed)
        view = shown_view(context, sample(cloud.points, n_points, seed=seed), prompt.format)
        overview, _ = overview_of(context, view, prompt.format)
        messages = prompt_messages(prompt, "user", overview, len(cloud), read_guidance(guidance))(
            np.arange(len(overview.lines)))
        counter = make_backend(BackendConfig(backend=backend.value, model=model, base_url=base_url,
                                             no_cache=True))
        tokens = counter.count_tokens(messages)
    for message in messages:
        typer.echo(f"--- {message['role']} ---\n{message['content']}")
    typer.echo(f"--- {tokens} prompt tokens ({counter.name}, {counter.model}) ---")


@runs_app.command("list")
def runs_list(folder: Path = typer.Argument(Path("runs"), help="A folder of runs, or one run."),
              as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """The runs in FOLDER: dataset, prompts (with content hashes), model, scorer, version, and the best row by
    P-AUROC among the runs' gatings other than all (which scores every point)."""
    from agent3d.evaluation.runs import list_runs

    with exit_codes():
        entries = list_runs(folder)
    if as_json:
        typer.echo(json.dumps(entries))
        return
    table = Table(title=f"runs in {folder}")
    for column in ("run", "dataset", "gatings", "prompts", "model", "scorer", "rounds", "version", "samples",
                   "best gating", "P-AUROC"):
        table.add_column(column, no_wrap=column == "run")
    for e in entries:
        prompts = ", ".join(f"{name} {digest}" for name, digest in e["prompts"].items()) or "-"
        model = str(e["model"] or "-") + (f" + {e['adapter']}" if e.get("adapter") else "")
        table.add_row(Path(e["path"]).name, str(e["dataset"]), ",".join(e["gatings"] or []), prompts, model,
                      str(e["scorer"]), str(e["rounds"]), str(e["version"]), str(e["samples"]), str(e["run"]),
                      "—" if e["p_auroc"] is None else f"{e['p_auroc']:.3f}")
    Console(width=max(160, Console().width)).print(table)


@runs_app.command("compare")
def runs_compare(
    run_a: str = typer.Argument(..., help="A run folder, or FOLDER#ROW (e.g. runs/p#llm/geom)."),
    run_b: str = typer.Argument(..., help="Another run folder, or FOLDER#ROW."),
    bootstrap: int = typer.Option(1000, min=0, max=1_000_000, help="Paired bootstrap resamples over the samples "
                                                                   "both runs finished (0: none)."),
) -> None:
    """Both runs' rows side by side, then B - A for the rows they share, with the better one per metric and, for
    P-AUROC, AUPRO and suspect recall, a paired 95% bootstrap interval and p-value: "outside" when the interval
    excludes 0."""
    from agent3d.evaluation.summary import COLUMNS, format_metric
    from agent3d.evaluation.runs import compare, load_rows

    with exit_codes():
        rows_a, rows_b = load_rows(run_a), load_rows(run_b)
    console = Console(width=max(140, Console().width))
    side = Table(title="side by side")
    for title in ("run", "row", "P-AUROC", "O-AUROC", "AUPRO", "AP", "recall", "scored", "tok in", "tok out",
                  "LLM s", "s"):
        side.add_column(title, justify="left" if title in ("run", "row") else "right", no_wrap=True)
    for label, rows in (("A", rows_a), ("B", rows_b)):
        for name, metrics in rows.items():
            side.add_row(label, name, *[format_metric(key, metrics[key]) for key, _ in COLUMNS])
    console.print(f"A = {run_a}\nB = {run_b}")
    console.print(side)
    deltas = compare(rows_a, rows_b, (run_a.partition("#")[0], run_b.partition("#")[0]), bootstrap)
    if not deltas:
        console.print("no row in common: nothing to subtract")
        return
    table = Table(title="B - A (better: which run wins the metric; 0 outside the paired 95% interval: a real "
                        "difference)")
    for title in ("row", "metric", "A", "B", "B - A", "95% interval", "p", "0 outside", "better"):
        table.add_column(title, justify="left" if title in ("row", "metric") else "right", no_wrap=True)
    for d in deltas:
        style = {"B": "green", "A": "red"}.get(d["better"], "")
        delta = "—" if d["delta"] is None else f"{d['delta']:+.3f}" if abs(d["delta"]) < 100 else f"{d['delta']:+,.0f}"
        low, high = d["interval"] or (None, None)
        interval = "" if low is None else f"[{low:+.3f}, {high:+.3f}]"
        outside = "" if low is None else "yes" if low > 0 or high < 0 else "no"
        table.add_row(d["row"], d["metric"], format_metric(d["metric"], d["a"]), format_metric(d["metric"], d["b"]), delta,
                      interval, "" if d["p"] is None else f"{d['p']:.3g}", outside,
                      f"[{style}]{d['better']}[/{style}]" if style else d["better"])
    console.print(table)
