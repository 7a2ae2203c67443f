"""Guidance sets: TOML files of ``[[guidance]]`` entries (``text``, ``kind``, ``split``, ``normal``, ``size``) that
``evaluate --guidance-set`` benchmarks and ``tune --method guidance`` trains on; the shipped one (``embedded``) and the
hand-written held-out set of English and Korean phrasings (``held-out``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent3d.base import InputError
from agent3d.file_checks import check_file
from agent3d.spec import FEATURES, KINDS, SIZES

MAX_GUIDANCE_TEXT = 2000  # characters of one guidance text
MAX_GUIDANCE_FILE = 1 << 20  # bytes; a guidance set is a few kilobytes of phrasings


class GuidanceEntry(BaseModel):
    """One phrasing of a guidance set."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_GUIDANCE_TEXT)
    kind: Literal[KINDS]
    split: Literal["train", "held-out"] = "held-out"
    normal: list[Literal[FEATURES]] = Field(default_factory=list)
    size: Literal[SIZES] = "any"

    @property
    def language(self) -> str:
        """``ko`` for a text with Hangul in it, else ``en``."""
        return language_of(self.text)


class GuidanceSet(BaseModel):
    """A guidance set: ``[[guidance]]`` entries."""

    model_config = ConfigDict(extra="forbid")

    guidance: list[GuidanceEntry] = Field(min_length=1)

    def of(self, split: str) -> list[GuidanceEntry]:
        """The entries of ``split`` (``train`` or ``held-out``), in file order."""
        return [entry for entry in self.guidance if entry.split == split]


def language_of(text: str) -> str:
    """``ko`` for a text with Hangul syllables in it, else ``en``."""
    return "ko" if any("\uac00" <= c <= "\ud7a3" for c in text) else "en"


def shipped_guidance_set() -> Path:
    """The guidance set shipped with the package (36 raised, 36 sunk and 6 any phrasings, split once, by position,
    before any training)."""
    return Path(__file__).resolve().parent / "shipped" / "guidance.toml"


def held_out_set() -> Path:
    """The hand-written held-out guidance set (English and Korean, with ``normal`` and ``size``; written before any
    reader of issue 34 was trained, never trained or chosen on): ``--guidance-set held-out``."""
    return Path(__file__).resolve().parent / "shipped" / "guidance-held-out.toml"


def held_out_texts() -> list[str]:
    """The texts of :func:`held_out_set` (what the training generator must never emit)."""
    import tomllib

    return [entry["text"] for entry in tomllib.loads(held_out_set().read_text(encoding="utf-8"))["guidance"]]


def guidance_set_path(path: str | Path) -> Path:
    """The file a guidance set argument names: ``embedded`` is :func:`shipped_guidance_set`, ``held-out``
    :func:`held_out_set`."""
    named = {"embedded": shipped_guidance_set, "held-out": held_out_set}
    return named[str(path)]() if str(path) in named else Path(path)


def read_guidance_set(path: str | Path) -> GuidanceSet:
    """Read and validate a guidance set (a TOML file, or ``embedded``: the shipped one).

    Raises
    ------
    InputError
        A missing or oversized file (over 1 MiB), not TOML, an unknown kind or field, a missing or empty text.
    """
    import tomllib

    path = check_file(guidance_set_path(path))  # a FIFO or device would block the read
    try:
        if path.stat().st_size > MAX_GUIDANCE_FILE:
            raise InputError(path, f"a guidance set is at most {MAX_GUIDANCE_FILE} bytes")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read the guidance set ({type(error).__name__})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(path, f"not valid TOML ({error})") from None
    try:
        return GuidanceSet.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(path, f"{where}: {first['msg']}") from None
