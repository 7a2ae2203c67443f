"""The backend interface: chat messages and a JSON schema in, reply text and token usage out.

Modelled on simonw/llm: one small protocol that every backend implements, so the agent never
knows which model it talks to. Parsing and validation of the reply belong to the agent.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from agent3d.base import InputError


Messages = list[dict[str, str]]


class BackendError(RuntimeError):
    """The backend could not produce a reply (model missing, server down, retries spent).

    The CLI reports it in one line and exits with code 3.
    """


@dataclass
class Reply:
    """One completion.

    Attributes
    ----------
    text : str
        The raw reply content.
    prompt_tokens, completion_tokens : int
        Usage as counted by the backend's own tokenizer.
    seconds : float
        Wall time of the request (0 for a cache hit).
    cached : bool
        True when the reply came from the response cache.
    retries : int
        Transport retries it took (a 429, a 5xx, a timeout, a dropped connection), 0 for most.
    cache_key : str
        The cache entry it was stored under ("" when not cached), so an unusable reply can be discarded.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached: bool = False
    retries: int = 0
    cache_key: str = ""


class Backend(Protocol):
    """What every language-model backend provides.

    Attributes
    ----------
    name : str
        ``"llama-cpp"``, ``"openai"`` or ``"transformers"``.
    model : str
        Model name or GGUF file name.
    params : dict
        Everything besides the messages that changes the reply (decoding parameters, the weights'
        sha256, the server); part of the cache key.
    """

    name: str
    model: str
    params: dict

    def complete(self, messages: Messages, schema: dict) -> Reply:
        """Send chat messages, constraining the reply to the JSON ``schema`` where possible.

        Raises
        ------
        BackendError
            When no reply can be had.
        """

    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens these messages cost, with this backend's tokenizer."""


def response_schema(model: type[BaseModel]) -> dict:
    """A self-contained JSON schema for ``model``: ``$ref`` inlined, every property required,
    no additional properties — the form both llama.cpp grammars and OpenAI strict mode accept.
    """
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].split("/")[-1]])
            node = {k: inline(v) for k, v in node.items() if k not in ("title", "default")}
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a credential (an API key, a URL's ``user:password``) so that :func:`redact` removes it, and its
    base64 form (HTTP Basic auth), from every text that leaves the process."""
    import base64

    if value and len(value) >= 4:
        _SECRETS.add(value)
        _SECRETS.add(base64.b64encode(value.encode()).decode())
        if ":" in value:
            _SECRETS.update(part for part in value.split(":", 1) if len(part) >= 4)


def redact(text: str) -> str:
    """``text`` with every registered credential replaced by ``***`` (error messages, log lines, cached replies)."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


_DIGESTS: dict[tuple, str] = {}


def file_sha256(paths: list[Path]) -> str:
    """Hex sha256 of the files' bytes in order, computed once per process for unchanged files."""
    key = tuple((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        for path in paths:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def check_base_model(adapter: str | os.PathLike, trained: dict, name: str, sha256: str) -> None:
    """Refuse anything trained on a base model's states or weights (a head, a PEFT adapter, a guidance reader) when
    another model would read: one check and one message for every format, naming both models.

    Parameters
    ----------
    adapter : str or Path
        What the message names (the adapter's folder).
    trained : dict
        Its record's ``base_model`` (``name``, ``sha256``).
    name, sha256 : str
        The model that would read.

    Raises
    ------
    InputError
        The sha256 differs (or the record names none).
    """
    trained_sha = str(trained.get("sha256"))
    if trained_sha != sha256:
        raise InputError(adapter, f"trained on another base model ({str(trained.get('name'))[:60]}, sha256 "
                                  f"{trained_sha[:12]}); this one is {str(name)[:60]} ({sha256[:12]})")
