"""The plain prompt format, for models without a chat template (pretrained models such as Gemma 3 270M, many user
GGUFs).

Format ``plain-v1``: every message is one block, blocks separated by a blank line; a system or user message is its
text as written; an assistant message (a few-shot answer, a reply fed back with its error) is the answer cue, a
space and its text; the prompt ends with the answer cue, after which the model writes its JSON::

    {system text}

    {user text}

    Answer (JSON):

Generation, token counting, tiling and the per-line state reader use this one function, through llama.cpp
(registered as a llama-cpp-python chat format) and through transformers alike; a model with a chat template uses
its template. The format a backend used is part of its ``params`` (the reply cache key and the run records) and of
a head adapter's record.
"""

from __future__ import annotations

from agent3d.llm.base import Messages

PLAIN_FORMAT = "plain-v1"
CHAT_TEMPLATE = "chat-template"
ANSWER_CUE = "Answer (JSON):"


def plain_prompt(messages: Messages) -> str:
    """The ``plain-v1`` text of chat ``messages`` (roles ``system``, ``user``, ``assistant``), ending with the cue.

    Parameters
    ----------
    messages : list of dict
        ``{"role", "content"}`` each.

    Returns
    -------
    str
    """
    blocks = [f"{ANSWER_CUE} {m['content']}" if m["role"] == "assistant" else m["content"] for m in messages]
    return "\n\n".join([*blocks, ANSWER_CUE])


def llama_cpp_plain_format() -> str:
    """Register ``plain-v1`` with llama-cpp-python's chat formats (once) and return its name; chat completion then
    formats messages with :func:`plain_prompt` and applies the JSON-schema grammar as for any format."""
    from llama_cpp import llama_chat_format as formats

    if PLAIN_FORMAT not in formats.LlamaChatCompletionHandlerRegistry()._chat_handlers:
        @formats.register_chat_format(PLAIN_FORMAT)
        def _plain(messages, **kwargs) -> formats.ChatFormatterResponse:
            return formats.ChatFormatterResponse(prompt=plain_prompt(messages))
    return PLAIN_FORMAT
