"""Gating: which full-cloud points the classical scorer may touch.

``--budget`` has one meaning for every strategy: the fraction of full-cloud points scored.
Every budgeted strategy picks seed points and grows neighbourhoods around them (the points nearest
to any seed, closest first) until the budget is spent; they differ only in the seeds. Each strategy is an object
(:data:`STRATEGIES`, :func:`strategy`) that knows its seeds, what it needs checked before any work, and whether it
asks a language model; nothing outside this module compares a gating's name:

- ``llm``: the language model's suspects (or a head's, reading the model's states);
- ``learned``: the lines a small model on the numbers the text shows scores highest (:mod:`agent3d.learned`);
- ``saliency``: the shown points (the same sample the model reads) with the highest curvature plus
  plane residual, as many as the model may name: the no-LLM baseline that tells whether the model
  adds anything over a geometric rule;
- ``coarse``: no reading at all: half the budget scores small patches around points spread evenly over the cloud,
  the hottest patches' centres are the seeds (:func:`coarse_seeds`): whether looking everywhere coarsely already
  does what the model or a rule does;
- ``cascade``: no reading and no model: a cheap geometric score of every point (surface variation over a wide
  neighbourhood, :func:`agent3d.geometry.surface_variation`) ranks the cloud and the scorer checks the top of it
  within the budget: what a practitioner would do without a language model, and what the model has to beat;
- ``random``: that many shown points drawn at random (seeded): the chance baseline;
- ``all``: ignores the budget and scores every point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from agent3d.agent import run_agent
from agent3d.base import GATINGS
from agent3d.cloud import LLMReport, ResolvedSuspect
from agent3d.config import BackendConfig, DetectConfig
from agent3d.geometry import CloudContext, surface_variation
from agent3d.learned import learned_seeds, load_learned
from agent3d.llm.adapters import Adapter, resolve
from agent3d.llm.base import Backend
from agent3d.prompts import load_prompt
from agent3d.sampling import sample
from agent3d.verbalize import shown_view


def budget_count(n_points: int, budget: float) -> int:
    """Points the scorer may touch: ``round(budget * n_points)``, at least 1.

    Raises
    ------
    ValueError
        If ``budget`` is not in (0, 1].
    """
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    return max(1, int(round(budget * n_points)))


def grow_around(points: np.ndarray, seeds: np.ndarray, n_budget: int) -> np.ndarray:
    """The ``n_budget`` points nearest to any seed: neighbourhoods grown evenly around every seed.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    seeds : ndarray of shape (n_seeds,), int64
        Indices of the seed points (suspects); none gives an empty selection.
    n_budget : int
        How many points to select.

    Returns
    -------
    indices : ndarray of shape (min(n_budget, n_points),) or (0,), int64
        Sorted indices into ``points``.
    """
    return np.sort(nearest_first(points, seeds)[:n_budget])


def nearest_first(points: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Every point's index, nearest to any seed first; ndarray of shape (n_points,) or (0,) without seeds, int64."""
    if len(seeds) == 0:
        return np.empty(0, dtype=np.int64)
    distance, _ = cKDTree(points[np.unique(seeds)]).query(points, workers=-1)
    return np.argsort(distance, kind="stable").astype(np.int64)


def saliency_seeds(shown: np.ndarray, curvature: np.ndarray, residual: np.ndarray, n_seeds: int) -> np.ndarray:
    """The ``n_seeds`` shown points with the highest curvature rank plus residual rank.

    Parameters
    ----------
    shown : ndarray of shape (n_shown,), int64
        Full-cloud indices of the shown sample.
    curvature, residual : ndarray of shape (n_shown,), float64
        Their summaries (:class:`agent3d.geometry.LocalGeometry`).
    n_seeds : int

    Returns
    -------
    ndarray of shape (min(n_seeds, n_shown),), int64
    """
    salience = rankdata(curvature) + rankdata(residual)
    return np.asarray(shown)[np.argsort(-salience, kind="stable")[:n_seeds]]


COARSE_SHARE = 0.5  # of the budget the coarse pass scores
COARSE_PATCH = 4  # points per patch (chosen on surfaces 00-09 among 4, 8, 16, 32 at the same share: README)


def coarse_seeds(points: np.ndarray, score, n_seeds: int, n_budget: int, seed: int = 0) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """Seeds from a coarse pass: score patches of ``COARSE_PATCH`` nearest points around ``COARSE_SHARE`` x
    ``n_budget`` / ``COARSE_PATCH`` centres spread by farthest point sampling; the centres of the ``n_seeds`` patches
    with the highest mean score are the seeds.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    score : callable
        ``score(indices)`` gives those points' scores, shape (len(indices),), float64 (a fitted scorer's
        ``score_samples`` on this cloud).
    n_seeds, n_budget : int
        Seeds wanted; points the whole gating may score.
    seed : int, default 0
        Seeds the farthest point sampling.

    Returns
    -------
    seeds : ndarray of shape (<= n_seeds,), int64
    scored : ndarray of shape (n_scored,), int64, sorted
        The points the pass scored (they count towards the budget).
    """
    n_centres = max(1, min(len(points), int(COARSE_SHARE * n_budget) // COARSE_PATCH))
    centres = sample(points, n_centres, "fps", seed=seed)
    _, patches = cKDTree(points).query(points[centres], k=min(COARSE_PATCH, len(points)), workers=-1)
    patches = np.asarray(patches).reshape(len(centres), -1)
    scored = np.unique(patches)
    mean = score(scored)[np.searchsorted(scored, patches)].mean(axis=1)
    return centres[np.argsort(-mean, kind="stable")[:n_seeds]], scored.astype(np.int64)


def spread_peaks(context: CloudContext, values: np.ndarray, n_seeds: int, apart: float = 8.0) -> np.ndarray:
    """The ``n_seeds`` points of highest ``values`` (shape (n_points,)) at least ``apart`` point spacings from each
    other (greedy non-maximum suppression); ndarray of shape (<= n_seeds,), int64."""
    chosen: list[int] = []
    radius = apart * context.spacing
    for index in np.argsort(-values, kind="stable"):
        if values[index] <= 0 or len(chosen) == n_seeds:
            break
        if not chosen or np.min(np.linalg.norm(context.points[chosen] - context.points[index], axis=1)) > radius:
            chosen.append(int(index))
    return np.asarray(chosen, dtype=np.int64)


def random_seeds(shown: np.ndarray, n_seeds: int, seed: int = 0) -> np.ndarray:
    """``n_seeds`` shown points drawn without replacement with a seeded generator."""
    return np.random.default_rng(seed).choice(np.asarray(shown), size=min(n_seeds, len(shown)), replace=False)


def gate(name: str, points: np.ndarray, seeds: np.ndarray, budget: float) -> np.ndarray:
    """Indices of the points to score: :meth:`Gating.select` of the strategy ``name``.

    Parameters
    ----------
    name : {"llm", "learned", "saliency", "coarse", "cascade", "random", "all"}
    points : ndarray of shape (n_points, 3), float64
    seeds : ndarray of shape (n_seeds,), int64
        Full-cloud indices of the seeds: suspects, salient or random points (ignored by ``all``).
    budget : float in (0, 1]
        Fraction of points to score (ignored by ``all``).

    Returns
    -------
    indices : ndarray of shape (n_scored,), int64, sorted

    Raises
    ------
    ValueError
        Unknown strategy or budget outside (0, 1].
    """
    return strategy(name).select(points, seeds, budget)


@dataclass
class Seeds:
    """What a strategy found on one cloud: seed indices (full cloud, int64), for ``llm`` the suspects, the
    model's report and the prompt used, for ``coarse`` the points already scored to find them (int64; they
    count towards the budget), and for ``cascade`` a ranking of every point (shape (n_points,), float64, higher
    first) that :meth:`Gating.select` follows instead of the distance to the seeds."""

    indices: np.ndarray
    suspects: list[ResolvedSuspect] = field(default_factory=list)
    report: LLMReport | None = None
    prompt: str | None = None
    scored: np.ndarray | None = None
    ranking: np.ndarray | None = None


class Gating:
    """A gating strategy.

    Attributes
    ----------
    name : str
        One of ``GATINGS``.
    needs_backend : bool
        Asks a language model (a backend must be built for it).
    per_prompt : bool
        Evaluated once per prompt.
    budgeted : bool
        Grows ``--budget`` around its seeds (``all`` scores every point and names no seed).
    chance : bool
        Seeds drawn at random: the chance baseline.
    follows_guidance : bool
        Its seeds follow the kind of defect ``--guidance`` asks for (the ``prior`` of :meth:`seeds`).
    needs_scorer : bool
        Scores points to find its seeds (the ``score`` of :meth:`seeds`).
    """

    name, needs_backend, per_prompt, budgeted, chance, follows_guidance, needs_scorer = ("", False, False, True, False,
                                                                                         False, False)

    def check(self, config: DetectConfig, backend: BackendConfig | None = None,
              prompts: Sequence[str] = ()) -> Adapter | None:
        """Refuse, before any cloud is read or model loaded, what this strategy cannot use (one InputError), for
        ``config.prompt`` or every one of ``prompts``; return the adapter it will apply (None: none)."""
        return None

    def seeds(self, context: CloudContext, shown: np.ndarray, config: DetectConfig,
              backend: Backend | None = None, prior: np.ndarray | None = None, score=None,
              features: np.ndarray | None = None) -> Seeds:
        """The seeds among the shown points (``shown``: full-cloud indices, int64). ``prior`` (shape (n_points,),
        float64, in (0, 1]: :func:`agent3d.guidance.guidance_weights`) is each point's fit to the kind of defect
        ``--guidance`` asks for; a strategy that ``follows_guidance`` ranks its candidates by confidence times prior
        (``learned``); ``features`` (shape (n_points,), float64: :func:`agent3d.guidance.cloud_feature_fit`) is the
        bend the design features called normal leave unexplained, 0 near what they explain (``saliency`` follows
        only that); the others
        ignore both (``random`` is chance, ``llm`` reads the guidance in its prompt). ``score`` (``score(indices)``:
        the scorer on this cloud) is for a strategy that ``needs_scorer``."""
        return Seeds(np.empty(0, dtype=np.int64))

    def select(self, points: np.ndarray, seeds: np.ndarray, budget: float,
               scored: np.ndarray | None = None, ranking: np.ndarray | None = None) -> np.ndarray:
        """The ``budget`` fraction of ``points``: those nearest to any seed (:func:`grow_around`), or the highest of
        a ``ranking`` (shape (n_points,), float64), with the points already ``scored`` to find the seeds (int64)
        counted in; sorted int64."""
        count = budget_count(points.shape[0], budget)
        if ranking is not None:
            return np.sort(np.argsort(-ranking, kind="stable")[:count]).astype(np.int64)
        if scored is None:
            return grow_around(points, seeds, count)
        order = nearest_first(points, seeds)
        fresh = order[~np.isin(order, scored)][:max(0, count - len(scored))]
        return np.union1d(fresh, scored).astype(np.int64)


class LanguageModelGating(Gating):
    """``llm``: the suspects the model names in the agent's rounds (:func:`agent3d.agent.run_agent`)."""

    name, needs_backend, per_prompt = "llm", True, True

    def check(self, config: DetectConfig, backend: BackendConfig | None = None,
              prompts: Sequence[str] = ()) -> Adapter | None:
        templates = [load_prompt(name, config.prompts_dir) for name in prompts or [config.prompt]]
        backend = backend or BackendConfig()
        backend.check()
        adapter = resolve(backend.backend, backend.adapter, backend.model)
        for template in templates if adapter is not None else []:
            adapter.check_prompt(template.name, template.digest, config.guidance)
        return adapter

    def seeds(self, context, shown, config, backend=None, prior=None, score=None, features=None) -> Seeds:
        if backend is None:
            raise ValueError("gating 'llm' needs a language-model backend")
        prompt = load_prompt(config.prompt, config.prompts_dir)
        adapter = getattr(backend, "adapter", None)  # a head reads only the prompt and guidance it was trained on
        if adapter is not None and hasattr(adapter, "check"):
            adapter.check(prompt.name, prompt.digest, config.guidance)
        found, report = run_agent(backend, prompt, context, shown_view(context, shown, prompt.format), config.rounds,
                                  config.max_prompt_tokens, config.retries, config.seed, config.guidance,
                                  config.max_suspects)
        points = context.points
        suspects = [ResolvedSuspect(id=s.id, index=index, xyz=tuple(float(v) for v in points[index]),
                                    confidence=s.confidence, reason=s.reason) for index, s in found]
        return Seeds(np.array([s.index for s in suspects], dtype=np.int64), suspects, report, prompt.name)


class LearnedGating(Gating):
    """``learned``: the lines the learned no-LLM baseline scores highest."""

    name, follows_guidance = "learned", True

    def check(self, config: DetectConfig, backend: BackendConfig | None = None,
              prompts: Sequence[str] = ()) -> Adapter | None:
        load_learned(config.learned)
        return None

    def seeds(self, context, shown, config, backend=None, prior=None, score=None, features=None) -> Seeds:
        view = shown_view(context, shown, "xyz+geom")
        return Seeds(learned_seeds(view, load_learned(config.learned), config.max_suspects,
                                   None if prior is None else prior[view.indices]))


class SaliencyGating(Gating):
    """``saliency``: the geometric rule (:func:`saliency_seeds`). Guidance steers it only by the design features it
    calls normal: then its seeds are the largest bends those features leave unexplained, over the whole cloud and
    spread apart (a sharp edge is salient and explained; :func:`agent3d.design_features.feature_fit`). The kind read
    does not move its seeds: steered towards the kind, among its most salient points or all of them, it lost matched
    P-AUROC on surfaces 00-09 (0.851 text-blind against 0.778 and 0.787 with the kind given; docs, "Guidance
    readers")."""

    name, follows_guidance = "saliency", True

    def seeds(self, context, shown, config, backend=None, prior=None, score=None, features=None) -> Seeds:
        if features is not None:  # the whole cloud's unexplained bends, spread apart
            return Seeds(spread_peaks(context, features, config.max_suspects))
        geometry = context.geometry(shown)
        return Seeds(saliency_seeds(shown, geometry.curvature, geometry.residual, config.max_suspects))


class CoarseGating(Gating):
    """``coarse``: a coarse pass of the scorer itself (:func:`coarse_seeds`)."""

    name, needs_scorer = "coarse", True

    def seeds(self, context, shown, config, backend=None, prior=None, score=None, features=None) -> Seeds:
        points = context.points
        seeds, scored = coarse_seeds(points, score, config.max_suspects, budget_count(len(points), config.budget),
                                     config.seed)
        return Seeds(seeds, scored=scored)


# neighbours of the cascade's surface variation: chosen on surfaces 00-09 among 16, 32, 64, 128 (P-AUROC / AUPRO of
# the rule alone, pooled: 0.689 / 0.686, 0.974 / 0.947, 0.985 / 0.971, 0.995 / 0.991; pinholes 7-12 spacings deep)
CASCADE_NEIGHBOURS = 128


class CascadeGating(Gating):
    """``cascade``: the points of highest surface variation (:func:`agent3d.geometry.surface_variation`, over
    ``CASCADE_NEIGHBOURS`` neighbours) are scored, the budget's worth of them (``--growth adaptive``: half, then along
    the hottest scores); its seeds, for the verdict's regions hit, are the highest ones spread apart
    (:func:`spread_peaks`)."""

    name = "cascade"

    def seeds(self, context, shown, config, backend=None, prior=None, score=None, features=None) -> Seeds:
        variation = surface_variation(context.points, CASCADE_NEIGHBOURS, seed=config.seed)
        return Seeds(spread_peaks(context, variation, config.max_suspects), ranking=variation)


class RandomGating(Gating):
    """``random``: the chance baseline (:func:`random_seeds`)."""

    name, chance = "random", True

    def seeds(self, context, shown, config, backend=None, prior=None, score=None, features=None) -> Seeds:
        return Seeds(random_seeds(shown, config.max_suspects, seed=config.seed))


class AllGating(Gating):
    """``all``: every point scored, no seed."""

    name, budgeted = "all", False

    def select(self, points: np.ndarray, seeds: np.ndarray, budget: float,
               scored: np.ndarray | None = None, ranking: np.ndarray | None = None) -> np.ndarray:
        return np.arange(points.shape[0], dtype=np.int64)


STRATEGIES: dict[str, Gating] = {g.name: g for g in (LanguageModelGating(), LearnedGating(), SaliencyGating(),
                                                      CoarseGating(), CascadeGating(), RandomGating(), AllGating())}


TO_BEAT = ("random", "saliency", "cascade")  # chance and the geometric rules: what any other gating has to beat


def strategy(name: str) -> Gating:
    """The strategy called ``name``.

    Raises
    ------
    ValueError
        An unknown name.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown gating '{name}' (expected one of {', '.join(GATINGS)})")
    return STRATEGIES[name]
