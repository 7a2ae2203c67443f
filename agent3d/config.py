"""One typed configuration: what a detection does (:class:`DetectConfig`), which model answers
(:class:`BackendConfig`), how a model is tuned (:class:`TuneConfig`) and how synthetic data is made
(:class:`SynthConfig`). The CLI options of ``detect``, ``evaluate``, ``tune`` and ``synth`` are generated from these
fields (name, default, help; ``--config FILE.toml`` fills them), and the evaluation configuration nests the first
two, so they never drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from agent3d.base import (BACKENDS, DEVICES, EMBEDDED_MODELS, GATINGS, GROWTHS, OBJECT_SCORES, SAMPLERS, SCORERS,
                          InputError, redact_url)
from agent3d.cloud import MIN_POINTS

MAX_SEED = 2**32 - 1  # llama.cpp's and NumPy's legacy seeds are 32-bit
MAX_SHOWN = 100_000  # points shown to a language model (64 fit SmolLM2-135M's context)
DAY = 86_400.0  # seconds

TUNE_METHODS = ("lora", "prompt", "head", "prompt-head", "lora-head", "features", "guidance", "guidance-lora",
                "guidance-verbalizer")

# the options each backend uses beyond --model and --no-cache; any other one given is refused (one line, exit 2)
BACKEND_OPTIONS = {"llama-cpp": ("adapter",), "openai": ("base_url", "timeout", "retry_seconds"),
                   "transformers": ("adapter", "device")}


class DetectConfig(BaseModel):
    """Settings of one detection; each field is the CLI option of the same name (``n_points`` is ``--n-points``).

    Raises
    ------
    pydantic.ValidationError
        A value out of range or not among the choices (on construction and on assignment).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    gating: Literal[GATINGS] = Field("llm", description="Which points the scorer checks: llm suspects, learned "
                                                        "(a small model on the numbers the text shows: the learned "
                                                        "no-LLM baseline), saliency (geometric rule), coarse (the "
                                                        "scorer's own coarse pass), cascade (a cheap geometric "
                                                        "score of every point ranks the cloud), random (chance) "
                                                        "or all.")
    max_suspects: int = Field(8, ge=1, le=64, description="Most suspects (seeds) per cloud, for every gating "
                                                           "but all; more seeds share the budget.")
    learned: str = Field("embedded", description="Learned baseline for --gating learned: a folder written by "
                                                 "'agent3d tune --method features', or 'embedded' (the one shipped).")
    budget: float = Field(0.1, gt=0, le=1, description="Fraction of points the scorer may touch (all but 'all').")
    growth: Literal[GROWTHS] = Field("fixed", description="How the scored set grows from the seeds: fixed (the "
                                                          "budget split evenly around them) or adaptive (half "
                                                          "of it, then on along hot scores; the budget is a cap).")
    scorer: Literal[SCORERS] = Field("auto", description="Classical scorer; auto = fused with references, "
                                                         "self-reference without.")
    prompt: str = Field("geom", description="Prompt template name.")
    prompts_dir: str | None = Field(None, description="Folder of your own prompt templates.")
    guidance: str = Field("", description="What is normal for this part and what a defect looks like (text or "
                                          "@FILE), shown by every template.")
    guidance_reader: str = Field("embedded", description="What reads --guidance for the kind of defect it asks for "
                                                         "(raised, sunk, any) so that every point's score is "
                                                         "weighted by its fit: 'embedded' (a probe on Gemma 3 270M, "
                                                         "extra gemma), a folder (tune --method guidance) or 'none' "
                                                         "(the text only reaches the prompt).")
    n_points: int = Field(64, ge=1, le=MAX_SHOWN, description="Points shown to the language model (64 fit "
                                                              "SmolLM2-135M: about 1,300 prompt tokens).")
    sampling: Literal[SAMPLERS] = Field("fps", description="How those points are chosen: farthest point sampling "
                                                           "or voxel downsampling.")
    max_prompt_tokens: int = Field(6000, ge=1, le=1_000_000, description="Token budget per request; the view is "
                                                                         "tiled to fit.")
    retries: int = Field(2, ge=0, le=100, description="Retries of an unusable reply, with the error fed back.")
    rounds: int = Field(1, ge=1, le=16, description="Agent rounds: later rounds look closer around the suspects.")
    object_score: Literal[OBJECT_SCORES] = Field("max", description="Object score from the point scores.")
    topk: int = Field(10, ge=1, le=1_000_000, description="k of topk-mean.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed for sampling, gating and decoding.")


class BackendConfig(BaseModel):
    """Which language model answers, and how it is reached; each field is a CLI option."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    backend: Literal[BACKENDS] = Field("llama-cpp", description="Language-model backend.")
    model: str | None = Field(None, description="An embedded model (smollm2-135m, the default; gemma-3-270m), a "
                                                "GGUF file or a Hugging Face folder (local backends), or a model "
                                                "name (openai).")
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (openai backend).")
    adapter: str | None = Field(None, description="Tuned adapter: a folder (agent3d tune), 'embedded' (the one "
                                                  "shipped) or 'none' (zero-shot). llama-cpp applies head adapters "
                                                  "(default: the shipped head with the embedded model), "
                                                  "transformers PEFT ones.")
    device: Literal[DEVICES] = Field("auto", description="transformers backend: auto (cuda when available), "
                                                         "cpu or cuda.")
    timeout: float = Field(120.0, gt=0, le=DAY, description="Seconds per request to an OpenAI-compatible server.")
    retry_seconds: float = Field(60.0, ge=0, le=DAY, description="Total seconds that retries of failed requests "
                                                                 "may add.")
    no_cache: bool = Field(False, description="Ask the model even if the reply is cached.")

    @field_serializer("base_url")
    def _redacted(self, url: str | None) -> str | None:
        """Records (config.json, summaries) never hold credentials written into the URL."""
        return redact_url(url)

    def check(self) -> None:
        """Refuse, without loading anything, an option this backend cannot use (``BACKEND_OPTIONS``), a
        ``--model`` path that does not exist (local backends) and an ``openai`` backend without ``--model``.

        Raises
        ------
        agent3d.base.InputError
        """
        for name in ("base_url", "timeout", "retry_seconds", "adapter", "device"):
            value = getattr(self, name)
            if name in BACKEND_OPTIONS[self.backend] or value in (type(self).model_fields[name].default, "none"):
                continue
            users = " and ".join(b for b, options in BACKEND_OPTIONS.items() if name in options)
            hosted = ", a hosted model" if self.backend == "openai" else ""
            raise InputError(f"--{name.replace('_', '-')}", f"does not apply to --backend {self.backend}{hosted} "
                                                            f"(only to {users})")
        if self.backend == "openai" and not self.model:
            raise InputError("--model", "--backend openai needs a model name")
        if self.backend != "openai" and self.model and self.model not in EMBEDDED_MODELS \
                and not Path(self.model).exists():
            raise InputError(self.model, "no such model file or folder")


class TuneConfig(BaseModel):
    """Settings of one tuning run (recorded in ``tune.json``; a resumed run must match them).

    Attributes
    ----------
    method : {"lora", "prompt", "head", "prompt-head", "lora-head", "features"}, default "lora"
        Generative (the reply's tokens are the loss), a head on the per-line states (``head``: the frozen model,
        no torch; ``prompt-head`` / ``lora-head``: trained through the model, :mod:`agent3d.tuning.joint`), or the
        learned no-LLM baseline (``features``).
    steps : int, default 1000
        Optimizer steps (one example each).
    minutes : float, optional
        Stop after this many minutes of training instead (validation time included).
    lr : float, optional
        Learning rate; default 3e-4 for LoRA, 3e-2 for prompt tuning.
    virtual_tokens : int, default 20
        Prompt tuning: learnable tokens.
    lora_r : int, default 16
        LoRA rank (alpha = 2 r, dropout 0.05, all attention and MLP projections).
    lora_layers : int, default 0
        LoRA in the last ``lora_layers`` decoder layers only (0: every layer).
    empty_fraction : float, default 0.0
        Share of the training examples with an empty target (normal clouds, defects no shown point touches)
        that are kept. Gating needs seeds, so abstaining is never useful; with half the examples empty, a first
        LoRA run here learned to answer ``[]`` to everything (validation recall 0.00 at step 150).
    warmup : int, default 30
    eval_every : int, default 100
    checkpoint_every : int, default 50
    n_val : int, default 24
        Validation examples decoded at each evaluation.
    seed : int, default 0
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal[TUNE_METHODS] = Field("lora", description="lora (low-rank adapter), prompt (learnable virtual "
                                          "tokens), head (a probe on the frozen model's per-line states, no torch), "
                                          "prompt-head / lora-head (virtual tokens or LoRA trained through the model "
                                          "with that head), features (the learned no-LLM baseline), guidance "
                                          "(a probe reading a guidance text into a defect specification; the "
                                          "dataset is a guidance set, or 'generated'), guidance-lora (LoRA and "
                                          "heads through the model on 'generated' phrasings) or "
                                          "guidance-verbalizer (the same, its kind head started as the model's "
                                          "own next-word choice among raised / sunk / all).")
    steps: int = Field(1000, ge=1, le=10_000_000, description="Optimizer steps (one example each).")
    minutes: float | None = Field(None, gt=0, le=7 * DAY / 60, description="lora / prompt: stop after this many "
                                                                           "minutes instead.")
    lr: float | None = Field(None, gt=0, le=1, description="Learning rate (default 3e-4 LoRA, 3e-2 prompt tuning).")
    virtual_tokens: int = Field(20, ge=1, le=1024, description="Prompt tuning: learnable tokens.")
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    lora_layers: int = Field(0, ge=0, le=1024, description="LoRA in the last N decoder layers only (0: all); "
                                                           "cheaper steps.")
    empty_fraction: float = Field(0.0, ge=0, le=1, description="Share of training examples with an empty target "
                                                               "kept (normal clouds, defects off the view).")
    warmup: int = Field(30, ge=0, le=10_000_000, description="Warm-up steps (linear).")
    eval_every: int = Field(100, ge=1, le=10_000_000, description="Validate (a curve point) every N steps.")
    checkpoint_every: int = Field(50, ge=1, le=10_000_000, description="lora / prompt: checkpoint every N steps.")
    n_val: int = Field(24, ge=1, le=100_000, description="lora / prompt: validation examples decoded at each "
                                                         "validation.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed for the split, the example order and the adapter's "
                                                         "initialisation.")

    @property
    def learning_rate(self) -> float:
        return self.lr or (3e-4 if self.method.startswith("lora") else 3e-2)


class SynthConfig(BaseModel):
    """Settings of ``agent3d synth`` (each field is the option of the same name; ``--config FILE.toml`` fills them).
    Values are checked by :func:`agent3d.synth.make_dataset`, which names what is wrong.

    Attributes
    ----------
    n : int, default 20
    defects : str, default "bulge,dent,crack,hole,scratch"
    n_points, references : int
    noise, radius, depth, width, length : float
        Noise in median point spacings; defect sizes as fractions of the diagonal
        (:class:`agent3d.synth.DefectParams`).
    seed : int, default 0
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n: int = Field(20, ge=1, le=100_000, description="Test samples (a quarter of them normal).")
    defects: str = Field("bulge,dent,crack,hole,scratch", description="Comma-separated defect types (bulge, dent, "
                                                                     "crack, scratch, hole, contamination).")
    n_points: int = Field(20000, ge=MIN_POINTS, le=10_000_000, description="Points per cloud.")
    references: int = Field(3, ge=0, le=1000, description="Clean reference clouds in references/.")
    noise: float = Field(0.1, ge=0, le=100, description="Sensor noise in median point spacings.")
    radius: float = Field(0.06, gt=0, le=0.5, description="Bulge, dent, hole and contamination radius, fraction "
                                                          "of the diagonal.")
    depth: float = Field(0.012, gt=0, le=1, description="Bulge and dent height, crack depth, fraction of the "
                                                        "diagonal.")
    width: float = Field(0.03, gt=0, le=1, description="Crack width (a scratch is half as wide), fraction of the "
                                                       "diagonal.")
    length: float = Field(0.25, gt=0, le=1, description="Crack length, fraction of the diagonal.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed.")
