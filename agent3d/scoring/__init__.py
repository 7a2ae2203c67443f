"""Classical anomaly scoring of the gated points, and propagation to the whole cloud.

Every scorer is a scikit-learn-style estimator (:class:`~agent3d.scoring.common.ScorerBase`): ``fit(references)``
returns the scorer, ``score_samples(points, indices, state)`` scores those points of a cloud and writes nothing on
the scorer, so one fitted scorer may serve many threads (what a cloud costs whatever is scored is kept in that
cloud's :class:`~agent3d.scoring.state.ScoringState`); ``register(points)`` gives the alignment a reference-based
scorer uses (None otherwise). One module per scorer:

- :mod:`~agent3d.scoring.self_reference` (no reference): FPFH rarity within the cloud itself;
- :mod:`~agent3d.scoring.memory_bank`: coreset memory bank of normal FPFH group features (BTF / PatchCore);
- :mod:`~agent3d.scoring.registration`: distance to the registered reference surface (Reg3D-AD);
- :mod:`~agent3d.scoring.fused`: memory bank + registration, each normalised on held-out normal points.
"""

from __future__ import annotations

import numpy as np

from agent3d.base import OBJECT_SCORES, SCORERS, InputError
from agent3d.scoring.common import ScorerBase
from agent3d.scoring.fused import FusedScorer
from agent3d.scoring.memory_bank import MemoryBankScorer
from agent3d.scoring.registration import Registration, RegistrationError, RegistrationScorer
from agent3d.scoring.self_reference import SelfReferenceScorer
from agent3d.scoring.state import ScoringState

__all__ = ["SCORERS", "OBJECT_SCORES", "Scorer", "ScorerBase", "FusedScorer", "MemoryBankScorer", "Registration",
           "RegistrationError", "RegistrationScorer", "ScoringState", "SelfReferenceScorer", "build_scorer",
           "resolve_scorer", "object_score", "propagate"]


Scorer = ScorerBase  # the protocol every scorer follows (:class:`agent3d.scoring.common.ScorerBase`)


def resolve_scorer(name: str, has_references: bool) -> str:
    """The scorer ``name`` stands for: ``auto`` is ``fused`` with references, else ``self-reference``.

    Raises
    ------
    ValueError
        Unknown name, or a reference-based scorer without references.
    """
    if name not in SCORERS:
        raise InputError("--scorer", f"unknown scorer '{name}' (expected one of {', '.join(SCORERS)})")
    if name == "auto":
        return "fused" if has_references else "self-reference"
    if name != "self-reference" and not has_references:
        raise InputError("--scorer", f"'{name}' needs --reference clouds of normal parts")
    return name


def build_scorer(name: str, references: list[np.ndarray], sources: list[str] | None = None, seed: int = 0) -> Scorer:
    """A fitted scorer by name.

    Parameters
    ----------
    name : {"auto", "self-reference", "memory-bank", "registration", "fused"}
        ``auto``: ``fused`` when references are given, else ``self-reference``.
    references : list of ndarray of shape (n_i, 3), float64
    sources : list of str, optional
    seed : int, default 0

    Raises
    ------
    ValueError
        Unknown name, or a reference-based scorer without references.
    RegistrationError
        References that cannot be registered to each other (fused).
    """
    makers = {"self-reference": SelfReferenceScorer, "memory-bank": MemoryBankScorer,
              "registration": RegistrationScorer, "fused": FusedScorer}
    return makers[resolve_scorer(name, bool(references))](seed=seed).fit(references, sources)


def object_score(scores: np.ndarray, method: str = "max", k: int = 10) -> float:
    """One anomaly score for the whole object from its scored points.

    Parameters
    ----------
    scores : ndarray of shape (n_scored,), float64
    method : {"max", "topk-mean"}, default "max"
        ``max`` is the object score of PatchCore, BTF and the Real3D-AD benchmark;
        ``topk-mean`` (mean of the ``k`` highest) is less sensitive to a single noisy point.
    k : int, default 10

    Returns
    -------
    float
        0.0 when nothing was scored.

    Raises
    ------
    ValueError
        Unknown method or ``k < 1``.
    """
    if method not in OBJECT_SCORES or k < 1:
        raise ValueError(f"object score must be one of {', '.join(OBJECT_SCORES)} with k >= 1")
    if len(scores) == 0:
        return 0.0
    if method == "max":
        return float(scores.max())
    return float(np.sort(scores)[-min(k, len(scores)):].mean())


def propagate(n_points: int, indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores for every point of the full cloud: scored points keep theirs, the rest get the floor.

    Parameters
    ----------
    n_points : int
        Size of the full cloud.
    indices : ndarray of shape (n_scored,), int64
    scores : ndarray of shape (n_scored,), float64

    Returns
    -------
    ndarray of shape (n_points,), float64
        The floor is the lowest score given (0 when nothing was scored).
    """
    floor = float(scores.min()) if len(scores) else 0.0
    full = np.full(n_points, floor)
    full[indices] = scores
    return full
