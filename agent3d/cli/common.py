"""What the command modules share: options generated from the configuration, the one error-to-exit-code
wrapper, and input helpers.

Exit codes: 0 ok, 2 bad input (one line naming the file and the problem), 3 backend failure, 1 a bug in agent3d
(its traceback and a request to report it).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Literal, Optional, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from typer.core import TyperGroup

from agent3d.file_checks import InputError, check_file
from agent3d.llm.base import BackendError

_CHOICES: dict[tuple[str, ...], type[Enum]] = {}


def choices(values: tuple[str, ...]) -> type[Enum]:
    """A str Enum whose values are ``values`` (typer shows and checks them as choices); one per tuple."""
    if values not in _CHOICES:
        name = "".join(v.title() for v in values[:2]).replace("-", "") + "Choice"
        _CHOICES[values] = Enum(name, {v.replace("-", "_"): v for v in values}, type=str)
    return _CHOICES[values]


def _cli_type(annotation):
    """The type typer should see for a pydantic field's annotation: Literal -> Enum, ``X | None`` -> Optional[X]."""
    if get_origin(annotation) is Literal:
        return choices(get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return Optional[_cli_type(inner[0])]
    return annotation


def config_options(*models: type[BaseModel], repeatable: tuple[str, ...] = (), defaults: dict | None = None):
    """Add every field of ``models`` to a typer command as a keyword option: ``--field-name``, the field's
    default and description, plus ``--config FILE.toml`` whose values fill the options the command line did not
    give (:func:`merge_config_file`). The command receives them in ``**options`` (see :func:`config_from`).

    Parameters
    ----------
    models : pydantic model classes
    repeatable : tuple of str
        Fields that become repeatable options (a list; the default is a one-element list).
    defaults : dict, optional
        Other defaults for some repeatable options (e.g. every gating for ``evaluate``).
    """
    def decorate(func):
        signature = inspect.signature(func)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = []
        for model in models:
            for name, field in model.model_fields.items():
                kind, default = _cli_type(field.annotation), field.default
                if isinstance(kind, type) and issubclass(kind, Enum):
                    default = kind(default)
                if name in repeatable:
                    kind, default = list[kind], [kind(v) if isinstance(default, Enum) else v
                                                 for v in (defaults or {}).get(name, [plain(default)])]
                low, high, above = field_bounds(field)
                text = field.description + (f" (x > {above})" if above is not None else "")
                option = typer.Option(default, "--" + name.replace("_", "-"), help=text, min=low, max=high)
                added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
        config = typer.Option(None, "--config", help="TOML file of options, named as the flags (n_points = 64); "
                                                     "flags given here win.")

        @functools.wraps(func)
        def command(ctx: typer.Context, config_file: Optional[Path] = None, **given):
            with exit_codes():
                merged = merge_config_file(ctx, {**given, "config": config_file}, models)
            merged.pop("config")
            return func(**merged)

        first = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        last = inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=config,
                                 annotation=Optional[Path])
        command.__signature__ = signature.replace(parameters=[first, *own, *added, last])
        command.__annotations__ = {**func.__annotations__, **{p.name: p.annotation for p in added},
                                   "ctx": typer.Context, "config_file": Optional[Path]}
        return command
    return decorate


def field_bounds(field) -> tuple[float | None, float | None, float | None]:
    """A pydantic field's range: its closed bounds (``ge``, ``le``: the CLI option's ``min`` / ``max``, shown in
    ``--help`` and checked while parsing) and an open lower bound (``gt``, said in the help; pydantic checks it)."""
    bounds = {name: getattr(item, name) for item in field.metadata for name in ("ge", "le", "gt")
              if getattr(item, name, None) is not None}
    return bounds.get("ge"), bounds.get("le"), bounds.get("gt")


def readable_metavars(func):
    """Give every option and argument of a typer command a plain metavar (``PATH``, ``N``, ``X``, ``TEXT``,
    ``[a|b]`` for choices, the argument's name, nothing for flags) instead of Python types such as ``<list[Path]>``."""
    from typing import get_type_hints

    hints = get_type_hints(func)
    for parameter in inspect.signature(func).parameters.values():
        info = parameter.default
        if not isinstance(info, (typer.models.OptionInfo, typer.models.ArgumentInfo)) or info.metavar:
            continue
        kind = hints.get(parameter.name, str)
        while get_origin(kind) in (list, Union, types.UnionType):
            kind = next(a for a in get_args(kind) if a is not type(None))
        if isinstance(info, typer.models.ArgumentInfo):
            info.metavar = parameter.name.upper()
        elif kind is bool:
            info.metavar = " "  # a flag takes no value
        elif isinstance(kind, type) and issubclass(kind, Enum):
            info.metavar = "[" + "|".join(member.value for member in kind) + "]"
        else:
            info.metavar = {Path: "PATH", int: "N", float: "X"}.get(kind, "TEXT")
    return func


def merge_config_file(ctx: typer.Context, options: dict, models: tuple[type[BaseModel], ...]) -> dict:
    """``options`` with the values of ``--config FILE.toml`` filled in where the command line gave none.

    The file holds the same names as the flags (``n_points`` or ``n-points``), validated by the same models;
    a flag given on the command line wins over the file.

    Raises
    ------
    InputError
        An unreadable file, invalid TOML, an unknown name or a value out of range (naming the file).
    """
    path = options.get("config")
    if path is None:
        return options
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    if Path(path).exists():
        check_file(path)  # a FIFO or device would block the read
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(path, f"cannot read the configuration file ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f"not valid TOML ({error})") from None
    values = {key.replace("-", "_"): value for key, value in data.items()}
    fields = {name: model for model in models for name in model.model_fields}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(path, f"unknown option '{unknown[0]}' (known: {', '.join(sorted(fields))})")
    for key, value in values.items():
        if isinstance(value, list) and not isinstance(options.get(key), list):
            raise InputError(path, f"{key}: takes one value, not a list")
    try:
        for model in models:
            model(**{k: v for k, v in values.items() if fields[k] is model and not isinstance(v, list)})
        for key, value in values.items():  # a repeatable option's values, one by one
            for item in value if isinstance(value, list) else []:
                fields[key](**{key: item})
    except ValidationError as error:
        first = error.errors()[0]
        raise InputError(path, f"{first['loc'][0]}: {first['msg']}") from None
    merged = dict(options)
    for key, value in values.items():
        source = ctx.get_parameter_source(key)
        if getattr(source, "name", None) != "COMMANDLINE":  # typer may bundle its own click
            # a repeatable option (evaluate's --gating, --prompt, --budget) given one value is a list of one
            merged[key] = [value] if isinstance(options.get(key), list) and not isinstance(value, list) else value
    return merged


def plain(value):
    """An option value without Enums (lists element-wise)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.value if isinstance(value, Enum) else value


def config_from(model: type[BaseModel], options: dict, **overrides):
    """Build ``model`` from the options of a command decorated with :func:`config_options`.

    Raises
    ------
    pydantic.ValidationError
        A value out of range.
    """
    values = {name: plain(options[name]) for name in model.model_fields if name in options}
    return model(**{**values, **overrides})


class OneLineUsageErrors(TyperGroup):
    """The command group whose usage errors (an option out of range, an unknown flag, a missing argument) are one
    line, ``agent3d: --concurrency: Input should be greater than or equal to 1``, and exit 2, as every other bad
    input; scripts parse that line. Asked for nothing, it prints the help (exit 2)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except USAGE_ERROR as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(2)
            fail_usage(error)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")  # the click typer uses


def fail_usage(error) -> None:
    """A usage error in one line naming the option (``--flag: problem``), exit 2."""
    param = getattr(error, "param", None)
    hint = getattr(error, "param_hint", None) or ("/".join(param.opts) if param is not None and param.opts else None)
    bad_value = isinstance(error, typer.BadParameter) and error.message and hint
    try:
        fail(f"{hint}: {error.message}" if bad_value else error.format_message(), 2)
    except typer.Exit as done:
        sys.exit(done.exit_code)


MAX_MESSAGE_CHARS = 400  # a field echoed from a hostile file never floods the terminal


def fail(message: str, code: int) -> None:
    """Print one line (secrets redacted, line breaks joined, cut to ``MAX_MESSAGE_CHARS``) to stderr and exit
    with ``code``."""
    from agent3d.llm.base import redact

    line = " ".join(redact(message).split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = f"{line[:MAX_MESSAGE_CHARS]}... ({len(line) - MAX_MESSAGE_CHARS} more characters cut)"
    typer.echo(f"agent3d: {line}", err=True)
    raise typer.Exit(code)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Bad input (:class:`InputError`, an invalid option, a run folder of another configuration, a cloud that
    cannot be registered) is one line and exit 2; a backend failure one line and exit 3; any other exception is a
    bug in agent3d: its traceback, then a line asking for a report, exit 1."""
    try:
        yield
    except ValidationError as error:
        first = error.errors()[0]
        where = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "configuration"
        fail(f"{where}: {first['msg']}", 2)
    except InputError as error:
        fail(str(error), 2)
    except BackendError as error:
        fail(f"backend failure: {error}", 3)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        import traceback

        traceback.print_exc()
        fail("internal error: this is a bug in agent3d, not in your input; please report it with the traceback "
             "above and the command", 1)


def silence_progress_bars() -> None:
    """``--quiet``: no library draws a progress bar on stderr (transformers converts a GGUF under a ``tqdm``
    bar; tqdm reads ``TQDM_DISABLE`` when it is imported, which happens when the model loads)."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"


def read_guidance(text: str) -> str:
    """``--guidance`` as given, or the contents of the file named after an ``@``.

    Raises
    ------
    InputError
        An ``@FILE`` that cannot be read as text.
    """
    if not text.startswith("@"):
        return text.strip()
    if Path(text[1:]).exists():
        check_file(text[1:])  # a FIFO or device would block the read
        if Path(text[1:]).stat().st_size > 1 << 20:
            raise InputError(text[1:], "a guidance file is at most 1 MiB (a note of a few sentences)")
    try:
        return Path(text[1:]).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(text[1:], f"cannot read the guidance file ({error.__class__.__name__})") from None
