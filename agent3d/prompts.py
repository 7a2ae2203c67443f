"""Prompt templates as data: one folder per prompt with ``meta.json``, ``system.j2`` and ``user.j2``,
optionally ``zoom.j2`` (the later, closer rounds of the agent; the shipped ``prompts/zoom.j2`` otherwise)
and ``examples.json`` (few-shot turns: a list of ``{"user": ..., "assistant": ...}``).

Shipped prompts live in the top-level ``prompts/`` folder of the project, which the wheel
installs as ``agent3d/prompts``; a user's own folder of the same shape can be passed instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jinja2

from agent3d.verbalize import FORMATS


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
        Unknown name (the message lists the available ones), or a folder missing
        ``meta.json`` / ``system.j2`` / ``user.j2``, or an unknown format in ``meta.json``.
    """
    root = Path(prompts_dir) if prompts_dir else shipped_prompts_dir()
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
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{folder / 'meta.json'}: format must be one of {', '.join(FORMATS)}")
    return PromptTemplate(name=meta.get("name", name), version=int(meta.get("version", 1)),
                          description=meta.get("description", ""), format=meta["format"],
                          system=system, user=user, zoom=zoom, examples=examples)


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
