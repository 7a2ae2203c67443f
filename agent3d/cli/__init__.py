"""The ``agent3d`` command line (typer + rich): one module per command group.

Exit codes: 0 ok, 2 bad input (one line naming the file and the problem), 3 backend failure.
"""

from __future__ import annotations

import typer

from agent3d.cli.catalog import prompts_app, runs_app
from agent3d.cli.common import OneLineUsageErrors, readable_metavars
from agent3d.cli.data import render, synth
from agent3d.cli.detect import detect
from agent3d.cli.evaluate import evaluate
from agent3d.cli.guidance import guidance_app
from agent3d.cli.system import doctor, models
from agent3d.cli.tune import tune

EXAMPLES = {
    "detect": ["agent3d detect data_samples/surface_00.txt", "agent3d detect scan.ply --json --out results/",
               "agent3d detect scan.ply --gating saliency --reference good_parts/",
               "agent3d detect scan.ply --backend openai --model gpt-4o-mini", "agent3d detect scan.ply --config my.toml"],
    "evaluate": ["agent3d evaluate data/ --out runs/a --gating llm --gating saliency --gating random --gating all",
                 "agent3d evaluate data/ --out runs/b --backend openai --model m --base-url URL --concurrency 8",
                 "agent3d evaluate data/ --out runs/c --scheduler tcp://10.0.0.5:8786"],
    "tune": ["agent3d tune data/train/* --out adapters/mine --method lora --n-points 32 --minutes 40"],
    "synth": ["agent3d synth scans/bunny.obj --out data/bunny --n 24 --defects dent,bulge"],
    "render": ["agent3d render results/ --out results/heatmap.png"],
    "models": ["agent3d models", "agent3d models --json"],
    "doctor": ["agent3d doctor", "agent3d doctor --base-url http://127.0.0.1:8000/v1"],
}

app = typer.Typer(cls=OneLineUsageErrors, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Can a language model, reading a point cloud as text, point at the defect?")


def epilog(name: str) -> str:
    """The "Examples" section of a command's help."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in EXAMPLES[name])


def show_version(value: bool) -> None:
    if value:
        from agent3d import __version__

        typer.echo(f"agent3d {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """agent3d: LLM-gated 3D anomaly detection on point clouds."""


for command in (detect, evaluate, tune, synth, render, models, doctor):
    app.command(epilog=epilog(command.__name__))(readable_metavars(command))
for sub_app in (prompts_app, runs_app, guidance_app):
    for info in sub_app.registered_commands:
        info.callback = readable_metavars(info.callback)
app.add_typer(prompts_app, name="prompts")
app.add_typer(runs_app, name="runs")
app.add_typer(guidance_app, name="guidance")
