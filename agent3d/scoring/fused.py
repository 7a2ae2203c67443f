"""Score fusion: the memory bank and the registration scorer, each normalised by normal data only.

Each scorer's scores are divided by the 99th percentile of its scores on held-out reference points
(leave-one-reference-out; with a single reference, one random half scores the other), so no test
label is ever used; the normalised scores are then averaged (default) or maxed. A fused score of 1
means "as unusual as the 1 % most unusual normal points".
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from agent3d.scoring.common import ScorerBase
from agent3d.scoring.memory_bank import MemoryBankScorer
from agent3d.scoring.registration import RegistrationScorer
from agent3d.scoring.state import ScoringState

COMBINES = ("mean", "max")


def held_out_scores(prototype: ScorerBase, references: list[np.ndarray], n_probe: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """Scores of reference points by a scorer fitted without them.

    Parameters
    ----------
    prototype : ScorerBase
        An unfitted scorer; each fold fits a clone of it (``sklearn.base.clone``).
    references : list of ndarray of shape (n_i, 3), float64
    n_probe : int, default 2000
        Points scored per held-out cloud.
    seed : int, default 0

    Returns
    -------
    ndarray of shape (n_scores,), float64
    """
    rng = np.random.default_rng(seed)
    if len(references) >= 2:
        folds = [([r for j, r in enumerate(references) if j != i], references[i]) for i in range(len(references))]
    else:
        order = rng.permutation(len(references[0]))
        half = len(order) // 2
        folds = [([references[0][order[:half]]], references[0][order[half:]])]
    scores = []
    for train, test in folds:
        probe = np.sort(rng.choice(len(test), size=min(n_probe, len(test)), replace=False))
        scores.append(clone(prototype).fit(train).score_samples(test, probe))
    return np.concatenate(scores)


class FusedScorer(ScorerBase):
    """Memory bank + registration, each normalised on held-out normal points, then combined.

    Parameters
    ----------
    combine : {"mean", "max"}, default "mean"
        ``mean`` rewards defects both scorers see; ``max`` keeps whatever either one sees.
    percentile : float, default 99.0
        Percentile of the held-out normal scores each scorer is divided by.
    n_probe : int, default 2000
    seed : int, default 0

    Attributes
    ----------
    scorers_ : dict of str to ScorerBase
        The fitted memory bank and registration scorer (clones of their defaults with this seed).
    scales_ : dict of str to float
        The normalising percentile per scorer (in its own units).
    sources_ : list of str
    """

    name = "fused"

    def __init__(self, combine: str = "mean", percentile: float = 99.0, n_probe: int = 2000, seed: int = 0):
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}")
        self.combine, self.percentile, self.n_probe, self.seed = combine, percentile, n_probe, seed

    def fit(self, references: list[np.ndarray], sources: list[str] | None = None) -> "FusedScorer":
        """Fit both scorers on the references and measure their held-out normal scale.

        Raises
        ------
        ValueError
            If no reference is given.
        RegistrationError
            If the references cannot be registered to each other.
        """
        if not references:
            raise ValueError("score fusion needs at least one reference cloud")
        parts = {"memory-bank": MemoryBankScorer(seed=self.seed), "registration": RegistrationScorer(seed=self.seed)}
        self.scorers_ = {name: clone(part).fit(references) for name, part in parts.items()}
        self.scales_ = {name: max(float(np.percentile(held_out_scores(part, references, self.n_probe, self.seed),
                                                      self.percentile)), 1e-12)
                        for name, part in parts.items()}
        self.sources_ = list(sources or [])
        return self

    def register(self, points: np.ndarray):
        """The registration part's alignment of ``points`` (see :meth:`RegistrationScorer.register`)."""
        return self.scorers_["registration"].register(points)

    def score_samples(self, points: np.ndarray, indices: np.ndarray,
                      state: ScoringState | None = None) -> np.ndarray:
        """Fused scores of ``indices``, shape (n_scored,), float64 (unit-free); ``state`` serves both parts."""
        parts = np.stack([scorer.score_samples(points, indices, state) / self.scales_[name]
                          for name, scorer in self.scorers_.items()])
        return parts.mean(axis=0) if self.combine == "mean" else parts.max(axis=0)


