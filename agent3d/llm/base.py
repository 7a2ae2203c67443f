"""The backend interface: chat messages and a JSON schema in, reply text and token usage out.

Modelled on simonw/llm: one small protocol that every backend implements, so the agent never
knows which model it talks to. Parsing and validation of the reply belong to the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

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
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached: bool = False


class Backend(Protocol):
    """What every language-model backend provides.

    Attributes
    ----------
    name : str
        ``"llama-cpp"``, ``"openai"`` or ``"transformers"``.
    model : str
        Model name or GGUF file name.
    params : dict
        Decoding parameters that change the reply (temperature, max tokens, seed ...); part of
        the cache key.
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
