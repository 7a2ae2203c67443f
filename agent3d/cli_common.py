"""What the command-line modules share: option choices and the one-line failure."""

from __future__ import annotations

from enum import Enum

import typer


class BackendName(str, Enum):
    llama_cpp = "llama-cpp"
    openai = "openai"


class Gating(str, Enum):
    llm = "llm"
    saliency = "saliency"
    random = "random"
    all = "all"


class ScorerName(str, Enum):
    auto = "auto"
    self_reference = "self-reference"
    memory_bank = "memory-bank"
    registration = "registration"
    fused = "fused"


class ObjectScore(str, Enum):
    max = "max"
    topk_mean = "topk-mean"


class Sampling(str, Enum):
    fps = "fps"
    voxel = "voxel"


def fail(message: str, code: int) -> None:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(f"agent3d: {message}", err=True)
    raise typer.Exit(code)
