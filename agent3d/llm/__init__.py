"""Language-model backends behind one small interface (:class:`agent3d.llm.base.Backend`)."""

from __future__ import annotations

from pathlib import Path

from agent3d.llm.base import Backend, BackendError
from agent3d.llm.cache import CachedBackend
from agent3d.llm.log import LoggedBackend


def make_backend(name: str, model: str | None, base_url: str | None, use_cache: bool, timeout: float = 120.0,
                 retry_seconds: float = 60.0, log_dir: str | Path | None = None, adapter: str | Path | None = None,
                 device: str = "auto") -> Backend:
    """Build the chosen backend, wrapped in the response cache unless ``use_cache`` is False, and in the
    request log (:class:`agent3d.llm.log.LoggedBackend`) when ``log_dir`` is given.

    ``timeout`` (seconds per request) and ``retry_seconds`` (total time retries may add) apply to the
    ``openai`` backend; the local backend has no network to wait for. ``adapter`` (a folder written by
    ``agent3d tune``, or ``embedded`` for the one shipped) and ``device`` apply to ``transformers``.

    Raises
    ------
    InputError
        A ``--model`` file that cannot be loaded.
    BackendError
        Missing extra, missing API key, ``openai`` without ``--model``.
    """
    if name == "openai":
        from agent3d.llm.openai import OpenAIBackend

        if not model:
            raise BackendError("--backend openai needs --model")
        backend = OpenAIBackend(model, base_url=base_url, timeout=timeout, retry_seconds=retry_seconds)
    elif name == "transformers":
        from agent3d.llm.transformers import TransformersBackend, resolve_adapter

        backend = TransformersBackend(model, resolve_adapter(adapter), device=device)
    else:
        from agent3d.llm.llama_cpp import LlamaCppBackend

        if adapter:
            raise BackendError("--adapter needs --backend transformers")

        backend = LlamaCppBackend(model)
    backend = CachedBackend(backend) if use_cache else backend
    return LoggedBackend(backend, log_dir) if log_dir else backend
