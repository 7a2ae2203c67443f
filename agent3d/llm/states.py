"""Reading the model instead of asking it: one hidden state per point line of the prompt, from llama.cpp's
embedding mode (no pooling), with no torch.

The messages are formatted with the GGUF's own chat template (or, without one, the plain format of
:mod:`agent3d.llm.plain_format`) and tokenized exactly as llama-cpp-python's chat completion does (``add_bos``
unless the template added it, special tokens parsed), so the model reads the prompt ``detect`` would send. A line's
end is found by the bytes each token spells, whatever the tokenizer (byte-level BPE as SmolLM2's, SentencePiece as
Gemma's). llama.cpp returns, per token, the output of the last decoder layer after the final norm
(the states the language-model head reads). A point line's state is the state at its last token (the line's last
digit): in a causal model that token has attended to the whole line and everything before it, and to nothing
after it, so a line's state does not change when a later line does (tested).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from agent3d.file_checks import InputError
from agent3d.llm.base import BackendError, Messages, file_sha256
from agent3d.llm.llama_cpp import ChatPrompt, load_llama

LAYER = "last decoder layer, after the final norm (llama.cpp embedding output)"
POOLING = "last token of each point line"


class LineStateReader:
    """A GGUF model in llama.cpp's embedding mode that returns one state per point line (the reader of heads on the
    frozen model: its ``name`` is the backend's).

    Parameters
    ----------
    model_path : str or Path, optional
        A ``.gguf`` file or an embedded model's name; defaults to the embedded SmolLM2-135M-Instruct.
    n_ctx : int, default 8192
        Context (and batch) size in tokens: the longest prompt read in one pass.
    n_threads : int, optional
        CPU threads; defaults to the number of cores.
    lora : str or Path, optional
        A llama.cpp LoRA adapter (GGUF) applied to the model (a guidance reader's ``adapter.gguf``).

    Attributes
    ----------
    model : str
        File name of the model.
    sha256 : str
        Hex sha256 of the model file.
    n_embd : int
        Width of a state (576 for SmolLM2-135M, 640 for Gemma 3 270M).
    format : {"chat-template", "plain-v1"}
        How messages become the prompt.

    Raises
    ------
    InputError
        ``model_path`` is missing or not a loadable GGUF file.
    BackendError
        llama-cpp-python (or, without ``model_path``, the embedded model) is not installed.
    """

    name = "llama-cpp"

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 8192, n_threads: int | None = None,
                 lora: str | Path | None = None):
        try:
            import llama_cpp
        except ImportError:
            raise BackendError("llama-cpp-python is not installed (pip install 'agent3d[local]')") from None

        # a causal chat model's default pooling is none (one state per token); asking for it explicitly makes
        # llama.cpp print a warning on every load, so the default is checked instead
        adapter = {"lora_path": str(lora)} if lora else {}
        self._llm, path = load_llama(llama_cpp.Llama, model_path, embedding=True, n_ctx=n_ctx, n_batch=n_ctx,
                                     n_ubatch=min(n_ctx, 2048), n_threads=n_threads or os.cpu_count(), **adapter)
        if self._llm.pooling_type() != llama_cpp.LLAMA_POOLING_TYPE_NONE:
            raise InputError(path, "the model pools its states (an embedding model?); a head reads one state per "
                                   "token of a causal model")
        self._prompt = ChatPrompt(self._llm)
        self.model, self.sha256, self.n_ctx, self.format = path.name, file_sha256([path]), n_ctx, self._prompt.format
        self.n_embd = self._llm.n_embd()

    def tokens(self, messages: Messages) -> list[int]:
        """The prompt's tokens as llama-cpp-python's chat completion builds them (generation prompt included)."""
        return self._prompt.tokens(messages)

    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens of ``messages`` (what one pass reads)."""
        return len(self.tokens(messages))

    def line_states(self, messages: Messages, ids: list[str]) -> tuple[np.ndarray, int, float]:
        """The state at the last token of each point line of the last (user) message.

        Parameters
        ----------
        messages : list of dict
            Chat messages as ``detect`` sends them; the last one shows the point lines.
        ids : list of str
            Line ids (``"p0"`` ...), each the first word of one line of the last message.

        Returns
        -------
        states : ndarray of shape (len(ids), n_embd), float32
        n_tokens : int
            Tokens read.
        seconds : float

        Raises
        ------
        BackendError
            A prompt longer than ``n_ctx``, an id with no line, or a tokenization that does not map back to the
            text.
        """
        start = time.perf_counter()
        tokens = self.tokens(messages)
        if len(tokens) > self.n_ctx:
            raise BackendError(f"a prompt of {len(tokens)} tokens is over the reader's context of {self.n_ctx}")
        ends = self._line_end_tokens(tokens, messages[-1]["content"], ids)
        self._llm.reset()
        states = np.asarray(self._embed(tokens), dtype=np.float32)
        return states[ends], len(tokens), time.perf_counter() - start

    def text_state(self, text: str, last: int | None = None) -> np.ndarray:
        """The mean of the states of a text read alone (BOS, then its tokens; special tokens not parsed), or of its
        ``last`` tokens only: the model as a text encoder (:mod:`agent3d.guidance`).

        Returns
        -------
        ndarray of shape (n_embd,), float32

        Raises
        ------
        BackendError
            A text longer than ``n_ctx`` tokens.
        """
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) > self.n_ctx:
            raise BackendError(f"a text of {len(tokens)} tokens is over the reader's context of {self.n_ctx}")
        self._llm.reset()
        return np.asarray(self._embed(tokens), dtype=np.float32)[1:][-(last or len(tokens)):].mean(axis=0)

    def _embed(self, tokens: list[int]) -> list[list[float]]:
        """One state per token: llama-cpp-python's ``embed`` over these exact tokens (it tokenizes text itself,
        without special tokens, so its tokenizer is handed the ids through a one-call substitute)."""
        llm = self._llm
        original = llm.tokenize
        llm.tokenize = lambda *args, **kwargs: tokens
        try:
            return llm.embed("", truncate=False)
        except (ValueError, RuntimeError) as error:
            raise BackendError(f"llama.cpp embedding failed: {error}") from None
        finally:
            llm.tokenize = original

    def _line_end_tokens(self, tokens: list[int], content: str, ids: list[str]) -> np.ndarray:
        """Index of the token holding the last byte of each id's line within the prompt."""
        pieces = [self._llm.detokenize([t], special=True) for t in tokens]
        ends = np.cumsum([len(p) for p in pieces])  # byte offset just past each token
        return np.searchsorted(ends, line_ends(b"".join(pieces), content.encode("utf-8"), ids), side="right")


def line_ends(text: str | bytes, body: str | bytes, ids: list[str]) -> list[int]:
    """Offset (characters of a str, bytes of bytes) of the last character of each id's line in ``text``.

    Parameters
    ----------
    text : str or bytes
        The whole formatted prompt.
    body : str or bytes, as ``text``
        The message showing the point lines (each starts with its id and a space); its last occurrence in ``text``
        is used.
    ids : list of str

    Raises
    ------
    BackendError
        ``body`` is not in ``text`` verbatim, or an id has no line.
    """
    newline, space = ("\n", " ") if isinstance(text, str) else (b"\n", b" ")
    where = text.rfind(body)
    if where < 0:
        raise BackendError("the tokenized prompt does not contain the user message verbatim")
    found, offset = {}, 0
    for line in body.split(newline):
        word = line.split(space, 1)[0]
        found.setdefault(word if isinstance(word, str) else word.decode("utf-8", "replace"),
                         where + offset + len(line) - 1)
        offset += len(line) + 1
    missing = [i for i in ids if i not in found]
    if missing:
        raise BackendError(f"no line for id '{missing[0]}' in the prompt")
    return [found[i] for i in ids]
