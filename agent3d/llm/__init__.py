"""Language-model backends behind one small interface (:class:`agent3d.llm.base.Backend`), built from a
:class:`agent3d.config.BackendConfig` by the builder registered under the backend's name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent3d.config import BackendConfig
from agent3d.file_checks import check_folder
from agent3d.llm.adapters import Adapter, check_weights, resolve
from agent3d.llm.base import Backend
from agent3d.llm.cache import CachedBackend, cache_dir
from agent3d.llm.head import HeadBackend
from agent3d.llm.llama_cpp import LlamaCppBackend
from agent3d.llm.log import LoggedBackend
from agent3d.llm.openai import OpenAIBackend
from agent3d.llm.states import LineStateReader
from agent3d.llm.torch_states import TorchLineReader
from agent3d.llm.transformers import TransformersBackend, model_identity


def make_backend(config: BackendConfig, log_dir: str | Path | None = None) -> Backend:
    """The backend ``config`` describes, wrapped in the response cache unless ``config.no_cache``, and in the
    request log (:class:`agent3d.llm.log.LoggedBackend`) when ``log_dir`` is given.

    The adapter (:mod:`agent3d.llm.adapters`), the cache folder and the log folder are checked before a model loads;
    an option the backend cannot use is refused (:meth:`BackendConfig.check`).

    Raises
    ------
    InputError
        A ``--model`` that cannot be loaded (or none with ``openai``); an adapter or option that does not fit the
        backend; a cache or log folder that cannot be made.
    agent3d.llm.base.BackendError
        A missing extra, a missing API key.
    """
    config.check()
    adapter = resolve(config.backend, config.adapter, config.model)
    cache = None if config.no_cache else cache_dir()  # nothing is created until there is something to write
    log_dir = check_folder(log_dir) if log_dir else None
    backend = BUILDERS[config.backend](config, adapter)
    backend = CachedBackend(backend, cache) if cache else backend
    return LoggedBackend(backend, log_dir) if log_dir else backend


def _llama_cpp(config: BackendConfig, adapter: Adapter | None) -> Backend:
    """A GGUF through llama.cpp: generation, or a head reading the frozen model's states."""
    return HeadBackend(adapter.head, LineStateReader(config.model)) if adapter else LlamaCppBackend(config.model)


def _openai(config: BackendConfig, adapter: Adapter | None) -> Backend:
    """A hosted or OpenAI-compatible model."""
    return OpenAIBackend(config.model, base_url=config.base_url, timeout=config.timeout,
                         retry_seconds=config.retry_seconds)


def _transformers(config: BackendConfig, adapter: Adapter | None) -> Backend:
    """A model through transformers: generation with or without a PEFT adapter, or a head on the adapted model's
    states (``peft-head``; base model and weights checked before the model loads)."""
    if adapter is None or adapter.kind == "peft":
        return TransformersBackend(config.model, adapter.folder if adapter else None, device=config.device)

    identity = model_identity(config.model)
    adapter.head.check_base(identity.name, identity.sha256)
    check_weights(adapter.folder)
    return HeadBackend(adapter.head, TorchLineReader(config.model, adapter.folder, config.device), adapter.digest)


BUILDERS: dict[str, Callable[[BackendConfig, Adapter | None], Backend]] = {
    "llama-cpp": _llama_cpp, "openai": _openai, "transformers": _transformers}
