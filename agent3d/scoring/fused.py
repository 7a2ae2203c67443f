"""Score fusion: the memory bank and the registration scorer, each normalised by normal data only.

Each scorer's scores are divided by the 99th percentile of its scores on held-out reference points
(leave-one-reference-out; with a single reference, one random half scores the other), so no test
label is ever used; the normalised scores are then averaged (default) or maxed. A fused score of 1
means "as unusual as the 1 % most unusual normal points".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agent3d.scoring.memory_bank import MemoryBankScorer
from agent3d.scoring.registration import RegistrationScorer

COMBINES = ("mean", "max")


def held_out_scores(make: Callable[[], object], references: list[np.ndarray], n_probe: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """Scores of reference points by a scorer fitted without them.

    Parameters
    ----------
    make : callable
        Returns a fresh, unfitted scorer with ``fit(references)`` and ``score(points, indices)``.
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
        scores.append(make().fit(train).score(test, probe))
    return np.concatenate(scores)


class FusedScorer:
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
    scales_ : dict of str to float
        The normalising percentile per scorer (in its own units).
    registration_ : Registration
        The alignment of the last scored cloud.
    """

    name = "fused"

    def __init__(self, combine: str = "mean", percentile: float = 99.0, n_probe: int = 2000, seed: int = 0):
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}")
        self.combine, self.percentile, self.n_probe, self.seed = combine, percentile, n_probe, seed
        self.references: list[str] = []
        self.registration_ = None

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
        factories = {"memory-bank": lambda: MemoryBankScorer(seed=self.seed),
                     "registration": lambda: RegistrationScorer(seed=self.seed)}
        self.scorers_ = {name: make().fit(references) for name, make in factories.items()}
        self.scales_ = {name: max(float(np.percentile(held_out_scores(make, references, self.n_probe, self.seed),
                                                      self.percentile)), 1e-12)
                        for name, make in factories.items()}
        self.references = list(sources or [])
        return self

    def score(self, points: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Fused scores of ``indices``, shape (n_scored,), float64 (unit-free)."""
        parts = np.stack([scorer.score(points, indices) / self.scales_[name]
                          for name, scorer in self.scorers_.items()])
        self.registration_ = self.scorers_["registration"].registration_
        return parts.mean(axis=0) if self.combine == "mean" else parts.max(axis=0)


