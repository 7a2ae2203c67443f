"""The run folder, owned by one module: its lock, its configuration (``config.json``, checked on every resume), the
records of ``samples.jsonl`` (one typed model writes and reads them), the score files, the keys done and the failures.

Every write is atomic or an fsync'd append; the lock never follows a symlink; a record is trusted only when its
score file is a readable ``.npz`` inside ``DIR/scores`` (docs/design.md, "Contracts").
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent3d.config import BackendConfig, DetectConfig
from agent3d.file_checks import InputError, make_folder
from agent3d.gating import strategy
from agent3d.outputs import atomic_write, write_text

ARRAYS = "_arrays"  # the point arrays a worker returns with a record; the driver writes them to scores_file
_HELD: set[Path] = set()  # output folders whose lock this process holds
RESUMABLE = ("no_cache", "timeout", "retry_seconds", "device")


class SampleRecord(BaseModel):
    """One line of ``samples.jsonl``: a finished run of one (sample, gating, prompt), or one that could not be
    done (``failed``: the reason, naming the file). Written and read by this model; unknown fields (older or newer
    versions) are kept; a line it refuses is a torn or foreign line.

    Attributes
    ----------
    key : str
        ``CLASS/SAMPLE/GATING/PROMPT`` (``-`` without a prompt).
    class_name : str
        ``class`` in the file.
    scores_file : str
        ``scores/KEY.npz`` (point scores, labels, GT regions), relative to the run folder.
    regions, regions_hit : int
        Ground-truth regions, and those with a seed within their radius (None for ``all``).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    key: str
    class_name: str = Field(alias="class")
    sample: str
    gating: str
    prompt: str | None = None
    failed: str | None = None
    label: int | None = None
    object_score: float | None = None
    n_points: int | None = None
    n_scored: int | None = None
    regions: int | None = None
    regions_hit: int | None = None
    tokens_prompt: int = 0
    tokens_completion: int = 0
    llm_seconds: float = 0.0
    seconds: float | None = None
    scoring_seconds: float | None = None
    llm_calls: int = 0
    llm_retries: int = 0
    llm_cached: int = 0
    llm_failures: int = 0
    dropped: dict | None = None
    suspects: list[dict] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    scorer: str | None = None
    scores_file: str | None = None

    @model_validator(mode="after")
    def _finished_or_failed(self) -> "SampleRecord":
        if self.failed is None and (self.scores_file is None or self.label is None or self.object_score is None):
            raise ValueError("a finished record needs scores_file, label and object_score")
        return self

    def to_dict(self) -> dict:
        """The fields that were given (``class`` by its name in the file), as written to ``samples.jsonl``."""
        return self.model_dump(by_alias=True, exclude_unset=True)


class ConfigMismatch(InputError):
    """The output folder holds a run made with another configuration."""


class EvalConfig(BaseModel):
    """Everything that determines an evaluation's results (recorded in ``config.json``).

    Attributes
    ----------
    dataset, layout : str
    gatings : list of str
        Gatings to compare (``--gating``, repeatable).
    prompts : list of str
        Prompts for ``llm`` gating (``--prompt``, repeatable), with their content hashes in ``prompt_hashes``.
    references : list of str
        ``--reference`` for every class (default: each class's own references).
    detect : DetectConfig
        Every other detection setting (its ``gating`` and ``prompt`` are set per run).
    backend : BackendConfig
    adapter_hash : str, optional
        Content hash of the adapter (transformers backend).
    remove_plane : bool
        Organized (MVTec 3D-AD) clouds: drop the background plane (``--keep-plane`` turns it off).
    version : str
        agent3d version.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str
    layout: str
    gatings: list[str]
    prompts: list[str]
    prompt_hashes: dict[str, str]
    references: list[str] = Field(default_factory=list)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    adapter_hash: str | None = None
    remove_plane: bool = True
    version: str = ""

    def runs(self) -> list[tuple[str, str | None]]:
        """(gating, prompt) pairs: ``llm`` once per prompt, every other gating once with no prompt."""
        return [(g, p) for g in self.gatings for p in (self.prompts if strategy(g).per_prompt else [None])]

    def flat(self) -> dict:
        """Dotted keys and values, without the settings a resumed run may change (cache, timeouts, device)."""
        data = self.model_dump()
        flat = {k: v for k, v in data.items() if not isinstance(v, dict) or k == "prompt_hashes"}
        for group in ("detect", "backend"):
            flat.update({f"{group}.{k}": v for k, v in data[group].items() if k not in RESUMABLE})
        return flat


class RunLocked(InputError):
    """Another process is writing into the same output folder."""


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (an exclusive ``flock``) while a run writes into ``out``; the kernel releases it
    when the process ends, however it ends, and the file is removed when the run inside ends (refused, failed or
    finished; a run killed outright leaves it, unlocked, to be reused). Re-entrant within the process that holds
    it.

    Raises
    ------
    RunLocked
        When another process holds it (the message gives its pid).
    """
    if out.resolve() in _HELD:  # re-entered by the process that holds it
        yield
        return
    made = [p for p in (out, out / ".lock") if not p.exists()]  # removed again when the run inside is refused
    make_folder(out)
    try:  # never follow a symlink (it could point at any file the user can write); a folder is refused too
        descriptor = os.open(out / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise InputError(out / ".lock", f"cannot be used as a lock file ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise InputError(out / ".lock", "is not a regular file")
    with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RunLocked(out, f"another agent3d run (pid {handle.read().strip() or '?'}) is writing here; "
                                 "wait for it or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        _HELD.add(out.resolve())
        try:
            yield
        except BaseException:
            _remove_made([p for p in made if p.name != ".lock"])
            raise
        finally:  # the lock file goes while still held: no run, refused or finished, leaves one behind
            (out / ".lock").unlink(missing_ok=True)
            _HELD.discard(out.resolve())
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_made(made: list[Path]) -> None:
    """After a refused or failed run: remove the lock file and run folder :func:`run_lock` made, the folder only
    when nothing else was written into it (an empty ``scores/`` aside)."""
    for path in reversed(made):
        if path.name == ".lock":
            path.unlink(missing_ok=True)
            continue
        scores = path / "scores"
        if scores.is_dir() and not any(scores.iterdir()):
            scores.rmdir()
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def done_keys(out: Path) -> set[str]:
    """Keys of the records ``out/samples.jsonl`` holds (read only; empty when there is none); a finished record
    whose score file is missing, unreadable or outside ``out/scores`` is not done (the sample is run again)."""
    return done_among(out, read_lines(out))


def done_among(out: Path, records: list[dict]) -> set[str]:
    """Keys of ``records`` that are done: failed ones, and finished ones whose score file is usable."""
    return {r["key"] for r in records if "failed" in r or scores_usable(out, r)}


def scores_usable(out: Path, record: dict) -> bool:
    """Whether ``record["scores_file"]`` is a regular ``.npz`` inside ``out/scores`` that NumPy reads without
    pickle (a record naming a file elsewhere is never read)."""
    name = record.get("scores_file")
    if not isinstance(name, str):
        return False
    file = (out / name).resolve()
    if (out / "scores").resolve() not in file.parents or not file.is_file():
        return False
    try:
        with np.load(file, allow_pickle=False) as arrays:
            return {"scores", "labels", "regions"} <= set(arrays.files)
    except Exception:  # whatever a torn or foreign file makes NumPy raise
        return False


def parse_record(line: str) -> dict | None:
    """One line of ``samples.jsonl`` as a record (validated by :class:`SampleRecord`), or None for a torn or
    foreign line."""
    try:
        return SampleRecord.model_validate_json(line).to_dict()
    except (ValidationError, ValueError):
        return None


def read_lines(out: Path) -> list[dict]:
    """Every valid record of ``out/samples.jsonl`` in file order (empty when there is none)."""
    path = out / "samples.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(parse_record, path.read_text().splitlines()) if r is not None]


def append_record(out: Path, record: dict) -> None:
    """Write the record's point arrays (if any) to its ``scores_file``, then append one line to
    ``samples.jsonl`` and make it durable before returning."""
    arrays = record.pop(ARRAYS, None)
    if arrays is not None:
        atomic_write(out / record["scores_file"], lambda tmp: np.savez_compressed(tmp, **arrays))
    with open(out / "samples.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def prepare_output(out: Path, config: EvalConfig) -> set[str]:
    """Create or reopen ``out`` (the caller holds :func:`run_lock`): check ``config.json``, drop a torn
    last line, return the keys done.

    Raises
    ------
    ConfigMismatch
        When ``out/config.json`` records another configuration (the message names the fields).
    """
    make_folder(out / "scores")
    if not check_config(out, config):
        write_text(out / "config.json", config.model_dump_json(indent=2) + "\n")
    lines = out / "samples.jsonl"
    if not lines.is_file():
        return set()
    text = lines.read_text()
    valid = [(line, record) for line in text.splitlines() if (record := parse_record(line)) is not None]
    kept = "".join(line + "\n" for line, _ in valid)
    if kept != text:  # a killed writer left a torn line: replace the file whole, never truncate it in place
        write_text(lines, kept)
    return done_among(out, [record for _, record in valid])


def check_config(out: Path, config: EvalConfig) -> bool:
    """True when ``out/config.json`` records ``config`` (settings a resume may change aside), False when
    there is none (read only).

    Raises
    ------
    ConfigMismatch
        When it records another configuration (the message names the fields).
    """
    recorded = out / "config.json"
    if not recorded.is_file():
        return False
    try:
        previous = EvalConfig.model_validate_json(recorded.read_text()).flat()
    except ValueError:
        raise ConfigMismatch(recorded, "not a configuration of this agent3d version; use another --out") from None
    current = config.flat()
    changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
    if changed:
        raise ConfigMismatch(out, f"holds a run with another configuration ({', '.join(changed)} differ); "
                             "use another --out or the same settings")
    return True
