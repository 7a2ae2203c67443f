"""One cloud through the whole flow: sample, seed (ask the model, or a baseline rule; :mod:`agent3d.gating`), gate
(grow the scored set from the seeds: :mod:`agent3d.growth`), score, propagate. With ``--guidance`` and a guidance
reader, the words are read into a defect specification first (:mod:`agent3d.guidance`, :mod:`agent3d.spec`): each
point's fit to it (the kind asked for; not a design feature called normal) steers the seeds of a gating that follows
guidance (:attr:`agent3d.gating.Gating.follows_guidance`) and then weights its score."""

from __future__ import annotations

import time

import numpy as np

from agent3d.cloud import Detection, PointCloud
from agent3d.config import DetectConfig
from agent3d.gating import Seeds, budget_count, strategy
from agent3d.geometry import CloudContext
from agent3d.growth import grow_adaptive
from agent3d.guidance import guided_scores, read_spec, resolve_reader, spec_weights
from agent3d.llm.base import Backend
from agent3d.sampling import sample
from agent3d.spec import DefectSpec
from agent3d.scoring import Scorer, ScoringState, SelfReferenceScorer, object_score, propagate


def detect(cloud: PointCloud, config: DetectConfig, backend: Backend | None = None,
           scorer: Scorer | None = None, spec: DefectSpec | None = None,
           state: ScoringState | None = None) -> Detection:
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
    spec : DefectSpec, optional
        The specification of ``config.guidance`` already read (:func:`agent3d.guidance.read_spec`; the guidance
        benchmark reads each phrasing once), or one given outright (:meth:`agent3d.spec.DefectSpec.given`); by
        default ``config.guidance_reader`` reads ``config.guidance``.
    state : ScoringState, optional
        The cloud's scoring state (:class:`agent3d.scoring.state.ScoringState`) to reuse across detections of the
        same cloud (the guidance benchmark's re-scoring); a fresh one by default, shared by every scoring call of
        this detection (the coarse pass, growth rounds).

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
    reader = resolve_reader(config.guidance_reader) if config.guidance and spec is None else None
    spec = read_spec(reader, config.guidance) if reader is not None else spec
    weights, features = spec_weights(points, spec) if spec else (None, None)  # each point's fit to the spec
    found = Seeds(np.empty(0, dtype=np.int64))
    scorer, timer = scorer or SelfReferenceScorer(seed=config.seed), ScoringTimer()
    state = state or ScoringState(points)
    score = timer.timed(lambda indices: scorer.score_samples(points, indices, state))
    if gating.budgeted:
        shown = sample(points, config.n_points, config.sampling, seed=config.seed)
        found = gating.seeds(CloudContext(points, seed=config.seed), shown, config, backend, weights,
                             score if gating.needs_scorer else None, features)
    if gating.budgeted and config.growth == "adaptive":  # half the budget around the seeds, then along hot scores
        core = gating.select(points, found.indices, config.budget / 2, found.scored, found.ranking)
        scored, point_scores = grow_adaptive(points, core, budget_count(len(points), config.budget), score,
                                             config.seed)
    else:
        scored = gating.select(points, found.indices, config.budget, found.scored, found.ranking)
        point_scores = score(scored)
    registration = scorer.register(points) if len(scored) else None  # remembered from scoring: no second run
    mask = np.zeros(len(cloud), dtype=bool)
    mask[scored] = True
    report = found.report
    scores, guidance = propagate(len(cloud), scored, point_scores), None
    if weights is not None:  # every scored point weighted by its fit to the kind read
        scores = guided_scores(scores, mask, weights)
        point_scores = scores[scored]
    if spec is not None:
        guidance = {"reader": spec.reader, "kinds": spec.kinds(), "spec": spec.summary()}
    return Detection(
        object_score=object_score(point_scores, config.object_score, config.topk),
        scores=scores, scored=mask, suspects=found.suspects, guidance=guidance,
        seconds=time.perf_counter() - start, scoring_seconds=timer.seconds,
        backend=backend.name if report else None, model=backend.model if report else None,
        prompt=found.prompt, gating=config.gating, scorer=scorer.name, budget=config.budget,
        reference=list(scorer.sources_), seeds=[int(i) for i in found.indices],
        registration=registration.to_json() if registration else None, llm=report)


class ScoringTimer:
    """Adds up the seconds spent in the scorer (:attr:`seconds`) across the calls it wraps."""

    def __init__(self):
        self.seconds = 0.0

    def timed(self, function):
        """``function`` (indices -> scores), its time added to :attr:`seconds`."""
        def call(indices: np.ndarray) -> np.ndarray:
            start = time.perf_counter()
            try:
                return function(indices)
            finally:
                self.seconds += time.perf_counter() - start
        return call
