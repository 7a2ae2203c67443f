"""Per-line hidden states through transformers (torch): the reader of heads trained *through* the model
(``agent3d tune --method prompt-head|lora-head``), whose prompt-tuning tokens or LoRA weights change the states.

The prompt is the chat template's text, tokenized by the model's own tokenizer (the ids are checked against the
template's, so the model reads exactly what ``--backend transformers`` sends); a line's state is the last decoder
layer after the final norm (``hidden_states[-1]``, the states the language-model head reads) at the line's last
token, as :class:`agent3d.llm.states.LineStateReader` reads it with llama.cpp. Virtual tokens of prompt tuning sit
before the prompt, so every position moves by their number.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agent3d.llm.base import BackendError, Messages
from agent3d.llm.states import line_ends
from agent3d.llm.transformers import (attach_adapter, chat_ids, load_base, model_identity, pick_device, prompt_format,
                                     prompt_text)

LAYER = "last decoder layer, after the final norm (transformers hidden_states[-1])"


def line_positions(tokenizer, messages: Messages, ids: list[str]) -> tuple[list[int], np.ndarray]:
    """The prompt's token ids and the index of the token holding the last character of each id's line.

    Parameters
    ----------
    tokenizer : transformers fast tokenizer
    messages : list of dict
        Chat messages; the last one shows the point lines.
    ids : list of str

    Returns
    -------
    tokens : list of int
        As :func:`agent3d.llm.transformers.chat_ids` gives them (generation prompt included).
    positions : ndarray of shape (len(ids),), int64

    Raises
    ------
    BackendError
        The tokenizer gives no character offsets, or tokenizing the formatted text gives other ids than the
        chat template.
    """
    text = prompt_text(tokenizer, messages)
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise BackendError("a head reads lines through a fast tokenizer (character offsets); this one has none") \
            from None
    tokens = list(encoded["input_ids"])
    if tokens != chat_ids(tokenizer, messages):
        raise BackendError("tokenizing the chat template's text does not give the template's token ids")
    ends = np.array([end for _, end in encoded["offset_mapping"]])
    return tokens, np.searchsorted(ends, line_ends(text, messages[-1]["content"], ids), side="right")


def prompt_shift(model) -> int:
    """How many virtual tokens a (peft) model puts before the prompt: 0 without prompt tuning."""
    config = getattr(model, "peft_config", {}).get("default")
    return int(getattr(config, "num_virtual_tokens", 0) or 0) if config is not None and \
        str(getattr(config, "peft_type", "")).endswith("PROMPT_TUNING") else 0


def last_states(model, tokens: list[int], positions: np.ndarray):
    """``hidden_states[-1]`` at ``positions`` (moved by the virtual tokens): a tensor of shape
    (len(positions), n_embd), with gradients when the caller's mode allows them."""
    import torch

    ids = torch.tensor([tokens], device=model.device)
    hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states[-1]
    return hidden[0, torch.as_tensor(positions, device=model.device) + prompt_shift(model)]


class TorchLineReader:
    """A transformers model (with a PEFT adapter trained with a head, if given) that returns one state per line.

    Parameters
    ----------
    model : str or Path, optional
        A ``.gguf`` file or a Hugging Face folder; the embedded SmolLM2-135M by default.
    adapter : str or Path, optional
        A folder holding the PEFT weights of ``prompt-head`` / ``lora-head`` tuning.
    device : {"auto", "cpu", "cuda"}, default "auto"

    Attributes
    ----------
    model : str
        Name of the base model.
    sha256 : str
        Hex sha256 of the base model's weights.
    format : {"chat-template", "plain-v1"}
        How messages become the prompt.

    Raises
    ------
    InputError
        A model or adapter that cannot be loaded.
    BackendError
        The ``tune`` extra is missing.
    """

    name = "transformers"

    def __init__(self, model: str | Path | None = None, adapter: str | Path | None = None, device: str = "auto"):
        identity = model_identity(model)
        base, self.tokenizer = load_base(identity, pick_device(device))
        self.network = attach_adapter(base, adapter) if adapter else base.eval()
        self.model, self.sha256, self.format = identity.name, identity.sha256, prompt_format(self.tokenizer)

    def count_tokens(self, messages: Messages) -> int:
        return len(chat_ids(self.tokenizer, messages))

    def line_states(self, messages: Messages, ids: list[str]) -> tuple[np.ndarray, int, float]:
        """States of shape (len(ids), n_embd), float32, the tokens read and the seconds taken (see
        :meth:`agent3d.llm.states.LineStateReader.line_states`)."""
        import torch

        start = time.perf_counter()
        tokens, positions = line_positions(self.tokenizer, messages, ids)
        with torch.inference_mode():
            states = last_states(self.network, tokens, positions).float().cpu().numpy()
        return states, len(tokens), time.perf_counter() - start
