"""One cloud through the whole flow: sample, summarise, verbalize, ask, gate, score, propagate."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from agent3d.agent import MAX_SUSPECTS, run_agent, shown_view
from agent3d.cloud import Detection, LLMReport, PointCloud, ResolvedSuspect
from agent3d.gating import GATINGS, gate, random_seeds, saliency_seeds
from agent3d.geometry import local_geometry
from agent3d.llm.base import Backend
from agent3d.prompts import load_prompt
from agent3d.sampling import sample
from agent3d.scoring import OBJECT_SCORES, SelfReferenceScorer, object_score, propagate


@dataclass
class DetectConfig:
    """Settings of one detection; the CLI flags map onto these fields.

    Attributes
    ----------
    n_points : int, default 256
        Points shown to the language model (``--n-points``).
    sampling : {"fps", "voxel"}, default "fps"
    prompt : str, default "geom"
        Prompt template name (``--prompt``).
    prompts_dir : str, optional
        Folder of prompt templates; the shipped ones by default.
    max_prompt_tokens : int, default 6000
        Token budget per request (``--max-prompt-tokens``); the view is tiled to honour it.
    gating : {"llm", "saliency", "random", "all"}, default "llm"
    budget : float, default 0.1
        Fraction of full-cloud points the scorer may touch (``--budget``).
    rounds : int, default 1
        Agent rounds (``--rounds``): later rounds look closer around the current suspects.
    object_score : {"max", "topk-mean"}, default "max"
    topk : int, default 10
        k of ``topk-mean``.
    retries : int, default 2
        Retries of an unusable reply, with the error fed back.
    seed : int, default 0
    """

    n_points: int = 256
    sampling: str = "fps"
    prompt: str = "geom"
    prompts_dir: str | None = None
    max_prompt_tokens: int = 6000
    gating: str = "llm"
    budget: float = 0.1
    rounds: int = 1
    object_score: str = "max"
    topk: int = 10
    retries: int = 2
    seed: int = 0

    def check(self) -> None:
        """Raise ValueError for settings out of range."""
        if self.gating not in GATINGS:
            raise ValueError(f"unknown gating '{self.gating}' (expected one of {', '.join(GATINGS)})")
        if not 0 < self.budget <= 1:
            raise ValueError(f"--budget must be in (0, 1], got {self.budget}")
        if min(self.n_points, self.max_prompt_tokens, self.topk, self.rounds) < 1 or self.retries < 0:
            raise ValueError("--n-points, --max-prompt-tokens, --topk and --rounds must be >= 1 and --retries >= 0")
        if self.object_score not in OBJECT_SCORES:
            raise ValueError(f"--object-score must be one of {', '.join(OBJECT_SCORES)}")


def detect(cloud: PointCloud, config: DetectConfig, backend: Backend | None = None, scorer=None) -> Detection:
    """Run the pipeline on one cloud.

    Parameters
    ----------
    cloud : PointCloud
    config : DetectConfig
    backend : Backend, optional
        Required when ``config.gating == "llm"``.
    scorer : optional
        A fitted scorer (``score(points, indices)``; see :func:`agent3d.fusion.build_scorer`); the
        self-reference scorer by default.

    Returns
    -------
    Detection

    Raises
    ------
    ValueError
        Bad settings, an unknown prompt, ``llm`` gating without a backend, or a failed registration
        (:class:`agent3d.registration.RegistrationError`).
    agent3d.llm.base.BackendError
        When the backend fails outright (not for unusable replies, which are retried and reported).
    """
    config.check()
    start = time.perf_counter()
    points = cloud.points
    suspects, report, prompt_name, seeds = [], None, None, np.empty(0, dtype=np.int64)
    if config.gating != "all":
        shown = sample(points, config.n_points, config.sampling, seed=config.seed)
    if config.gating == "llm":
        if backend is None:
            raise ValueError("gating 'llm' needs a language-model backend")
        suspects, report, prompt_name = ask_model(cloud, shown, config, backend)
        seeds = np.array([s.index for s in suspects], dtype=np.int64)
    elif config.gating == "saliency":
        geometry = local_geometry(points, shown, seed=config.seed)
        seeds = saliency_seeds(shown, geometry.curvature, geometry.residual, MAX_SUSPECTS)
    elif config.gating == "random":
        seeds = random_seeds(shown, MAX_SUSPECTS, seed=config.seed)
    scored = gate(config.gating, points, seeds, config.budget)
    scorer = scorer or SelfReferenceScorer(seed=config.seed)
    point_scores = scorer.score(points, scored)
    registration = getattr(scorer, "registration_", None) if len(scored) else None
    mask = np.zeros(len(cloud), dtype=bool)
    mask[scored] = True
    return Detection(
        object_score=object_score(point_scores, config.object_score, config.topk),
        scores=propagate(len(cloud), scored, point_scores), scored=mask, suspects=suspects,
        seconds=time.perf_counter() - start,
        backend=backend.name if report else None, model=backend.model if report else None,
        prompt=prompt_name, gating=config.gating, scorer=scorer.name, budget=config.budget,
        reference=list(scorer.references), seeds=[int(i) for i in seeds],
        registration=registration.to_json() if registration else None, llm=report)


def ask_model(cloud: PointCloud, shown: np.ndarray, config: DetectConfig,
              backend: Backend) -> tuple[list[ResolvedSuspect], LLMReport, str]:
    """Verbalize the shown points with the configured prompt and run the agent's rounds."""
    prompt = load_prompt(config.prompt, config.prompts_dir)
    points = cloud.points
    view = shown_view(points, shown, prompt, config.seed)
    found, report = run_agent(backend, prompt, points, view, config.rounds, config.max_prompt_tokens,
                              config.retries, config.seed)
    suspects = [ResolvedSuspect(id=s.id, index=index, xyz=tuple(float(v) for v in points[index]),
                                confidence=s.confidence, reason=s.reason) for index, s in found]
    return suspects, report, prompt.name
