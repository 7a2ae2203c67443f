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
    ``openai`` backend; the local backend has no network to wait for. ``adapter`` is a folder written by
    ``agent3d tune``, ``embedded`` (the one shipped) or ``none``: a head adapter with ``llama-cpp`` (read, not
    generated; :mod:`agent3d.llm.head`; by default the shipped head with the embedded model), a PEFT adapter with
    ``transformers`` (``device`` applies there); a hosted model refuses one.

    Raises
    ------
    InputError
        A ``--model`` file that cannot be loaded; an adapter that does not fit the backend.
    BackendError
        Missing extra, missing API key, ``openai`` without ``--model``.
    """
    if name == "openai":
        from agent3d.llm.openai import OpenAIBackend

        if not model:
            raise BackendError("--backend openai needs --model")
        refuse_hosted_adapter(adapter)
        backend = OpenAIBackend(model, base_url=base_url, timeout=timeout, retry_seconds=retry_seconds)
    elif name == "transformers":
        from agent3d.llm.transformers import TransformersBackend, resolve_adapter

        backend = TransformersBackend(model, resolve_adapter(None if adapter == "none" else adapter), device=device)
    else:
        from agent3d.llm.head import HeadBackend, resolve_head
        from agent3d.llm.llama_cpp import LlamaCppBackend

        head = resolve_head(adapter, model)
        backend = HeadBackend(head, model) if head else LlamaCppBackend(model)
    backend = CachedBackend(backend) if use_cache else backend
    return LoggedBackend(backend, log_dir) if log_dir else backend


def refuse_hosted_adapter(adapter: str | Path | None) -> None:
    """A hosted model's states cannot be read nor its weights adapted: refuse ``--adapter`` with ``openai``.

    Raises
    ------
    InputError
    """
    if adapter is not None and str(adapter) != "none":
        from agent3d.file_checks import InputError

        raise InputError("--adapter", "a hosted model (--backend openai) cannot apply an adapter: heads run with "
                                      "--backend llama-cpp, PEFT adapters with --backend transformers")
