"""``agent3d models`` (what can answer: backends, the embedded model, adapters, optional parts) and
``agent3d doctor`` (is this machine ready: system library, packages, cache folder, a server)."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from agent3d.cli.common import exit_codes
from agent3d.system import OPTIONAL, doctor_checks, models_report

def models(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Backends and whether they are ready, the embedded models (name, parameters, license, file, size and sha256, or
    the pip command that installs one), shipped adapters, and which optional parts are installed."""
    report = models_report()
    if as_json:
        typer.echo(json.dumps(report))
        return
    console = Console()
    table = Table(title="backends")
    for column in ("backend", "ready", "models"):
        table.add_column(column)
    for name, entry in report["backends"].items():
        table.add_row(name, "yes" if entry["ready"] else "[red]no[/red]", entry["models"])
    console.print(table)
    table = Table(title="embedded models (--model NAME)")
    for column in ("name", "model", "parameters", "license", "file"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for entry in report["embedded_models"]:
        file = (f"{entry['path']} ({entry['bytes'] / 1e6:.1f} MB, sha256 {entry['sha256']})" if "path" in entry
                else f"[red]{entry['missing']}[/red]")
        table.add_row(entry["name"] + ("\n(default)" if entry["default"] else ""), entry["title"], entry["parameters"],
                      entry["license"], file)
    console.print(table)
    console.print(f"shipped adapters: {', '.join(report['shipped_adapters']) or 'none'}")
    console.print("optional parts: " + ", ".join(f"{name} {version or '[red]missing[/red]'} "
                                                 f"(extra {OPTIONAL[name][1]})"
                                                 for name, version in report["optional"].items()))


def doctor(
    base_url: Optional[str] = typer.Option(None, help="Also check that this OpenAI-compatible server answers."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check this machine: the system library open3d needs, optional packages, the reply cache folder, a server.
    Exit 0 when every required check passes, 3 otherwise."""
    with exit_codes():
        checks = doctor_checks(base_url)
    failed = [c for c in checks if c["required"] and not c["ok"]]
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "checks": checks}))
    else:
        table = Table(title="agent3d doctor")
        for column in ("check", "status", "detail"):
            table.add_column(column)
        for c in checks:
            status = "ok" if c["ok"] else "[red]FAIL[/red]" if c["required"] else "[yellow]missing[/yellow]"
            table.add_row(c["check"], status, str(c["detail"]))
        Console().print(table)
    if failed:
        raise typer.Exit(3)
