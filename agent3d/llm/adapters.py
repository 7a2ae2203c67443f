"""Every adapter format in one place, resolved and hashed once per command.

- ``head``: ``head.npz`` + ``head.json`` (``tune --method head``), a head on llama.cpp's states of the frozen model;
  runs with ``--backend llama-cpp`` (:mod:`agent3d.llm.head`), no torch.
- ``peft``: a PEFT folder (``adapter_config.json``, ``adapter_model.safetensors``) + ``tune.json``
  (``tune --method lora|prompt``), generative; runs with ``--backend transformers``.
- ``peft-head``: a PEFT folder + ``head.npz`` + ``head.json`` (``tune --method prompt-head|lora-head``), a head on
  the states of the adapted model; runs with ``--backend transformers`` (:mod:`agent3d.llm.torch_states`).

A hosted model takes none. Formats and fields: ``docs/design.md``, "Adapter formats".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from agent3d.file_checks import InputError, check_file
from agent3d.llm.base import check_base_model
from agent3d.llm.head import HEAD_RECORD, HeadAdapter, resolve_head

ADAPTER_RECORD = "tune.json"  # a generative PEFT adapter's record (written by tune --method lora|prompt)
THROUGH_THE_MODEL = ("prompt-head", "lora-head")  # head methods whose states need the adapted model


@dataclass
class Adapter:
    """A resolved adapter.

    Attributes
    ----------
    kind : {"head", "peft", "peft-head"}
    folder : Path
    digest : str
        Short sha256 of its files (run records and cache keys).
    head : HeadAdapter or None
        The head of ``head`` and ``peft-head`` adapters.
    """

    kind: str
    folder: Path
    digest: str
    head: HeadAdapter | None = None

    def check_prompt(self, name: str, digest: str, guidance: str) -> None:
        """Refuse a prompt or guidance other than a head was trained on (a generative adapter accepts any).

        Raises
        ------
        InputError
        """
        if self.head is not None:
            self.head.check(name, digest, guidance)


def resolve(backend: str, adapter: str | Path | None, model: str | Path | None = None) -> Adapter | None:
    """The adapter ``--adapter`` names for ``backend``, or None (zero-shot).

    Parameters
    ----------
    backend : {"llama-cpp", "transformers", "openai"}
    adapter : str or Path or None
        ``None`` (llama-cpp: the shipped head with the embedded model, if one ships), ``"none"``, ``"embedded"``
        or a folder.
    model : str or Path, optional
        ``--model``.

    Raises
    ------
    InputError
        An adapter the backend cannot use, a folder of no known format, malformed files.
    """
    if backend == "openai":
        if adapter is not None and str(adapter) != "none":
            raise InputError("--adapter", "a hosted model's states cannot be read nor its weights adapted; "
                                          "--adapter needs --backend llama-cpp (head) or transformers (PEFT)")
        return None
    if backend == "llama-cpp":
        head = resolve_head(adapter, model)
        if head is None:
            return None
        if head.record.method in THROUGH_THE_MODEL:
            raise InputError(head.folder, f"a {head.record.method} adapter reads states of the adapted model: run it "
                                          "with --backend transformers")
        return Adapter("head", head.folder, head.digest, head)

    folder = resolve_adapter(None if adapter is None or str(adapter) == "none" else adapter)
    if folder is None:
        return None
    if not (folder / HEAD_RECORD).is_file():
        return Adapter("peft", folder, adapter_digest(folder))
    head = HeadAdapter(folder)
    if head.record.method not in THROUGH_THE_MODEL:
        raise InputError(folder, "a head on llama.cpp's states runs with --backend llama-cpp")
    return Adapter("peft-head", folder, adapter_digest(folder, extra=head.digest), head)


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


def check_adapter(adapter: str | Path, name: str, sha256: str) -> None:
    """Check, before the base model loads (half a minute for a GGUF), that ``adapter`` is a PEFT folder tuned on
    this base model whose weights file is whole.

    Raises
    ------
    InputError
        Not an adapter folder, one tuned on another base model (sha256 differs), or an
        ``adapter_model.safetensors`` that is missing, truncated or not safetensors.
    """
    check_base_model(adapter, read_adapter_record(adapter)["base_model"], name, sha256)
    check_targets(adapter, name)
    check_weights(adapter)


def check_targets(adapter: str | Path, name: str) -> None:
    """Refuse a PEFT folder whose ``adapter_config.json`` adapts modules the embedded models' architectures (Llama,
    Gemma 3: ``q_proj`` ... ``down_proj``) do not have (``c_attn``: GPT-2), before the base model loads.

    Raises
    ------
    InputError
        Naming the adapter folder, the base model its configuration names and this one.
    """
    config = Path(adapter) / "adapter_config.json"
    try:
        record = json.loads(config.read_text())
    except (OSError, ValueError) as error:
        raise InputError(config, f"not readable JSON ({type(error).__name__})") from None
    targets = record.get("target_modules") if isinstance(record, dict) else None
    if isinstance(targets, list) and not set(map(str, targets)) <= DECODER_MODULES:
        other = sorted(set(map(str, targets)) - DECODER_MODULES)
        raise InputError(adapter, f"adapts modules {', '.join(other)[:80]} of another architecture (its base model: "
                                  f"{str(record.get('base_model_name_or_path'))[:60]}); this model is {name[:60]}, "
                                  f"whose modules are {', '.join(sorted(DECODER_MODULES))}")


DECODER_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens",
                   "lm_head"}


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
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(weights, f"not readable safetensors ({str(error)[:120]})") from None


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
                                               "gating on held-out data (docs: results, 'Tuning')")
    return shipped_adapter_dir()
