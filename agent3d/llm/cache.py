"""A disk cache of replies, so a rerun of the same prompt costs nothing.

Keyed by sha256 of (backend, model, messages, schema, decoding parameters). One JSON file per
reply under ``$AGENT3D_CACHE_DIR`` (default ``~/.cache/agent3d/llm``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from agent3d.llm.base import Backend, Messages, Reply


def default_cache_dir() -> Path:
    """``$AGENT3D_CACHE_DIR`` if set, else ``~/.cache/agent3d/llm``."""
    env = os.environ.get("AGENT3D_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "agent3d" / "llm"


class CachedBackend:
    """Wraps a backend; answers repeated requests from disk.

    Parameters
    ----------
    backend : Backend
        The backend asked on a cache miss.
    directory : str or Path, optional
        Cache folder; defaults to :func:`default_cache_dir`.
    """

    def __init__(self, backend: Backend, directory: str | Path | None = None):
        self.backend = backend
        self.directory = Path(directory) if directory else default_cache_dir()
        self.name, self.model, self.params = backend.name, backend.model, backend.params

    def key(self, messages: Messages, schema: dict) -> str:
        """The cache key of a request (hex sha256)."""
        payload = json.dumps([self.name, self.model, messages, schema, self.params], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def complete(self, messages: Messages, schema: dict) -> Reply:
        path = self.directory / f"{self.key(messages, schema)}.json"
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
                return Reply(text=stored["text"], prompt_tokens=stored["prompt_tokens"],
                             completion_tokens=stored["completion_tokens"], seconds=0.0, cached=True)
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry is simply asked again
        reply = self.backend.complete(messages, schema)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                                   "completion_tokens": reply.completion_tokens}))
        os.replace(tmp, path)
        return reply

    def count_tokens(self, messages: Messages) -> int:
        return self.backend.count_tokens(messages)
