"""``agent3d guidance read``: the defect specification a guidance text is read into, without reading any cloud."""

from __future__ import annotations

import json

import typer

from agent3d.cli.common import exit_codes, read_guidance

guidance_app = typer.Typer(no_args_is_help=True, help="What a guidance text is understood as (no cloud read).")


@guidance_app.command("read")
def read(
    text: str = typer.Argument(..., help="The guidance text, or @FILE."),
    as_json: bool = typer.Option(False, "--json", help='Print {"kind", "normal", "size", "probabilities", '
                                                         '"reader", "abstained"}.'),
    guidance_reader: str = typer.Option("embedded", help="What reads it: embedded (the shipped reader) or a reader "
                                                         "folder (agent3d tune --method guidance|guidance-lora)."),
    model: str = typer.Option("", help="Only to check: the model the reader must be on (an embedded model's name "
                                       "or a GGUF); refused when the reader is on another."),
) -> None:
    """Print the specification detect --guidance would apply, and how sure the reader is.

    Examples: agent3d guidance read "Sharp edges are normal; report dents." ; agent3d guidance read @note.txt --json
    """
    from agent3d.guidance import check_guidance_text, read_spec, resolve_reader

    with exit_codes():
        words = check_guidance_text(read_guidance(text), text[1:] if text.startswith("@") else "TEXT")
        reader = resolve_reader(guidance_reader)
        if reader is None:
            from agent3d.base import InputError

            raise InputError("--guidance-reader", "'none' reads nothing: name a reader")
        if model:
            reader.check_model(model)
        spec = read_spec(reader, words)
    if as_json:
        typer.echo(json.dumps(spec.summary()))
    else:
        typer.echo(f"guidance: {spec.line()}")
