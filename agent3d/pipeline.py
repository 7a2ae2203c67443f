"""One cloud through the whole flow: sample, summarise, verbalize, ask, gate, score, propagate."""

from __future__ import annotations

import time

import numpy as np

from agent3d.agent import run_agent
from agent3d.cloud import Detection, LLMReport, PointCloud, ResolvedSuspect
from agent3d.config import DetectConfig
from agent3d.gating import gate, random_seeds, saliency_seeds
from agent3d.geometry import CloudContext
from agent3d.learned import learned_seeds, load_learned
from agent3d.llm.base import Backend
from agent3d.prompts import load_prompt
from agent3d.sampling import sample
from agent3d.scoring import Scorer, SelfReferenceScorer, object_score, propagate
from agent3d.verbalize import shown_view


def detect(cloud: PointCloud, config: DetectConfig, backend: Backend | None = None,
           scorer: Scorer | None = None) -> Detection:
    """Run the pipeline on one cloud.

    Parameters
    ----------
    cloud : PointCloud
    config : DetectConfig
    backend : Backend, optional
        Required when ``config.gating == "llm"``; a head backend (:class:`agent3d.llm.head.HeadBackend`) reads the
        model's states instead of asking it.
    scorer : Scorer, optional
        A fitted scorer (:func:`agent3d.scoring.build_scorer`); the self-reference scorer by default.

    Returns
    -------
    Detection

    Raises
    ------
    ValueError
        An unknown prompt, ``llm`` gating without a backend, or a failed registration
        (:class:`agent3d.scoring.RegistrationError`).
    agent3d.file_checks.InputError
        A head adapter trained on another prompt or guidance; an unreadable learned baseline.
    agent3d.llm.base.BackendError
        When the backend fails outright (not for unusable replies, which are retried and reported).
    """
    start = time.perf_counter()
    points = cloud.points
    suspects, report, prompt_name, seeds = [], None, None, np.empty(0, dtype=np.int64)
    if config.gating != "all":
        context = CloudContext(points, seed=config.seed)
        shown = sample(points, config.n_points, config.sampling, seed=config.seed)
    if config.gating == "llm":
        if backend is None:
            raise ValueError("gating 'llm' needs a language-model backend")
        suspects, report, prompt_name = ask_model(context, shown, config, backend)
        seeds = np.array([s.index for s in suspects], dtype=np.int64)
    elif config.gating == "saliency":
        geometry = context.geometry(shown)
        seeds = saliency_seeds(shown, geometry.curvature, geometry.residual, config.max_suspects)
    elif config.gating == "learned":
        seeds = learned_seeds(shown_view(context, shown, "xyz+geom"), load_learned(config.learned),
                              config.max_suspects)
    elif config.gating == "random":
        seeds = random_seeds(shown, config.max_suspects, seed=config.seed)
    scored = gate(config.gating, points, seeds, config.budget)
    scorer = scorer or SelfReferenceScorer(seed=config.seed)
    point_scores = scorer.score_samples(points, scored)
    registration = scorer.register(points) if len(scored) else None  # remembered from scoring: no second run
    mask = np.zeros(len(cloud), dtype=bool)
    mask[scored] = True
    return Detection(
        object_score=object_score(point_scores, config.object_score, config.topk),
        scores=propagate(len(cloud), scored, point_scores), scored=mask, suspects=suspects,
        seconds=time.perf_counter() - start,
        backend=backend.name if report else None, model=backend.model if report else None,
        prompt=prompt_name, gating=config.gating, scorer=scorer.name, budget=config.budget,
        reference=list(scorer.sources_), seeds=[int(i) for i in seeds],
        registration=registration.to_json() if registration else None, llm=report)


def ask_model(context: CloudContext, shown: np.ndarray, config: DetectConfig,
              backend: Backend) -> tuple[list[ResolvedSuspect], LLMReport, str]:
    """Verbalize the shown points with the configured prompt and run the agent's rounds."""
    prompt = load_prompt(config.prompt, config.prompts_dir)
    check_reader(backend, prompt, config.guidance)
    points = context.points
    view = shown_view(context, shown, prompt.format)
    found, report = run_agent(backend, prompt, context, view, config.rounds, config.max_prompt_tokens,
                              config.retries, config.seed, config.guidance, config.max_suspects)
    suspects = [ResolvedSuspect(id=s.id, index=index, xyz=tuple(float(v) for v in points[index]),
                                confidence=s.confidence, reason=s.reason) for index, s in found]
    return suspects, report, prompt.name


def check_reader(backend: Backend, prompt, guidance: str) -> None:
    """Refuse a head backend trained on another prompt (content hash) or other guidance, before it reads.

    Raises
    ------
    agent3d.file_checks.InputError
    """
    adapter = getattr(backend, "adapter", None)
    if adapter is not None and hasattr(adapter, "check"):
        adapter.check(prompt.name, prompt.digest, guidance)
