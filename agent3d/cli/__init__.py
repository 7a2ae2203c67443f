"""The ``agent3d`` command line (typer + rich): one module per command group.

Exit codes: 0 ok, 2 bad input (one line naming the file and the problem), 3 backend failure.
"""

from __future__ import annotations

import typer

from agent3d.cli.catalog import prompts_app, runs_app
from agent3d.cli.data import render, synth
from agent3d.cli.detect import detect
from agent3d.cli.evaluate import evaluate
from agent3d.cli.tune import tune

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Can a language model, reading a point cloud as text, point at the defect?")


@app.callback()
def main() -> None:
    """agent3d: LLM-gated 3D anomaly detection on point clouds."""


for command in (detect, evaluate, tune, synth, render):
    app.command()(command)
app.add_typer(prompts_app, name="prompts")
app.add_typer(runs_app, name="runs")
