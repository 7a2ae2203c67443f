"""Local backend through Hugging Face transformers, with an optional PEFT adapter (prompt tuning or LoRA).

The base model is the embedded GGUF (transformers dequantizes it on load, ``gguf_file=``), any ``.gguf``
file, or a Hugging Face causal-LM folder. Replies are constrained to the suspect JSON schema by xgrammar
(Dong et al., "XGrammar", MLSys 2025; the grammar engine of vLLM and SGLang), so ids can only be those
shown; the agent still validates every reply. Needs the ``tune`` extra (torch, transformers, peft, xgrammar).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

from agent3d.file_checks import InputError
from agent3d.llm.adapters import adapter_digest, check_adapter
from agent3d.llm.base import BackendError, Messages, Reply, file_sha256
from agent3d.llm.embedded import model_path
from agent3d.llm.plain_format import CHAT_TEMPLATE, PLAIN_FORMAT, plain_prompt
from agent3d.llm.status import report, status_open




@dataclass(frozen=True)
class ModelIdentity:
    """Which base model: its path, a display name and the sha256 of its weights.

    Attributes
    ----------
    path : str
        The ``.gguf`` file or the Hugging Face folder.
    name : str
        File or folder name.
    sha256 : str
        Hex sha256 of the GGUF file, or of the folder's ``*.safetensors`` / ``*.bin`` files in name order.
    """

    path: str
    name: str
    sha256: str


def model_identity(model: str | Path | None) -> ModelIdentity:
    """Resolve ``--model`` (a path, an embedded model's name, None: the default embedded GGUF) and hash its weights.

    Raises
    ------
    InputError
        A path that is neither a file nor a folder holding weights.
    BackendError
        An embedded model that is not installed.
    """
    path = model_path(model)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted([*path.glob("*.safetensors"), *path.glob("*.bin")])
        if not files:
            raise InputError(path, "not a Hugging Face model folder (no *.safetensors or *.bin weights)")
    else:
        raise InputError(path, "no such model file or folder")
    return ModelIdentity(path=str(path), name=path.name, sha256=file_sha256(files))


def pick_device(device: str = "auto") -> str:
    """``cuda`` when asked for or available under ``auto``, else ``cpu``.

    Raises
    ------
    BackendError
        ``cuda`` asked for but not available.
    """
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BackendError("--device cuda asked for, but torch sees no CUDA device")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


_BASES: dict = {}  # per process: (sha256, device) -> the pristine base model and its tokenizer


def load_base(identity: ModelIdentity, device: str = "cpu"):
    """The base causal LM (float32) and its tokenizer; a fresh copy of a model this process loaded before
    (reading a GGUF costs half a minute; an adapter changes the copy it is attached to, never the original).

    Raises
    ------
    InputError
        Weights that transformers cannot load.
    BackendError
        The ``tune`` extra is not installed.
    """
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise BackendError("the transformers backend needs the tune extra (pip install 'agent3d[tune]')") from None
    if (identity.sha256, device) in _BASES:
        model, tokenizer = _BASES[(identity.sha256, device)]
        return copy.deepcopy(model), tokenizer
    path = Path(identity.path)
    where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name} if path.is_file() \
        else {"pretrained_model_name_or_path": str(path)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(**where)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype="float32").to(device)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise InputError(path, f"transformers cannot load this model ({str(error).splitlines()[0][:200]})") from None
    model.eval()
    _BASES[(identity.sha256, device)] = (model, tokenizer)
    return copy.deepcopy(model), tokenizer


def attach_adapter(model, adapter: str | Path):
    """Wrap ``model`` with the PEFT adapter in ``adapter`` (checked by :func:`check_adapter` first)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).eval()


def prompt_format(tokenizer) -> str:
    """``chat-template`` where the tokenizer has one, else ``plain-v1`` (:mod:`agent3d.llm.plain_format`)."""
    return CHAT_TEMPLATE if getattr(tokenizer, "chat_template", None) else PLAIN_FORMAT


def prompt_text(tokenizer, messages: Messages) -> str:
    """The prompt's text: the chat template with the assistant turn's opening, or the BOS token's text and the plain
    format (as llama.cpp reads a GGUF without a template)."""
    if prompt_format(tokenizer) == CHAT_TEMPLATE:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return (tokenizer.bos_token or "") + plain_prompt(messages)


def chat_ids(tokenizer, messages: Messages) -> list[int]:
    """Token ids of the prompt of ``messages`` (:func:`prompt_text`), followed by the answer's opening."""
    if prompt_format(tokenizer) != CHAT_TEMPLATE:
        return list(tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"])
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a BatchEncoding in transformers 5


class SchemaDecoder:
    """Greedy decoding constrained to a JSON schema with xgrammar, on a loaded (possibly PEFT) model.

    Parameters
    ----------
    model : transformers or peft causal LM
    tokenizer : transformers tokenizer
    max_tokens : int, default 256
        Longest reply, in tokens.
    """

    def __init__(self, model, tokenizer, max_tokens: int = 256):
        import xgrammar

        self.model, self.tokenizer, self.max_tokens = model, tokenizer, max_tokens
        vocab_size = model.get_output_embeddings().weight.shape[0] if hasattr(model, "get_output_embeddings") \
            else len(tokenizer)
        self._xgr = xgrammar
        self._compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer,
                                                                                          vocab_size=vocab_size))

    def generate(self, messages: Messages, schema: dict) -> tuple[str, int, int]:
        """Reply text, prompt tokens and completion tokens for ``messages``."""
        import torch

        grammar = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        ids = torch.tensor([chat_ids(self.tokenizer, messages)], device=self.model.device)
        streamer = None
        if status_open():  # the live status follows the tokens as they come
            report(prompt_tokens=int(ids.shape[1]))
            streamer = _StatusStreamer()
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_tokens, streamer=streamer,
                                      logits_processor=[self._xgr.contrib.hf.LogitsProcessor(grammar)],
                                      pad_token_id=self.tokenizer.eos_token_id)
        new = out[0, ids.shape[1]:].tolist()
        return self.tokenizer.decode(new, skip_special_tokens=True), int(ids.shape[1]), len(new)


class _StatusStreamer:
    """A ``transformers`` streamer (``put``/``end``) that reports generated tokens to the live status; ``generate``
    puts the prompt first, then each new token."""

    def __init__(self):
        self.puts = 0

    def put(self, value) -> None:
        self.puts += 1
        if self.puts > 1:
            report(generated=self.puts - 1)

    def end(self) -> None:
        pass


class TransformersBackend:
    """A base model run by transformers, optionally with a tuned PEFT adapter.

    Parameters
    ----------
    model : str or Path, optional
        A ``.gguf`` file, a Hugging Face causal-LM folder or an embedded model's name; the embedded SmolLM2-135M GGUF
        by default.
    adapter : str or Path, optional
        A PEFT adapter folder written by ``agent3d tune`` (with its ``tune.json``).
    max_tokens : int, default 256
    device : {"auto", "cpu", "cuda"}, default "auto"

    Attributes
    ----------
    identity : ModelIdentity
    adapter : str or None
        ``NAME@HASH`` of the adapter, in results and the cache key.

    Raises
    ------
    InputError
        Unloadable model, or an adapter tuned on another base model.
    BackendError
        The ``tune`` extra is missing.
    """

    name = "transformers"

    def __init__(self, model: str | Path | None = None, adapter: str | Path | None = None, max_tokens: int = 256,
                 device: str = "auto"):
        self.identity = model_identity(model)
        if adapter:
            check_adapter(adapter, self.identity.name, self.identity.sha256)
        base, tokenizer = load_base(self.identity, pick_device(device))
        self.adapter = f"{Path(adapter).name}@{adapter_digest(adapter)}" if adapter else None
        if adapter:
            base = attach_adapter(base, adapter)
        self.tokenizer = tokenizer
        self.decoder = SchemaDecoder(base, tokenizer, max_tokens)
        self.model = self.identity.name
        self.params = {"max_tokens": max_tokens, "temperature": 0.0, "sha256": self.identity.sha256,
                       "adapter": self.adapter, "format": prompt_format(tokenizer)}

    def complete(self, messages: Messages, schema: dict) -> Reply:
        start = time.perf_counter()
        try:
            text, prompt_tokens, completion_tokens = self.decoder.generate(messages, schema)
        except RuntimeError as error:
            raise BackendError(f"transformers failed: {error}") from None
        return Reply(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                     seconds=time.perf_counter() - start)

    def count_tokens(self, messages: Messages) -> int:
        return len(chat_ids(self.tokenizer, messages))
