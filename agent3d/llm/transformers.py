"""Local backend through Hugging Face transformers, with an optional PEFT adapter (prompt tuning or LoRA).

The base model is the embedded GGUF (transformers dequantizes it on load, ``gguf_file=``), any ``.gguf``
file, or a Hugging Face causal-LM folder. Replies are constrained to the suspect JSON schema by xgrammar
(Dong et al., "XGrammar", MLSys 2025; the grammar engine of vLLM and SGLang), so ids can only be those
shown; the agent still validates every reply. Needs the ``tune`` extra (torch, transformers, peft, xgrammar).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from agent3d.file_checks import InputError, check_file
from agent3d.llm.base import BackendError, Messages, Reply, file_sha256
from agent3d.llm.llama_cpp import default_model_path
from agent3d.llm.status import report, status_open

ADAPTER_RECORD = "tune.json"


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
    """Resolve ``--model`` (None: the embedded GGUF) and hash its weights.

    Raises
    ------
    InputError
        A path that is neither a file nor a folder holding weights.
    BackendError
        No ``--model`` and the embedded model is not installed.
    """
    path = Path(model) if model else default_model_path()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted([*path.glob("*.safetensors"), *path.glob("*.bin")])
        if not files:
            raise InputError(path, "not a Hugging Face model folder (no *.safetensors or *.bin weights)")
    else:
        raise InputError(path, "no such model file or folder")
    return ModelIdentity(path=str(path), name=path.name, sha256=file_sha256(files))


def read_adapter_record(adapter: str | Path) -> dict:
    """The ``tune.json`` of an adapter folder.

    Raises
    ------
    InputError
        Missing folder, missing or unreadable ``tune.json``, or no PEFT ``adapter_config.json``.
    """
    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise InputError(folder, "not a PEFT adapter folder (no adapter_config.json)")
    try:
        record = json.loads((folder / ADAPTER_RECORD).read_text())
        sha = record["base_model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(folder / ADAPTER_RECORD, f"missing or invalid adapter record ({str(error)[:120]})") from None
    if not isinstance(sha, str) or len(sha) != 64:
        raise InputError(folder / ADAPTER_RECORD, "base_model.sha256 must be a 64-digit hex string")
    return record


def adapter_digest(adapter: str | Path, extra: str = "") -> str:
    """Short sha256 of an adapter's weights and configuration (and ``extra``, a head's digest; part of the cache
    key and run records)."""
    digest = hashlib.sha256(extra.encode())
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        file = Path(adapter) / name
        if file.is_file():
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


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


def check_adapter(adapter: str | Path, identity: ModelIdentity) -> None:
    """Check, before the base model loads (half a minute for a GGUF), that ``adapter`` is a PEFT folder tuned on
    this base model whose weights file is whole.

    Raises
    ------
    InputError
        Not an adapter folder, one tuned on another base model (sha256 differs), or an
        ``adapter_model.safetensors`` that is missing, truncated or not safetensors.
    """
    record = read_adapter_record(adapter)
    tuned_on = record["base_model"]["sha256"]
    if tuned_on != identity.sha256:
        name = str(record["base_model"].get("name"))[:60]
        raise InputError(adapter, f"adapter was tuned on another base model ({name} sha256 {tuned_on[:12]}), "
                                  f"not {identity.name} sha256 {identity.sha256[:12]}")
    check_weights(adapter)


def check_weights(adapter: str | Path) -> None:
    """Refuse a PEFT folder whose ``adapter_model.safetensors`` is missing, truncated or not safetensors, or that
    holds pickled ``adapter_model.bin`` weights (reading the header only).

    Raises
    ------
    InputError
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise InputError(folder, "not a PEFT adapter folder (no adapter_config.json)")
    if (folder / "adapter_model.bin").exists():
        raise InputError(folder / "adapter_model.bin", "pickled adapter weights are never loaded; save the adapter "
                                                       "as adapter_model.safetensors")
    weights = folder / "adapter_model.safetensors"
    try:
        with safe_open(check_file(weights), framework="numpy") as handle:
            handle.keys()
    except SafetensorError as error:
        raise InputError(weights, f"not readable safetensors ({str(error)[:120]})") from None


def attach_adapter(model, adapter: str | Path):
    """Wrap ``model`` with the PEFT adapter in ``adapter`` (checked by :func:`check_adapter` first)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).eval()


def chat_ids(tokenizer, messages: Messages) -> list[int]:
    """Token ids of the chat-templated ``messages`` followed by the assistant turn's opening."""
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
        A ``.gguf`` file or a Hugging Face causal-LM folder; the embedded SmolLM2-135M GGUF by default.
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
            check_adapter(adapter, self.identity)
        base, tokenizer = load_base(self.identity, pick_device(device))
        self.adapter = f"{Path(adapter).name}@{adapter_digest(adapter)}" if adapter else None
        if adapter:
            base = attach_adapter(base, adapter)
        self.tokenizer = tokenizer
        self.decoder = SchemaDecoder(base, tokenizer, max_tokens)
        self.model = self.identity.name
        self.params = {"max_tokens": max_tokens, "temperature": 0.0, "sha256": self.identity.sha256,
                       "adapter": self.adapter}

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


def shipped_adapter_dir() -> Path:
    """Folder of the adapter shipped inside the package (``--adapter embedded``)."""
    return Path(__file__).resolve().parent.parent / "tuning" / "adapters" / "embedded"


def resolve_adapter(adapter: str | Path | None) -> Path | None:
    """``embedded`` -> the shipped adapter; a path -> itself; None -> None.

    Raises
    ------
    InputError
        ``embedded`` asked for, but no adapter ships with this version.
    """
    if adapter is None or str(adapter) != "embedded":
        return Path(adapter) if adapter else None
    if not (shipped_adapter_dir() / ADAPTER_RECORD).is_file():
        raise InputError("--adapter embedded", "no adapter ships with this version of agent3d: none beat random "
                                               "gating on held-out data (README, 'Tuning')")
    return shipped_adapter_dir()
