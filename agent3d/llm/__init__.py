"""Language-model backends behind one small interface (:class:`agent3d.llm.base.Backend`)."""

from __future__ import annotations

from agent3d.llm.base import Backend, BackendError
from agent3d.llm.cache import CachedBackend


def make_backend(name: str, model: str | None, base_url: str | None, use_cache: bool) -> Backend:
    """Build the chosen backend, wrapped in the response cache unless ``use_cache`` is False.

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
        backend = OpenAIBackend(model, base_url=base_url)
    else:
        from agent3d.llm.llama_cpp import LlamaCppBackend

        backend = LlamaCppBackend(model)
    return CachedBackend(backend) if use_cache else backend
