"""One typed configuration: what a detection does (:class:`DetectConfig`) and which model answers
(:class:`BackendConfig`). The CLI options of ``detect`` and ``evaluate`` are generated from these fields
(name, default, help), and the evaluation configuration nests them, so the three never drift apart.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from agent3d.llm.base import redact_url

# the names the configuration accepts; the stages that implement them import them from here, so reading the
# configuration (the CLI's help, completion, --version) loads none of their numerical libraries
GATINGS = ("llm", "learned", "saliency", "random", "all")
SAMPLERS = ("fps", "voxel")
SCORERS = ("auto", "self-reference", "memory-bank", "registration", "fused")
OBJECT_SCORES = ("max", "topk-mean")
BACKENDS = ("llama-cpp", "openai", "transformers")
DEVICES = ("auto", "cpu", "cuda")


class DetectConfig(BaseModel):
    """Settings of one detection; each field is the CLI option of the same name (``n_points`` is ``--n-points``).

    Raises
    ------
    pydantic.ValidationError
        A value out of range or not among the choices (on construction and on assignment).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    gating: Literal[GATINGS] = Field("llm", description="Which points the scorer checks: llm suspects, learned "
                                                        "(a small model on the numbers the text shows: the learned "
                                                        "no-LLM baseline), saliency (geometric rule), random "
                                                        "(chance) or all.")
    max_suspects: int = Field(8, ge=1, le=64, description="Most suspects (seeds) per cloud, for every gating "
                                                           "but all; more seeds share the budget.")
    learned: str = Field("embedded", description="Learned baseline for --gating learned: a folder written by "
                                                 "'agent3d tune --method features', or 'embedded' (the one shipped).")
    budget: float = Field(0.1, gt=0, le=1, description="Fraction of points the scorer may touch (all but 'all').")
    scorer: Literal[SCORERS] = Field("auto", description="Classical scorer; auto = fused with references, "
                                                         "self-reference without.")
    prompt: str = Field("geom", description="Prompt template name.")
    prompts_dir: str | None = Field(None, description="Folder of your own prompt templates.")
    guidance: str = Field("", description="What is normal for this part and what a defect looks like (text or "
                                          "@FILE), shown by every template.")
    n_points: int = Field(64, ge=1, description="Points shown to the language model (64 fit SmolLM2-135M: about "
                                                "1,300 prompt tokens).")
    sampling: Literal[SAMPLERS] = Field("fps", description="How those points are chosen: farthest point sampling "
                                                           "or voxel downsampling.")
    max_prompt_tokens: int = Field(6000, ge=1, description="Token budget per request; the view is tiled to fit.")
    retries: int = Field(2, ge=0, description="Retries of an unusable reply, with the error fed back.")
    rounds: int = Field(1, ge=1, description="Agent rounds: later rounds look closer around the suspects.")
    object_score: Literal[OBJECT_SCORES] = Field("max", description="Object score from the point scores.")
    topk: int = Field(10, ge=1, description="k of topk-mean.")
    seed: int = Field(0, description="Seed for sampling, gating and decoding.")


class BackendConfig(BaseModel):
    """Which language model answers, and how it is reached; each field is a CLI option."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    backend: Literal[BACKENDS] = Field("llama-cpp", description="Language-model backend.")
    model: str | None = Field(None, description="GGUF file or Hugging Face folder (local backends; default: the "
                                                "embedded SmolLM2-135M) or model name (openai).")
    base_url: str | None = Field(None, description="OpenAI-compatible server URL (openai backend).")
    adapter: str | None = Field(None, description="Tuned adapter: a folder (agent3d tune), 'embedded' (the one "
                                                  "shipped) or 'none' (zero-shot). llama-cpp applies head adapters "
                                                  "(default: the shipped head with the embedded model), "
                                                  "transformers PEFT ones.")
    device: Literal[DEVICES] = Field("auto", description="transformers backend: auto (cuda when available), "
                                                         "cpu or cuda.")
    timeout: float = Field(120.0, gt=0, description="Seconds per request to an OpenAI-compatible server.")
    retry_seconds: float = Field(60.0, ge=0, description="Total seconds that retries of failed requests may add.")
    no_cache: bool = Field(False, description="Ask the model even if the reply is cached.")

    @field_serializer("base_url")
    def _redacted(self, url: str | None) -> str | None:
        """Records (config.json, summaries) never hold credentials written into the URL."""
        return redact_url(url)

    def check(self) -> None:
        """Refuse, without loading anything, a ``--model`` path that does not exist (local backends) and an
        ``openai`` backend without ``--model``.

        Raises
        ------
        agent3d.io.InputError, agent3d.llm.base.BackendError
        """
        from pathlib import Path

        from agent3d.file_checks import InputError
        from agent3d.llm.base import BackendError

        if self.backend == "openai":
            if not self.model:
                raise BackendError("--backend openai needs --model")
            from agent3d.llm.adapters import resolve

            resolve("openai", self.adapter)
        elif self.model and not Path(self.model).exists():
            raise InputError(self.model, "no such model file or folder")

    def build(self, log_dir=None):
        """The backend this configuration describes, wrapped in the reply cache (unless ``no_cache``) and the
        request log (when ``log_dir``); see :func:`agent3d.llm.make_backend` for the errors raised."""
        from agent3d.llm import make_backend

        return make_backend(self.backend, self.model, self.base_url, not self.no_cache, self.timeout,
                            self.retry_seconds, log_dir, self.adapter, self.device)
