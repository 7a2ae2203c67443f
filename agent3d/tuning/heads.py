"""Training what reads lines: a head on the frozen model's per-line states (``--method head``) and the learned
baseline on the numbers the lines show (``--method features``).

Choices (the head's kind and regularisation) are made by cross-validation over the training clouds only, grouped
by cloud (all samplings of a cloud fall in one fold), scored by suspect recall at ``max_suspects``: the figure the
gating is judged by. The threshold that marks a suspect "likely" maximises F1 on the out-of-fold probabilities.
Validation clouds (``--val``) are only ever scored, never used to choose. Linear probes: Alain & Bengio, 2016.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import GroupKFold
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from agent3d.llm.head import forward
from agent3d.tuning.lines import LineExample, recall_at

# name -> (kind, regularisation): logistic C, or MLP weight decay alpha
HEAD_CANDIDATES = {"logistic C=0.01": ("logistic", 0.01), "logistic C=0.1": ("logistic", 0.1),
                   "logistic C=1": ("logistic", 1.0), "mlp 64 alpha=1": ("mlp", 1.0)}


def fit_head(states: np.ndarray, labels: np.ndarray, kind: str = "logistic", strength: float = 0.1,
             seed: int = 0) -> dict[str, np.ndarray]:
    """Fit a head on standardised states.

    Parameters
    ----------
    states : ndarray of shape (n_lines, n_embd), float32
    labels : ndarray of shape (n_lines,), {0, 1}
    kind : {"logistic", "mlp"}, default "logistic"
        L2-regularised logistic regression (a linear probe), or one hidden layer of 64 ReLU units.
    strength : float, default 0.1
        Logistic: inverse regularisation C; MLP: L2 penalty alpha.
    seed : int, default 0

    Returns
    -------
    dict of str to ndarray
        ``mean``, ``scale`` (n_embd,), then ``w0``, ``b0``, ``w1``, ``b1``...: the arrays of ``head.npz``
        (:class:`agent3d.llm.head.HeadAdapter`).
    """
    scaler = StandardScaler().fit(states)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    x = (states - scaler.mean_) / scale
    if kind == "logistic":
        model = LogisticRegression(C=strength, class_weight="balanced", max_iter=3000).fit(x, labels)
        layers = [(model.coef_.T, model.intercept_)]
    else:
        with warnings.catch_warnings():  # 300 epochs is the budget, converged or not
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MLPClassifier(hidden_layer_sizes=(64,), alpha=strength, max_iter=300,
                                  random_state=seed).fit(x, labels)
        layers = list(zip(model.coefs_, model.intercepts_))
    arrays = {"mean": scaler.mean_, "scale": scale}
    for number, (weight, bias) in enumerate(layers):
        arrays[f"w{number}"], arrays[f"b{number}"] = np.asarray(weight), np.asarray(bias)
    return arrays


def fit_features(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> HistGradientBoostingClassifier:
    """The learned baseline: gradient-boosted trees (scikit-learn defaults, class-balanced) on line features,
    shape (n_lines, 12) float64."""
    return HistGradientBoostingClassifier(class_weight="balanced", random_state=seed).fit(features, labels)


def out_of_fold(examples: list[LineExample], fit_and_score, folds: int = 5) -> list[np.ndarray]:
    """Scores of every example's lines from a model fitted without its cloud (grouped k-fold over clouds).

    Parameters
    ----------
    examples : list of LineExample
    fit_and_score : callable
        ``fit_and_score(train_examples, test_examples) -> list of ndarray`` (one score per line).
    folds : int, default 5
        At most the number of clouds.
    """
    groups = np.array([e.cloud for e in examples])
    scores: list = [None] * len(examples)
    splitter = GroupKFold(n_splits=min(folds, len(set(groups))))
    for train, test in splitter.split(np.zeros(len(examples)), groups=groups):
        found = fit_and_score([examples[i] for i in train], [examples[i] for i in test])
        for i, score in zip(test, found):
            scores[i] = score
    return scores


def head_fitter(kind: str, strength: float, seed: int = 0):
    """A ``fit_and_score`` for :func:`out_of_fold` fitting a head on the examples' states."""
    def fit_and_score(train: list[LineExample], test: list[LineExample]) -> list[np.ndarray]:
        arrays = fit_head(np.vstack([e.states for e in train]), np.concatenate([e.labels for e in train]),
                          kind, strength, seed)
        return [forward(arrays, e.states) for e in test]
    return fit_and_score


def features_fitter(seed: int = 0):
    """A ``fit_and_score`` for :func:`out_of_fold` fitting the learned baseline on line features."""
    def fit_and_score(train: list[LineExample], test: list[LineExample]) -> list[np.ndarray]:
        model = fit_features(np.vstack([e.features for e in train]), np.concatenate([e.labels for e in train]), seed)
        return [model.predict_proba(e.features)[:, 1] for e in test]
    return fit_and_score


def choose_head(examples: list[LineExample], k: int, folds: int = 5, seed: int = 0,
                candidates: dict | None = None) -> tuple[str, dict]:
    """The head candidate with the best cross-validated suspect recall at ``k`` on these (training) examples.

    ``candidates`` (name -> (kind, strength)) defaults to ``HEAD_CANDIDATES``.

    Returns
    -------
    best : str
        A key of ``HEAD_CANDIDATES``.
    table : dict
        Per candidate: ``recall`` (hit / total over the out-of-fold rankings) and its ``scores``.
    """
    table = {}
    for name, (kind, strength) in (candidates or HEAD_CANDIDATES).items():
        scores = out_of_fold(examples, head_fitter(kind, strength, seed), folds)
        hit, total = recall_at(examples, scores, k)
        table[name] = {"recall": hit / max(total, 1), "scores": scores}
    best = max(table, key=lambda name: table[name]["recall"])  # first listed wins a tie
    return best, table


def f1_threshold(labels: np.ndarray, probability: np.ndarray) -> float:
    """The probability threshold with the highest F1 of ``labels`` (shape (n,), {0, 1}) in [0, 1]."""
    precision, recall, thresholds = precision_recall_curve(labels, probability)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))]) if len(thresholds) else 0.5
