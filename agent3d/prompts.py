"""Prompt templates as data: one folder per prompt with ``meta.json``, ``system.j2`` and ``user.j2``,
optionally ``zoom.j2`` (the later, closer rounds of the agent; the shipped ``prompts/zoom.j2`` otherwise)
and ``examples.json`` (few-shot turns: a list of ``{"user": ..., "assistant": ...}``).

Shipped prompts live in the top-level ``prompts/`` folder of the project, which the wheel
installs as ``agent3d/prompts``; a user's own folder of the same shape can be passed instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.meta

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
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
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
    ValueError
        Unknown name (the message lists the available ones) or a name that is not a plain folder name (a
        prompt never comes from outside ``prompts_dir``); a folder missing ``meta.json`` / ``system.j2`` /
        ``user.j2``; an unknown format in ``meta.json``; a template with a syntax error or a variable the
        agent does not fill (the message names the template file and line).
    """
    root = Path(prompts_dir) if prompts_dir else shipped_prompts_dir()
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"--prompt '{name}': a prompt name is a folder name in {root} (letters, digits, . _ -)")
    folder = root / name
    if not folder.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file())) if root.is_dir() else ""
        raise ValueError(f"unknown prompt '{name}' in {root} (available: {known or 'none'})")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        system, user = (folder / "system.j2").read_text(), (folder / "user.j2").read_text()
        zoom_file = folder / "zoom.j2" if (folder / "zoom.j2").is_file() else shipped_prompts_dir() / "zoom.j2"
        zoom = zoom_file.read_text()
        shots = json.loads((folder / "examples.json").read_text()) if (folder / "examples.json").is_file() else []
        examples = tuple((shot["user"], shot["assistant"]) for shot in shots)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"prompt folder {folder} is incomplete or invalid: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise ValueError(f"{folder / 'meta.json'}: format must be one of {', '.join(FORMATS)}")
    for source, file, allowed in ((system, folder / "system.j2", VARIABLES), (user, folder / "user.j2", VARIABLES),
                                  (zoom, zoom_file, ZOOM_VARIABLES)):
        check_template(source, file, allowed)
    version = meta.get("version", 1)
    if not isinstance(version, int):
        raise ValueError(f"{folder / 'meta.json'}: version must be an integer")
    return PromptTemplate(name=str(meta.get("name", name)), version=version,
                          description=str(meta.get("description", "")), format=meta["format"],
                          system=system, user=user, zoom=zoom, examples=examples)


def check_template(source: str, file: Path, allowed: frozenset[str]) -> None:
    """Refuse a template that does not parse or uses a variable outside ``allowed``.

    Raises
    ------
    ValueError
        Naming the file and, for a syntax error, the line.
    """
    try:
        tree = jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise ValueError(f"{file}: line {error.lineno}: {error.message}") from None
    unknown = sorted(jinja2.meta.find_undeclared_variables(tree) - allowed)
    if unknown:
        raise ValueError(f"{file}: unknown variable '{unknown[0]}' (templates can use {', '.join(sorted(allowed))})")


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
