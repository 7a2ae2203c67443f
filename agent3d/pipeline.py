"""One cloud through the whole flow: sample, seed (ask the model, or a baseline rule; :mod:`agent3d.gating`), gate,
score, propagate; with ``--guidance`` and a guidance reader, every point's score is then weighted by its fit to the
kind of defect the words ask for (:mod:`agent3d.guidance`)."""

from __future__ import annotations

import time

import numpy as np

from agent3d.cloud import Detection, PointCloud
from agent3d.config import DetectConfig
from agent3d.gating import Seeds, strategy
from agent3d.geometry import CloudContext
from agent3d.guidance import guided_scores, guidance_weights, read_kinds, resolve_reader
from agent3d.llm.base import Backend
from agent3d.sampling import sample
from agent3d.scoring import Scorer, SelfReferenceScorer, object_score, propagate


def detect(cloud: PointCloud, config: DetectConfig, backend: Backend | None = None,
           scorer: Scorer | None = None) -> Detection:
    """Run the pipeline on one cloud.

    Parameters
    ----------
    cloud : PointCloud
    config : DetectConfig
    backend : Backend, optional
        Required by a gating that asks a language model (``llm``); a head backend
        (:class:`agent3d.llm.head.HeadBackend`) reads the model's states instead of asking it.
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
    points, gating = cloud.points, strategy(config.gating)
    found = Seeds(np.empty(0, dtype=np.int64))
    if gating.budgeted:
        shown = sample(points, config.n_points, config.sampling, seed=config.seed)
        found = gating.seeds(CloudContext(points, seed=config.seed), shown, config, backend)
    scored = gating.select(points, found.indices, config.budget)
    scorer = scorer or SelfReferenceScorer(seed=config.seed)
    point_scores = scorer.score_samples(points, scored)
    registration = scorer.register(points) if len(scored) else None  # remembered from scoring: no second run
    mask = np.zeros(len(cloud), dtype=bool)
    mask[scored] = True
    report = found.report
    scores, guidance = propagate(len(cloud), scored, point_scores), None
    reader = resolve_reader(config.guidance_reader) if config.guidance else None
    if reader is not None:  # the words read as a kind of defect, every point weighted by its fit to it
        kinds = read_kinds(reader, config.guidance)
        scores = guided_scores(scores, mask, guidance_weights(points, kinds))
        point_scores, guidance = scores[scored], {"reader": reader.name_, "kinds": kinds}
    return Detection(
        object_score=object_score(point_scores, config.object_score, config.topk),
        scores=scores, scored=mask, suspects=found.suspects, guidance=guidance,
        seconds=time.perf_counter() - start,
        backend=backend.name if report else None, model=backend.model if report else None,
        prompt=found.prompt, gating=config.gating, scorer=scorer.name, budget=config.budget,
        reference=list(scorer.sources_), seeds=[int(i) for i in found.indices],
        registration=registration.to_json() if registration else None, llm=report)
