"""The learned no-LLM baseline (``--gating learned``): a gradient-boosted classifier on exactly the numbers each
line of the text shows, so a reader sees whether the language model adds anything over a small learned model on
the same information (the question of Tan et al., "Are language models actually useful for time series
forecasting?", NeurIPS 2024, asked for 3D).

A line's features are its quantized coordinates (0-99) and its curvature, residual and density ranks (0-9), and
the mean and maximum of those ranks over its ``N_NEAR`` nearest shown lines: 12 numbers a reader of the prompt
could compute. The classifier is scikit-learn's ``HistGradientBoostingClassifier`` (Ke et al., "LightGBM", NeurIPS
2017), trained by ``agent3d tune --method features`` and stored with skops, whose loader builds only the types it
trusts (scikit-learn's and NumPy's, plus ``TRUSTED``) and never unpickles: loading a file cannot run code.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from agent3d.file_checks import InputError
from agent3d.verbalize import View

N_NEAR = 3
FEATURES = ("x", "y", "z", "c", "r", "d", "c_near_mean", "r_near_mean", "d_near_mean",
            "c_near_max", "r_near_max", "d_near_max")
MODEL_FILE, RECORD_FILE = "features.skops", "features.json"
# types skops does not trust by default that a HistGradientBoostingClassifier holds; nothing else is ever built
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def line_features(view: View) -> np.ndarray:
    """The numbers each line of an ``xyz+geom`` view shows, and the same ranks of its nearest shown lines.

    Parameters
    ----------
    view : View
        With ``digits`` (format ``xyz+geom``).

    Returns
    -------
    ndarray of shape (n_lines, 12), float64
        Columns as ``FEATURES``.

    Raises
    ------
    ValueError
        A view without ranks.
    """
    if view.digits is None:
        raise ValueError("the learned baseline reads xyz+geom views (coordinates and ranks)")
    coordinates, digits = view.quantized.astype(np.float64), view.digits.astype(np.float64)
    k = min(N_NEAR + 1, len(coordinates))
    near = cKDTree(coordinates).query(coordinates, k=k)[1].reshape(len(coordinates), k)
    neighbours = digits[near[:, 1:]] if k > 1 else digits[:, None, :]
    return np.hstack([coordinates, digits, neighbours.mean(axis=1), neighbours.max(axis=1)])


def shipped_learned_dir() -> Path:
    """The learned baseline shipped with the package (``--learned embedded``)."""
    return Path(__file__).resolve().parent / "shipped" / "features"


class LearnedBaseline:
    """A features model written by ``agent3d tune --method features``.

    Parameters
    ----------
    folder : str or Path or "embedded"
        Holding ``features.skops`` and ``features.json``.

    Attributes
    ----------
    record : dict
        ``features.json``: features, training data, validation figures.
    estimator_ : sklearn.ensemble.HistGradientBoostingClassifier

    Raises
    ------
    InputError
        A missing folder or file, a file skops cannot read, or one holding a type outside ``TRUSTED``.
    """

    def __init__(self, folder: str | Path):
        import skops.io

        self.folder = shipped_learned_dir() if str(folder) == "embedded" else Path(folder)
        model_file, record_file = self.folder / MODEL_FILE, self.folder / RECORD_FILE
        for file in (model_file, record_file):
            if not file.is_file():
                raise InputError(self.folder, f"not a learned baseline (no {file.name}; write one with "
                                              "'agent3d tune --method features')")
        try:
            self.record = json.loads(record_file.read_text())
            untrusted = sorted(set(skops.io.get_untrusted_types(file=model_file)) - set(TRUSTED))
        except Exception as error:  # whatever a corrupt zip or JSON makes the readers raise
            raise InputError(model_file, f"unreadable ({type(error).__name__})") from None
        if untrusted:
            raise InputError(model_file, f"holds a type that is not allowed: {untrusted[0]}")
        try:
            self.estimator_ = skops.io.load(model_file, trusted=TRUSTED)
        except Exception as error:
            raise InputError(model_file, f"unreadable ({type(error).__name__})") from None
        if getattr(self.estimator_, "n_features_in_", None) != len(FEATURES):
            raise InputError(model_file, f"expects {getattr(self.estimator_, 'n_features_in_', '?')} features, "
                                         f"not the {len(FEATURES)} of this version")

    def predict_proba(self, view: View) -> np.ndarray:
        """Probability that each line of ``view`` lies on a defect, shape (n_lines,), float64."""
        return self.estimator_.predict_proba(line_features(view))[:, 1]


@lru_cache(maxsize=4)
def load_learned(folder: str) -> LearnedBaseline:
    """:class:`LearnedBaseline` of ``folder``, loaded once per process (``"embedded"``: the shipped one)."""
    return LearnedBaseline(folder)


def learned_seeds(view: View, model: LearnedBaseline, n_seeds: int, prior: np.ndarray | None = None) -> np.ndarray:
    """The full-cloud indices of the ``n_seeds`` lines the model scores highest, shape (<= n_seeds,), int64;
    with ``prior`` (shape (n_lines,), float64 in (0, 1]: each line's fit to the kind of defect the guidance asks
    for, :func:`agent3d.guidance.guidance_weights`: about 1 on that kind, 0.5 on flat surface, 0 on the other
    kind), the probability times the prior."""
    confidence = model.predict_proba(view)
    confidence = confidence if prior is None else confidence * prior
    return np.asarray(view.indices)[np.argsort(-confidence, kind="stable")[:n_seeds]]
