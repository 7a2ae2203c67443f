"""A disk cache of replies, so a rerun of the same prompt costs nothing.

Keyed by sha256 of (backend, model, messages, schema, params), where a backend's params hold its decoding
parameters and what identifies the model (a GGUF's sha256, the server URL without credentials). One JSON file
per reply under ``$AGENT3D_CACHE_DIR`` (default ``~/.cache/agent3d/llm``). Only usable replies stay: empty or
oversized replies are never stored, and the agent discards (:func:`discard`) a reply it could not use.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from agent3d.file_checks import check_folder
from agent3d.llm.base import Backend, Messages, Reply

MAX_STORED_CHARS = 65536  # a reply longer than this (a runaway or hostile server) is never stored


REPLIES = "llm"  # the replies' cache kind (its folder name under ~/.cache/agent3d)


def cache_dir(kind: str = REPLIES) -> Path:
    """The cache folder of ``kind``, checked (it is created when the first entry is written): replies (``llm``) under ``$AGENT3D_CACHE_DIR`` itself, other kinds
    (``states``) in a subfolder of it; without the variable, ``~/.cache/agent3d/KIND``.

    Raises
    ------
    InputError
        The folder cannot be made or written (names ``AGENT3D_CACHE_DIR`` when it comes from there).
    """
    env = os.environ.get("AGENT3D_CACHE_DIR")
    root = Path(env) if env else Path.home() / ".cache" / "agent3d"
    return check_folder(root if env and kind == REPLIES else root / kind, f"AGENT3D_CACHE_DIR={env}" if env else None)


class CachedBackend:
    """Wraps a backend; answers repeated requests from disk.

    Parameters
    ----------
    backend : Backend
        The backend asked on a cache miss.
    directory : str or Path, optional
        Cache folder; defaults to :func:`cache_dir`.
    """

    def __init__(self, backend: Backend, directory: str | Path | None = None):
        self.backend = backend
        self.directory = Path(directory) if directory else cache_dir()
        self.name, self.model, self.params = backend.name, backend.model, backend.params
        self.adapter = getattr(backend, "adapter", None)  # a head adapter checks the prompt it reads

    def key(self, messages: Messages, schema: dict) -> str:
        """The cache key of a request (hex sha256)."""
        payload = json.dumps([self.name, self.model, messages, schema, self.params], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def complete(self, messages: Messages, schema: dict) -> Reply:
        path = self.directory / f"{self.key(messages, schema)}.json"
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
                return Reply(text=str(stored["text"]), prompt_tokens=int(stored["prompt_tokens"]),
                             completion_tokens=int(stored["completion_tokens"]), seconds=0.0, cached=True,
                             cache_key=str(path))
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged entry is simply asked again
        reply = self.backend.complete(messages, schema)
        if not reply.text.strip() or len(reply.text) > MAX_STORED_CHARS:
            return reply
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                                   "completion_tokens": reply.completion_tokens}))
        os.replace(tmp, path)
        reply.cache_key = str(path)
        return reply

    def count_tokens(self, messages: Messages) -> int:
        return self.backend.count_tokens(messages)


def discard(reply: Reply) -> None:
    """Remove the cache entry of a reply that turned out unusable, so a rerun asks the model again."""
    if reply.cache_key:
        Path(reply.cache_key).unlink(missing_ok=True)
