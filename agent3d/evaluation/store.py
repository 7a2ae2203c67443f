"""The run folder's files that a batch writes and a resume reads: the lock, ``samples.jsonl`` and the score files.

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

from agent3d.file_checks import InputError, make_folder
from agent3d.outputs import atomic_write

ARRAYS = "_arrays"  # the point arrays a worker returns with a record; the driver writes them to scores_file
_HELD: set[Path] = set()  # output folders whose lock this process holds


class RunLocked(InputError):
    """Another process is writing into the same output folder."""


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (an exclusive ``flock``) while a run writes into ``out``; the kernel releases it
    when the process ends, however it ends. Re-entrant within the process that holds it.

    Raises
    ------
    RunLocked
        When another process holds it (the message gives its pid).
    """
    make_folder(out)
    if out.resolve() in _HELD:  # re-entered by the process that holds it
        yield
        return
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
        finally:
            _HELD.discard(out.resolve())
            fcntl.flock(handle, fcntl.LOCK_UN)


def done_keys(out: Path) -> set[str]:
    """Keys of the records ``out/samples.jsonl`` holds (read only; empty when there is none); a finished record
    whose score file is missing, unreadable or outside ``out/scores`` is not done (the sample is run again)."""
    path = out / "samples.jsonl"
    if not path.is_file():
        return set()
    return done_among(out, [r for r in map(parse_record, path.read_text().splitlines()) if r is not None])


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
    """One line of ``samples.jsonl`` as a record, or None for a torn or foreign line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "key" in record else None


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
