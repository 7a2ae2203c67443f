"""Prompt templates as data: one folder per prompt with ``meta.json``, ``system.j2`` and ``user.j2``.

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
    system, user : str
        The jinja2 sources.
    """

    name: str
    version: int
    description: str
    format: str
    system: str
    user: str

    @property
    def digest(self) -> str:
        """Short content hash (sha256 of metadata and both templates), for run records."""
        text = json.dumps([self.name, self.version, self.format, self.system, self.user])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def render(self, **variables) -> list[dict[str, str]]:
        """Chat messages (system, user) with the template variables filled in.

        Raises
        ------
        jinja2.UndefinedError
            If the template uses a variable that was not given.
        """
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
        return [{"role": "system", "content": env.from_string(self.system).render(**variables).strip()},
                {"role": "user", "content": env.from_string(self.user).render(**variables).strip()}]


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
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"prompt folder {folder} is incomplete or invalid: {error}") from None
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{folder / 'meta.json'}: format must be one of {', '.join(FORMATS)}")
    return PromptTemplate(name=meta.get("name", name), version=int(meta.get("version", 1)),
                          description=meta.get("description", ""), format=meta["format"],
                          system=system, user=user)
