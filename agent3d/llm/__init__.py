"""Language-model backends behind one small interface (:class:`agent3d.llm.base.Backend`)."""

from __future__ import annotations

from pathlib import Path

from agent3d.llm.adapters import resolve
from agent3d.llm.base import Backend, BackendError
from agent3d.file_checks import check_folder
from agent3d.llm.cache import CachedBackend, cache_dir
from agent3d.llm.log import LoggedBackend


def make_backend(name: str, model: str | None, base_url: str | None, use_cache: bool, timeout: float = 120.0,
                 retry_seconds: float = 60.0, log_dir: str | Path | None = None, adapter: str | Path | None = None,
                 device: str = "auto") -> Backend:
    """Build the chosen backend, wrapped in the response cache unless ``use_cache`` is False, and in the
    request log (:class:`agent3d.llm.log.LoggedBackend`) when ``log_dir`` is given.

    ``timeout`` (seconds per request) and ``retry_seconds`` (total time retries may add) apply to the
    ``openai`` backend; the local backend has no network to wait for. ``adapter`` is a folder written by
    ``agent3d tune``, ``embedded`` (the one shipped) or ``none`` (:mod:`agent3d.llm.adapters`): a head with
    ``llama-cpp`` (read, not generated; by default the shipped head with the embedded model), a PEFT adapter with
    or without a head with ``transformers`` (``device`` applies there); a hosted model refuses one.

    Raises
    ------
    InputError
        A ``--model`` file that cannot be loaded; an adapter that does not fit the backend; a cache or log folder
        that cannot be made.
    BackendError
        Missing extra, missing API key, ``openai`` without ``--model``.
    """
    resolved = resolve(name, adapter, model)  # every adapter file, the cache and the log folder checked before a
    cache = cache_dir() if use_cache else None  # model loads; nothing is created until there is something to write
    log_dir = check_folder(log_dir) if log_dir else None
    if name == "openai":
        from agent3d.llm.openai import OpenAIBackend

        if not model:
            raise BackendError("--backend openai needs --model")
        backend = OpenAIBackend(model, base_url=base_url, timeout=timeout, retry_seconds=retry_seconds)
    elif name == "transformers" and resolved is not None and resolved.kind == "peft-head":
        from agent3d.llm.head import HeadBackend
        from agent3d.llm.torch_states import TorchLineReader
        from agent3d.llm.transformers import check_weights, model_identity

        identity = model_identity(model)
        resolved.head.check_base(identity.name, identity.sha256)
        check_weights(resolved.folder)
        backend = HeadBackend(resolved.head, TorchLineReader(model, resolved.folder, device))
    elif name == "transformers":
        from agent3d.llm.transformers import TransformersBackend

        backend = TransformersBackend(model, resolved.folder if resolved else None, device=device)
    else:
        from agent3d.llm.head import HeadBackend
        from agent3d.llm.llama_cpp import LlamaCppBackend
        from agent3d.llm.states import LineStateReader

        backend = HeadBackend(resolved.head, LineStateReader(model)) if resolved else LlamaCppBackend(model)
    backend = CachedBackend(backend, cache) if use_cache else backend
    return LoggedBackend(backend, log_dir) if log_dir else backend
