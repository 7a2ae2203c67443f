"""The command line as a click command, for the documentation's CLI reference (mkdocs-click reads ``command``), so
the reference is generated from the same typer app as ``--help`` and cannot drift from it."""

from __future__ import annotations

import typer

from agent3d.cli import app

command = typer.main.get_command(app)
