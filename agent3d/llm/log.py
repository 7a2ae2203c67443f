"""A log of every request and reply, like ``llm logs``: what the model saw and what it said.

One JSON line per request in ``DIR/llm_log.jsonl``: time, backend, model, messages, reply text, tokens,
seconds, and whether the reply came from the cache (or the error, when there was none). The API key is
never part of a request's messages or of anything logged.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from agent3d.file_checks import make_folder
from agent3d.llm.base import Backend, BackendError, Messages, Reply, redact
from agent3d.llm.cache import MAX_STORED_CHARS

LOG_NAME = "llm_log.jsonl"


class LoggedBackend:
    """Wraps a backend (typically the cached one) and appends every exchange to ``directory/llm_log.jsonl``.

    Parameters
    ----------
    backend : Backend
    directory : str or Path
        Created if missing. Each line is written with one ``write`` on a file opened for appending, so
        parallel evaluation workers do not interleave lines.
    """

    def __init__(self, backend: Backend, directory: str | Path):
        self.backend = backend
        self.path = Path(directory) / LOG_NAME
        make_folder(directory)
        self.name, self.model, self.params = backend.name, backend.model, backend.params
        self.adapter = getattr(backend, "adapter", None)  # a head adapter checks the prompt it reads

    def complete(self, messages: Messages, schema: dict) -> Reply:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backend": self.name, "model": self.model,
                 "messages": messages}
        try:
            reply = self.backend.complete(messages, schema)
        except BackendError as error:
            self._append({**entry, "error": redact(str(error))})
            raise
        text = reply.text if len(reply.text) <= MAX_STORED_CHARS else reply.text[:MAX_STORED_CHARS] + " [truncated]"
        self._append({**entry, "reply": text, "retries": reply.retries, "prompt_tokens": reply.prompt_tokens,
                      "completion_tokens": reply.completion_tokens, "seconds": round(reply.seconds, 3),
                      "cached": reply.cached})
        return reply

    def count_tokens(self, messages: Messages) -> int:
        return self.backend.count_tokens(messages)

    def _append(self, entry: dict) -> None:
        line = (json.dumps(entry) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)
