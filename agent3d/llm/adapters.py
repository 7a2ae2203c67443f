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

from dataclasses import dataclass
from pathlib import Path

from agent3d.file_checks import InputError
from agent3d.llm.head import HEAD_RECORD, HeadAdapter, resolve_head
from agent3d.llm.transformers import adapter_digest, resolve_adapter

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
