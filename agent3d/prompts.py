"""Prompt templates as data: one folder per prompt with ``meta.json``, ``system.j2`` and ``user.j2``,
optionally ``zoom.j2`` (the later, closer rounds of the agent; the shipped ``prompts/zoom.j2`` otherwise)
and ``examples.json`` (few-shot turns: a list of ``{"user": ..., "assistant": ...}``).

Shipped prompts live in the top-level ``prompts/`` folder of the project, which the wheel
installs as ``agent3d/prompts``; a user's own folder of the same shape can be passed instead.

A prompt folder is data, never code: templates render in jinja2's ``ImmutableSandboxedEnvironment`` with no
globals (no ``lipsum``, ``cycler``, ``range`` ...), strict undefined variables and no loader, so ``include``,
``import`` and ``extends`` are refused; every file is read only if it is a regular file inside the folder (a
symlink that leaves it is refused); and each template is rendered once with sample values when the prompt is
loaded, so a template the sandbox refuses fails in one line before any model loads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agent3d.file_checks import InputError
from agent3d.verbalize import FORMATS

VARIABLES = frozenset({"points", "legend", "n_shown", "n_total", "tile", "n_tiles", "max_suspects", "guidance"})
ZOOM_VARIABLES = VARIABLES | {"round", "n_rounds", "focus", "previous"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def shipped_prompts_dir() -> Path:
    """The folder of the prompts shipped with agent3d (inside the wheel, or the source checkout)."""
    inside = Path(__file__).parent / "prompts"
    return inside if inside.is_dir() else Path(__file__).parent.parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt: system and user jinja2 templates plus metadata.

    Attributes
    ----------
    name : str
    version : int
    description : str
    format : str
        Verbalization format the prompt expects (one of ``agent3d.verbalize.FORMATS``).
    system, user, zoom : str
        The jinja2 sources: system message, first-round user message, later-round user message.
    examples : tuple of (str, str)
        Few-shot (user, assistant) turns placed between the system and the user message.
    """

    name: str
    version: int
    description: str
    format: str
    system: str
    user: str
    zoom: str = ""
    examples: tuple = ()

    @property
    def digest(self) -> str:
        """Short content hash (sha256 of metadata, templates and examples), for run records."""
        text = json.dumps([self.name, self.version, self.format, self.system, self.user, self.zoom,
                           list(self.examples)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def render(self, stage: str = "user", **variables) -> list[dict[str, str]]:
        """Chat messages (system, few-shot turns, user) with the template variables filled in.

        Parameters
        ----------
        stage : {"user", "zoom"}, default "user"
            The first-round template or the later-round one.

        Raises
        ------
        jinja2.UndefinedError
            If a template uses a variable that was not given.
        """
        env = sandbox()
        source = self.user if stage == "user" else self.zoom
        shots = [{"role": role, "content": text} for user, assistant in self.examples
                 for role, text in (("user", user), ("assistant", assistant))]
        return [{"role": "system", "content": env.from_string(self.system).render(**variables).strip()}, *shots,
                {"role": "user", "content": env.from_string(source).render(**variables).strip()}]


def load_prompt(name: str, prompts_dir: str | Path | None = None) -> PromptTemplate:
    """Load a prompt by name.

    Parameters
    ----------
    name : str
        Folder name under ``prompts_dir``.
    prompts_dir : str or Path, optional
        Defaults to the shipped prompts.

    Returns
    -------
    PromptTemplate

    Raises
    ------
    InputError
        Unknown name (the message lists the available ones) or a name that is not a plain folder name (a
        prompt never comes from outside ``prompts_dir``); a folder missing ``meta.json`` / ``system.j2`` /
        ``user.j2``; an unknown format in ``meta.json``; a template with a syntax error or a variable the
        agent does not fill (the message names the template file and line).
    """
    root = Path(prompts_dir) if prompts_dir else shipped_prompts_dir()
    if not _NAME.match(name) or ".." in name:
        raise InputError(f"--prompt '{name}'", f"a prompt name is a folder name in {root} (letters, digits, . _ -)")
    folder = root / name
    if folder.is_symlink() and root.resolve() not in folder.resolve().parents:
        raise InputError(folder, f"a prompt folder must lie inside {root} (it points to {folder.resolve()})")
    if not folder.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file())) if root.is_dir() else ""
        raise InputError("--prompt", f"unknown prompt '{name}' in {root} (available: {known or 'none'})")
    try:
        meta = json.loads(_read_inside(folder, "meta.json"))
        system, user = _read_inside(folder, "system.j2"), _read_inside(folder, "user.j2")
        zoom_file = folder / "zoom.j2" if (folder / "zoom.j2").exists() else shipped_prompts_dir() / "zoom.j2"
        zoom = _read_inside(zoom_file.parent, "zoom.j2")
        shots = json.loads(_read_inside(folder, "examples.json")) if (folder / "examples.json").exists() else []
        examples = tuple((_text(shot["user"]), _text(shot["assistant"])) for shot in shots)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(folder, f"prompt folder is incomplete or invalid: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise InputError(folder / "meta.json", f"format must be one of {', '.join(FORMATS)}")
    for source, file, allowed in ((system, folder / "system.j2", VARIABLES), (user, folder / "user.j2", VARIABLES),
                                  (zoom, zoom_file, ZOOM_VARIABLES)):
        check_template(source, file, allowed)
    version = meta.get("version", 1)
    if not isinstance(version, int):
        raise InputError(folder / "meta.json", "version must be an integer")
    template = PromptTemplate(name=str(meta.get("name", name)), version=version,
                              description=str(meta.get("description", "")), format=meta["format"],
                              system=system, user=user, zoom=zoom, examples=examples)
    _trial_render(template, folder)
    return template


@functools.cache
def sandbox() -> ImmutableSandboxedEnvironment:
    """The environment every prompt renders in: sandboxed, no globals, no loader, strict undefined variables (one per
    process: a template is rendered once per tile candidate, and the environment holds no per-render state)."""
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    env.globals.clear()
    return env


def _read_inside(folder: Path, name: str) -> str:
    """The text of ``folder/name``: a regular file whose real path lies inside ``folder``.

    Raises
    ------
    InputError
        A symlink out of the folder, a FIFO or another non-regular file, naming the file.
    """
    path = folder / name
    real, root = path.resolve(), folder.resolve()
    if root not in real.parents:
        raise InputError(path, f"a prompt file must lie inside its folder (it points to {real})")
    if not real.is_file():
        raise InputError(path, "not a regular file")
    return real.read_text()


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a few-shot turn must be a string, not {type(value).__name__}")
    return value


def _trial_render(template: PromptTemplate, folder: Path) -> None:
    """Render both stages with sample values, so what the sandbox refuses at run time is refused now."""
    sample = {"points": "p0 1 2 3 456", "legend": "id x y z", "n_shown": 1, "n_total": 1, "tile": 1, "n_tiles": 1,
              "max_suspects": 8, "guidance": "", "round": 2, "n_rounds": 2, "focus": "around your suspects",
              "previous": ["p0"]}
    for stage in ("user", "zoom"):
        try:
            template.render(stage, **sample)
        except jinja2.TemplateError as error:
            raise InputError(folder, f"template refused ({type(error).__name__}: {error})") from None


def check_template(source: str, file: Path, allowed: frozenset[str]) -> None:
    """Refuse a template that does not parse or uses a variable outside ``allowed``.

    Raises
    ------
    InputError
        Naming the file and, for a syntax error, the line.
    """
    try:
        tree = sandbox().parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise InputError(file, f"line {error.lineno}: {error.message}") from None
    for node in tree.find_all((jinja2.nodes.Include, jinja2.nodes.Import, jinja2.nodes.FromImport,
                               jinja2.nodes.Extends)):
        raise InputError(file, f"line {node.lineno}: include, import and extends are not allowed in a prompt")
    unknown = sorted(jinja2.meta.find_undeclared_variables(tree) - allowed)
    if unknown:
        raise InputError(file, f"unknown variable '{unknown[0]}' (templates can use {', '.join(sorted(allowed))})")


def list_prompts(prompts_dir: str | Path | None = None) -> list[PromptTemplate]:
    """Every prompt in a folder (the shipped ones by default), sorted by name; invalid folders are skipped."""
    root = Path(prompts_dir) if prompts_dir else shipped_prompts_dir()
    found = []
    for folder in sorted(p for p in root.iterdir() if (p / "meta.json").is_file()) if root.is_dir() else []:
        try:
            found.append(load_prompt(folder.name, root))
        except ValueError:
            continue
    return found
