"""Local backend: any GGUF model through llama-cpp-python, with JSON-schema constrained decoding.

Without ``--model`` it runs the embedded default, SmolLM2-135M-Instruct (Q4_1 GGUF); ``--model gemma-3-270m`` the
second embedded model (:mod:`agent3d.llm.embedded`); nothing is ever downloaded. A GGUF without a chat template
reads the plain prompt format (:mod:`agent3d.llm.plain_format`).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
import time
from contextlib import contextmanager
from pathlib import Path

from agent3d.file_checks import InputError
from agent3d.llm.base import BackendError, Messages, Reply, file_sha256
from agent3d.llm.embedded import model_path as resolve_model
from agent3d.llm.greedy_grammar import greedy_grammar_llama
from agent3d.llm.plain_format import CHAT_TEMPLATE, llama_cpp_plain_format, plain_prompt
from agent3d.llm.status import report, status_open

CHAT_OVERHEAD_TOKENS = 4  # role markers around each message in ChatML-style templates


def advertises_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports Intel AMX tiles (``amx_tile`` in /proc/cpuinfo; False where it cannot be read)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            return any(line.startswith("flags") and " amx_tile" in line for line in handle)
    except OSError:
        return False


@contextmanager
def model_loading():
    """Load llama.cpp models without its extra weight buffers (AMX tiles, repacked layouts) on a CPU that
    advertises AMX: where the kernel or a sandbox does not grant the AMX state, llama.cpp's AMX matrix product
    dies with SIGILL on the first prompt of more than a few tokens (seen on a Xeon under a sandbox: every detect
    crashed). Elsewhere the defaults are kept. llama-cpp-python reads ``llama_model_default_params`` when a model
    is built and offers no argument for ``use_extra_bufts``, so it is wrapped for the duration of the load."""
    import llama_cpp.llama as module

    if not advertises_amx():
        yield
        return
    original = module.llama_cpp.llama_model_default_params

    def without_extra_buffers():
        params = original()
        params.use_extra_bufts = False
        return params

    with _LOADING:
        module.llama_cpp.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            module.llama_cpp.llama_model_default_params = original


_LOADING = threading.Lock()
GGML_LOG_LEVEL_ERROR, GGML_LOG_LEVEL_CONT = 4, 5  # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5
_LOG_STATE: dict = {}


def quiet_llama_log() -> None:
    """Let llama.cpp print its errors only (once per process). llama-cpp-python's own log callback reads ggml's
    levels one off (its WARN is ggml's INFO, its ERROR ggml's WARN), so with ``verbose=False`` it prints warnings
    such as Gemma's "using full-size SWA cache" on every load and hides errors."""
    import ctypes

    import llama_cpp

    if "callback" in _LOG_STATE:
        return

    @llama_cpp.llama_log_callback
    def errors_only(level: int, text: bytes, user_data) -> None:
        _LOG_STATE["error"] = level == GGML_LOG_LEVEL_ERROR or (level == GGML_LOG_LEVEL_CONT and _LOG_STATE.get("error"))
        if _LOG_STATE["error"]:
            sys.stderr.write(text.decode("utf-8", "replace"))

    _LOG_STATE["callback"] = errors_only  # kept alive for as long as llama.cpp may call it
    llama_cpp.llama_log_set(errors_only, ctypes.c_void_p(0))


def load_llama(llama_class, model_path: str | Path | None = None, **options):
    """A llama.cpp model of ``llama_class`` (``llama_cpp.Llama`` or a subclass) loaded under :func:`model_loading`.

    Parameters
    ----------
    llama_class : type
    model_path : str or Path, optional
        A ``.gguf`` file or an embedded model's name (:mod:`agent3d.llm.embedded`); the embedded
        SmolLM2-135M-Instruct by default.
    **options
        Passed to the constructor (``verbose`` is always False).

    Returns
    -------
    llm : llama_cpp.Llama
    path : Path

    Raises
    ------
    InputError
        A missing or unloadable file.
    BackendError
        An embedded model that is not installed.
    """
    path = resolve_model(model_path)
    if not path.is_file():
        raise InputError(path, "no such model file")
    quiet_llama_log()
    try:
        with model_loading():
            llm = llama_class(model_path=str(path), verbose=False, **options)
    except (ValueError, RuntimeError) as error:
        raise InputError(path, f"not a loadable GGUF model ({error})") from None
    _LOADED.add(llm)
    return llm, path


_LOADED: weakref.WeakSet = weakref.WeakSet()  # models still alive at exit are closed while llama_cpp still exists


@atexit.register
def _close_loaded() -> None:
    for llm in list(_LOADED):
        llm.close()  # otherwise Llama.__del__ runs after the interpreter cleared llama_cpp and prints a traceback


class ChatPrompt:
    """How llama-cpp-python's chat completion turns messages into tokens for a loaded model: through the GGUF's own
    chat template, or, where the file has none (a pretrained model), the plain format
    (:mod:`agent3d.llm.plain_format`), which is then also the format the model generates with.

    Parameters
    ----------
    llm : llama_cpp.Llama

    Attributes
    ----------
    format : {"chat-template", "plain-v1"}
    """

    def __init__(self, llm):
        from llama_cpp.llama_chat_format import ChatFormatterResponse, Jinja2ChatFormatter

        self._llm = llm
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            self.format = CHAT_TEMPLATE
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=self._token_text(llm.token_eos()),
                                                  bos_token=self._token_text(llm.token_bos()))
        else:
            self.format = llm.chat_format = llama_cpp_plain_format()
            self._formatter = lambda messages: ChatFormatterResponse(prompt=plain_prompt(messages))

    def _token_text(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    def tokens(self, messages: Messages) -> list[int]:
        """The prompt's tokens as chat completion builds them (the opening of the answer included)."""
        formatted = self._formatter(messages=messages)
        return self._llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special,
                                  special=True)


class LlamaCppBackend:
    """A GGUF model run in-process by llama.cpp.

    Parameters
    ----------
    model_path : str or Path, optional
        A ``.gguf`` file or an embedded model's name; the embedded SmolLM2-135M-Instruct by default.
    n_ctx : int, default 8192
        Context window in tokens (SmolLM2 was trained with 8192).
    max_tokens : int, default 768
        Longest reply.
    temperature : float, default 0.0
        0 gives greedy, repeatable replies; the JSON-schema grammar is then asked about the argmax first
        (:mod:`agent3d.llm.greedy_grammar`: the same tokens, about 10 ms a token faster on 2 cores).
    seed : int, default 0
    n_threads : int, optional
        CPU threads; defaults to the number of cores.

    Raises
    ------
    InputError
        ``model_path`` is missing or not a loadable GGUF file.
    BackendError
        An embedded model that is not installed.
    """

    name = "llama-cpp"

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 8192, max_tokens: int = 768,
                 temperature: float = 0.0, seed: int = 0, n_threads: int | None = None):
        try:
            Llama = greedy_grammar_llama()
        except ImportError:
            raise BackendError("llama-cpp-python is not installed (pip install 'agent3d[local]')") from None
        self._llm, path = load_llama(Llama, model_path, n_ctx=n_ctx, seed=seed, n_threads=n_threads or os.cpu_count())
        self.prompt = ChatPrompt(self._llm)
        self.model = path.name
        self.params = {"n_ctx": n_ctx, "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                       "sha256": file_sha256([path]),  # two different model.gguf files never share replies
                       "format": self.prompt.format}

    def complete(self, messages: Messages, schema: dict) -> Reply:
        """One reply, streamed token by token so the live status (:mod:`agent3d.llm.status`) can follow it."""
        start = time.perf_counter()
        if status_open():  # counting the prompt's tokens costs a tokenization: only for someone watching
            report(prompt_tokens=self.count_tokens(messages))
        pieces = []
        try:
            for chunk in self._llm.create_chat_completion(
                    messages=messages, response_format={"type": "json_object", "schema": schema},
                    temperature=self.params["temperature"], max_tokens=self.params["max_tokens"],
                    seed=self.params["seed"], stream=True):
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    pieces.append(piece)
                    report(generated=len(pieces))
        except (ValueError, RuntimeError) as error:
            raise BackendError(f"llama.cpp failed: {error}") from None
        text = "".join(pieces)
        completion = len(self._llm.tokenize(text.encode(), add_bos=False, special=False)) if text else 0
        return Reply(text=text, prompt_tokens=max(self._llm.n_tokens - completion, 0), completion_tokens=completion,
                     seconds=time.perf_counter() - start)

    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens: exact in the plain format; with a chat template, each message's tokens plus the role
        markers of ChatML-style templates."""
        if self.prompt.format != CHAT_TEMPLATE:
            return len(self.prompt.tokens(messages))
        return sum(len(self._llm.tokenize(m["content"].encode(), add_bos=False, special=False))
                   + CHAT_OVERHEAD_TOKENS for m in messages)
