"""Hosted backend: OpenAI or any OpenAI-compatible server, through the official SDK.

The API key is read from ``OPENAI_API_KEY`` only and never written anywhere. Structured output
is asked for with ``response_format`` ``json_schema`` (strict); a server that refuses it gets
``json_object`` with the schema in the system message instead. Rate limits (429), server errors
(5xx), timeouts and dropped connections are retried with exponential backoff and full jitter,
bounded in count and in total time; a ``Retry-After`` header is honoured within those bounds. While the live
status is shown (:mod:`agent3d.llm.status`) replies are streamed, so it counts tokens as they come.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.request
from types import SimpleNamespace
from urllib.parse import urlsplit

from agent3d.base import redact_url
from agent3d.llm.base import BackendError, Messages, Reply, redact, register_secret
from agent3d.llm.status import report, status_open

CHARS_PER_TOKEN = 4.0  # fallback estimate when no tokenizer can be reached


class OpenAIBackend:
    """A chat model behind the OpenAI API.

    Parameters
    ----------
    model : str
        Model name as the server knows it.
    base_url : str, optional
        An OpenAI-compatible server (e.g. ``http://127.0.0.1:8000/v1``); default OpenAI's.
    timeout : float, default 120.0
        Seconds per request.
    max_retries : int, default 4
        Retries after a 429, a 5xx, a timeout or a dropped connection.
    retry_seconds : float, default 60.0
        Total time the retries may add; a retry that would pass it is not made.
    max_tokens : int, default 768
    temperature : float, default 0.0
    seed : int, default 0

    Raises
    ------
    BackendError
        ``OPENAI_API_KEY`` unset while talking to OpenAI itself, or the SDK is missing.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, timeout: float = 120.0, max_retries: int = 4,
                 retry_seconds: float = 60.0, max_tokens: int = 768, temperature: float = 0.0, seed: int = 0):
        import openai

        key = os.environ.get("OPENAI_API_KEY")
        if not key and base_url is None:
            raise BackendError("OPENAI_API_KEY is not set")
        register_secret(key)
        register_secret(urlsplit(base_url).netloc.rpartition("@")[0] if base_url else None)
        # a local OpenAI-compatible server needs no key, but the SDK wants a non-empty string
        self._client = openai.OpenAI(api_key=key or "unused", base_url=base_url, timeout=timeout, max_retries=0)
        self.max_retries, self.retry_seconds = max_retries, retry_seconds
        self._openai = openai
        self.base_url = base_url
        self.server = redact_url(base_url) or "OpenAI"  # what messages, records and logs name
        self.model = model
        self._decoding = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        self.params = {**self._decoding, "server": self.server}
        self.schema_mode = "json_schema"
        self._server_tokenizer = True

    def complete(self, messages: Messages, schema: dict) -> Reply:
        """One reply; the transport retries it took are in ``Reply.retries``.

        Raises
        ------
        BackendError
            The server cannot be reached, keeps failing, or answers something that is not a chat completion
            (the message names the server, with any credentials in its URL redacted).
        """
        start = time.perf_counter()
        retries = [0]  # per call, so concurrent calls (evaluate --concurrency) count their own
        try:
            out = None
            if self.schema_mode == "json_schema":
                try:
                    out = self._create(messages, {"type": "json_schema", "json_schema": {
                        "name": "suspect_list", "schema": schema, "strict": True}}, retries)
                except self._openai.APIStatusError as error:
                    if not refuses_json_schema(error):
                        raise
                    self.schema_mode = "json_object"
            if out is None:
                hint = f"\nThe JSON object must follow this JSON schema: {json.dumps(schema)}"
                patched = [{**messages[0], "content": messages[0]["content"] + hint}, *messages[1:]]
                # "schema" is llama.cpp's extension for constrained decoding; other servers ignore it
                out = self._create(patched, {"type": "json_object", "schema": schema}, retries)
        except self._openai.APIError as error:
            detail = redact(" ".join(str(getattr(error, "message", error)).split()))[:300]
            raise BackendError(f"{self.server}: {type(error).__name__}: {detail}") from None
        except (ValueError, TypeError, AttributeError) as error:  # a body the SDK could not decode
            raise BackendError(f"{self.server}: malformed response ({type(error).__name__}: "
                               f"{' '.join(str(error).split())[:120]})") from None
        try:
            text = out.choices[0].message.content or ""
            usage = out.usage
            tokens = (int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)) if usage else (0, 0)
        except (AttributeError, IndexError, TypeError, ValueError):
            shown = " ".join(str(out).split())[:120]
            raise BackendError(f"{self.server}: malformed response, not a chat completion ({shown})") from None
        if not isinstance(text, str):
            raise BackendError(f"{self.server}: malformed response (message content is {type(text).__name__})")
        return Reply(text=text, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                     seconds=time.perf_counter() - start, retries=retries[0])

    def _create(self, messages: Messages, response_format: dict, retries: list[int]):
        """One chat completion, retried on transient failures (see the module docstring); ``retries[0]`` counts
        the retries made."""
        transient = (self._openai.RateLimitError, self._openai.InternalServerError,
                     self._openai.APITimeoutError, self._openai.APIConnectionError)
        deadline = time.monotonic() + self.retry_seconds
        request = {"model": self.model, "messages": messages, "response_format": response_format, **self._decoding}
        for attempt in range(self.max_retries + 1):
            try:
                if status_open():
                    return self._streamed(request)
                return self._client.chat.completions.create(**request)
            except transient as error:
                delay = backoff(attempt, retry_after(error))
                refusal = isinstance(error, self._openai.APIStatusError) and refuses_json_schema(error)
                if refusal or attempt == self.max_retries or time.monotonic() + delay > deadline:
                    raise
                retries[0] += 1
                time.sleep(delay)

    def _streamed(self, request: dict):
        """The same completion, streamed: the live status follows it, and the chunks are put back together as
        one completion. A server that sends no usage in its stream (llama-cpp-python's) gets its tokens counted:
        the prompt by :meth:`count_tokens`, the reply by its content chunks (one token each on llama.cpp)."""
        prompt_tokens = self.count_tokens(request["messages"])
        report(prompt_tokens=prompt_tokens)
        pieces, usage, chunks = [], None, 0
        for chunk in self._client.chat.completions.create(**request, stream=True,
                                                          stream_options={"include_usage": True}):
            chunks += 1
            usage = chunk.usage or usage
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                report(generated=len(pieces))
        if not chunks:
            raise ValueError("the stream held no chunk")
        usage = usage or SimpleNamespace(prompt_tokens=prompt_tokens, completion_tokens=len(pieces))
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content="".join(pieces)))],
                               usage=usage)

    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens: the server's own tokenizer where it offers one (llama.cpp servers'
        ``/extras/tokenize``), else an estimate of one token per four characters. A server that has no
        tokenizer is asked once, not for every count."""
        text = "\n".join(m["content"] for m in messages)
        if self.base_url and self._server_tokenizer:
            root = self.base_url.rstrip("/").removesuffix("/v1")
            request = urllib.request.Request(f"{root}/extras/tokenize", data=json.dumps({"input": text}).encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10.0) as response:
                    return len(json.loads(response.read())["tokens"]) + 4 * len(messages)
            except (OSError, ValueError, KeyError, TypeError):  # URLError is an OSError
                self._server_tokenizer = False
        return math.ceil(len(text) / CHARS_PER_TOKEN) + 4 * len(messages)


def refuses_json_schema(error) -> bool:
    """True when a server's error says it does not accept ``response_format`` ``json_schema``
    (OpenAI-compatible servers answer 400, 422, or even 500 with a validation message)."""
    return error.status_code in (400, 422) or "json_schema" in str(getattr(error, "message", ""))


def backoff(attempt: int, retry_after_seconds: float | None = None, base: float = 0.5, cap: float = 8.0) -> float:
    """Seconds to wait before retry ``attempt + 1``: the server's ``Retry-After`` if given, else
    exponential backoff with full jitter, ``uniform(0, min(cap, base * 2**attempt))`` (AWS architecture
    blog, "Exponential Backoff and Jitter")."""
    if retry_after_seconds is not None:
        return min(max(retry_after_seconds, 0.0), cap)
    return random.uniform(0.0, min(cap, base * 2**attempt))


def retry_after(error) -> float | None:
    """The ``Retry-After`` header of an HTTP error, in seconds, when it holds a number."""
    response = getattr(error, "response", None)
    try:
        return float(response.headers.get("retry-after")) if response is not None else None
    except (TypeError, ValueError):
        return None
