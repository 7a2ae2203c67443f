"""Bootstrap intervals and paired comparisons of an evaluation's metrics.

Every metric of :mod:`agent3d.evaluation.summary` is a mean over classes of a figure pooled over a class's
samples. The bootstrap resamples samples within each class (``scipy.stats.bootstrap`` with one sample per
class, resampled independently; percentile intervals; Efron & Tibshirani, *An Introduction to the
Bootstrap*, 1993). A resample only changes how many times each sample counts, so each class's points are
sorted once and every resampled P-AUROC, AUPRO and AP is a weighted cumulative sum along that fixed order
(see :class:`ClassCurves` for the grouping that keeps this fast on large clouds).

A paired comparison of two runs (e.g. ``llm`` against ``random``) gives the difference B - A, its bootstrap
interval (the same resampled samples for both runs) and a two-sided p-value from a paired permutation test: under
the null hypothesis that the runs are exchangeable, each sample's A and B results are swapped at random and the
pooled metric difference recomputed (``scipy.stats.permutation_test``, ``permutation_type="samples"``; exact
when the 2^n swaps are few, Monte Carlo otherwise; Good, *Permutation Tests*, 2000). Unlike a bootstrap p-value
it cannot claim more than n samples support: with 3 samples the smallest two-sided p is 0.25. Every interval and
p carries its ``n``; intervals from fewer than ``RELIABLE_N`` samples per class are marked unreliable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, permutation_test

from agent3d.evaluation.metrics import FPR_LIMIT

METRICS = ("p_auroc", "o_auroc", "aupro", "ap", "suspect_recall")
PAIRED = ("p_auroc", "aupro", "suspect_recall")
BASELINES = ("all", "random", "saliency", "learned", "cascade")  # every run is compared with those that ran
RELIABLE_N = 10  # fewer samples per class than this: an interval is marked unreliable
EXACT_MAX = 1024  # at most this many swap patterns (10 samples): the permutation test enumerates them all


@dataclass
class ClassCurves:
    """One run's records of one class, arranged so a metric under per-sample weights costs one small
    matrix product.

    The class's points are sorted once by descending score and cut into ``n_bins`` consecutive groups
    (a tie never straddles two); each sample's positives, negatives, normal points and region shares are
    counted per group. A metric under weights is then computed on the weighted group counts, treating a group
    as one tie: exact when there are fewer distinct scores than groups, otherwise within about 1 / n_bins.

    Parameters
    ----------
    labels, scores, regions : list of ndarray of shape (n_i,)
        Per sample: point labels (0/1), point scores, GT region ids (-1 normal).
    object_labels, object_scores : ndarray of shape (n_samples,)
    hits, regions_total : ndarray of shape (n_samples,)
        Suspect-recall counts per sample (``hits`` NaN where the run has no seeds, e.g. ``all``).
    n_bins : int, default 16384
        Upper bound on the groups (lowered for many samples to bound memory).
    """

    labels: list
    scores: list
    regions: list
    object_labels: np.ndarray
    object_scores: np.ndarray
    hits: np.ndarray
    regions_total: np.ndarray
    n_bins: int = 16384

    def __post_init__(self):
        n_samples = len(self.scores)
        sample = np.concatenate([np.full(len(s), i) for i, s in enumerate(self.scores)])
        value = np.concatenate(self.scores).astype(np.float64)
        order = np.argsort(-value, kind="stable")
        value, sample = value[order], sample[order]
        first_of_tie = np.r_[True, value[1:] != value[:-1]]
        tie_start = np.flatnonzero(first_of_tie)[np.cumsum(first_of_tie) - 1]
        n_bins = int(np.clip(4_000_000 // n_samples, 1024, self.n_bins))
        group = tie_start * n_bins // len(value)
        group = np.unique(group, return_inverse=True)[1]
        positive = np.concatenate(self.labels)[order].astype(bool)
        region = np.concatenate(self.regions)[order]
        sizes = [np.bincount(r[r >= 0]) if (r >= 0).any() else np.zeros(0) for r in self.regions]
        share = np.zeros(len(value))
        anomalous = region >= 0
        offsets = np.cumsum([0] + [len(z) for z in sizes])
        all_sizes = np.concatenate([np.zeros(0), *sizes])
        share[anomalous] = 1.0 / all_sizes[region[anomalous] + offsets[sample[anomalous]]]
        cells = sample * (group.max() + 1) + group
        shape = (n_samples, group.max() + 1)

        def counts(weights: np.ndarray) -> np.ndarray:
            return np.bincount(cells, weights=weights, minlength=shape[0] * shape[1]).reshape(shape)

        self.positive_, self.negative_ = counts(positive.astype(float)), counts((~positive).astype(float))
        self.normal_, self.share_ = counts((region < 0).astype(float)), counts(share)
        self.n_regions_ = np.array([len(z) for z in sizes], dtype=np.float64)

    def metrics(self, weight: np.ndarray, names: tuple[str, ...] = METRICS) -> list[float]:
        """The metrics ``names`` with sample ``i`` counted ``weight[i]`` times (NaN where undefined)."""
        weight = np.asarray(weight, dtype=np.float64)
        compute = {"p_auroc": lambda: self._auroc(weight), "aupro": lambda: self._aupro(weight),
                   "o_auroc": lambda: _weighted_auroc(self.object_labels, self.object_scores, weight),
                   "ap": lambda: self._ap(weight), "suspect_recall": lambda: self._recall(weight)}
        return [compute[name]() for name in names]

    @staticmethod
    def _curve(weight: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return np.r_[0.0, np.cumsum(weight @ counts)]

    def _auroc(self, weight: np.ndarray) -> float:
        tp, fp = self._curve(weight, self.positive_), self._curve(weight, self.negative_)
        if tp[-1] == 0 or fp[-1] == 0:
            return np.nan
        return float(np.trapezoid(tp / tp[-1], fp / fp[-1]))

    def _ap(self, weight: np.ndarray) -> float:
        tp, fp = self._curve(weight, self.positive_)[1:], self._curve(weight, self.negative_)[1:]
        if tp[-1] == 0:
            return np.nan
        recall = np.r_[0.0, tp / tp[-1]]
        return float(np.sum(np.diff(recall) * tp / np.maximum(tp + fp, 1e-300)))

    def batch_metrics(self, weights: np.ndarray, names: tuple[str, ...] = PAIRED) -> np.ndarray:
        """:meth:`metrics` for many weight vectors at once, shape (n_weights, len(names)) (a permutation test's
        batch: the curves of every weight vector come from one matrix product)."""
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        found = np.empty((len(weights), len(names)))

        def curves(counts):
            products = weights @ counts
            return np.concatenate([np.zeros((len(weights), 1)), np.cumsum(products, axis=1)], axis=1)

        for j, name in enumerate(names):
            with np.errstate(all="ignore"):
                if name == "p_auroc":
                    tp, fp = curves(self.positive_), curves(self.negative_)
                    value = np.trapezoid(tp / tp[:, -1:], fp / fp[:, -1:], axis=1)
                    value[(tp[:, -1] == 0) | (fp[:, -1] == 0)] = np.nan
                elif name == "aupro":
                    fpr, share, n_regions = curves(self.normal_), curves(self.share_), weights @ self.n_regions_
                    value = np.array([_cut_aupro(f, p, n) for f, p, n in zip(fpr, share, n_regions)])
                elif name == "suspect_recall":
                    total = weights @ self.regions_total
                    value = weights @ np.nan_to_num(self.hits) / total
                    value[(total == 0) | np.isnan(self.hits).all()] = np.nan
                else:
                    value = np.array([self.metrics(w, (name,))[0] for w in weights])
            found[:, j] = value
        return found

    def _aupro(self, weight: np.ndarray) -> float:
        return _cut_aupro(self._curve(weight, self.normal_), self._curve(weight, self.share_),
                          float(weight @ self.n_regions_))

    def _recall(self, weight: np.ndarray) -> float:
        total = float(weight @ self.regions_total)
        if total == 0 or np.isnan(self.hits).all():
            return np.nan
        return float(weight @ np.nan_to_num(self.hits)) / total


def _cut_aupro(fpr: np.ndarray, pro: np.ndarray, n_regions: float) -> float:
    """AUPRO to ``FPR_LIMIT`` from the cumulative normal-point and region-share curves (NaN where undefined)."""
    if n_regions == 0 or fpr[-1] == 0:
        return np.nan
    fpr, pro = fpr / fpr[-1], pro / n_regions
    keep = fpr <= FPR_LIMIT
    fpr_cut, pro_cut = fpr[keep], pro[keep]
    if fpr_cut[-1] < FPR_LIMIT:
        after = np.searchsorted(fpr, FPR_LIMIT)
        step = (FPR_LIMIT - fpr[after - 1]) / (fpr[after] - fpr[after - 1])
        fpr_cut, pro_cut = np.r_[fpr_cut, FPR_LIMIT], np.r_[pro_cut, pro[after - 1] + step * (pro[after] - pro[after - 1])]
    return float(np.trapezoid(pro_cut, fpr_cut) / FPR_LIMIT)


def _weighted_auroc(labels: np.ndarray, scores: np.ndarray, weight: np.ndarray) -> float:
    """AUROC with sample weights, as the weighted Mann-Whitney statistic (ties count one half)."""
    positive, negative = (labels == 1) & (weight > 0), (labels == 0) & (weight > 0)
    if not positive.any() or not negative.any():
        return np.nan
    difference = scores[positive][:, None] - scores[negative][None, :]
    wins = (difference > 0) + 0.5 * (difference == 0)
    pair_weight = weight[positive][:, None] * weight[negative][None, :]
    return float((wins * pair_weight).sum() / pair_weight.sum())


def load_curves(out: Path, records: list[dict]) -> ClassCurves:
    """The :class:`ClassCurves` of one run's records of one class, in the order given."""
    arrays = [np.load(Path(out) / r["scores_file"]) for r in records]
    return ClassCurves(
        labels=[a["labels"] for a in arrays], scores=[a["scores"] for a in arrays],
        regions=[a["regions"].astype(np.int64) for a in arrays],
        object_labels=np.array([r["label"] for r in records]), object_scores=np.array([r["object_score"] for r in records]),
        hits=np.array([np.nan if r["regions_hit"] is None else r["regions_hit"] for r in records], dtype=np.float64),
        regions_total=np.array([r["regions"] for r in records], dtype=np.float64))


def class_curves(out: Path, records: list[dict], keep: set | None = None) -> list[ClassCurves]:
    """One :class:`ClassCurves` per class of ``records`` (restricted to the (class, sample) pairs in ``keep``),
    classes and samples sorted by name so that two runs line up."""
    by_class: dict[str, list] = {}
    for record in sorted(records, key=lambda r: (r["class"], r["sample"])):
        if keep is None or (record["class"], record["sample"]) in keep:
            by_class.setdefault(record["class"], []).append(record)
    return [load_curves(out, rs) for _, rs in sorted(by_class.items())]


def _mean_over_classes(curves: list[ClassCurves], indices: tuple, metrics=METRICS) -> np.ndarray:
    values = []
    for curve, index in zip(curves, indices):
        values.append(curve.metrics(np.bincount(index, minlength=len(curve.object_labels)), metrics))
    values = np.array(values, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every class: NaN
        return np.where(np.isnan(values).all(axis=0), np.nan, np.nanmean(values, axis=0))


def _resample(class_sizes: list[int], statistic, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap distribution (n_resamples, n_values) of ``statistic`` over per-class sample indices."""
    data = tuple(np.arange(n) for n in class_sizes)
    with warnings.catch_warnings():  # NaN resamples (a class drawn without anomalies) are handled by _interval
        warnings.simplefilter("ignore")
        result = bootstrap(data, statistic, n_resamples=n_resamples, vectorized=False, paired=False,
                           method="percentile", random_state=np.random.default_rng(seed))
    return np.atleast_2d(np.asarray(result.bootstrap_distribution)).reshape(-1, n_resamples).T


def _interval(distribution: np.ndarray, confidence: float) -> list:
    tail = 100 * (1 - confidence) / 2
    finite = distribution[np.isfinite(distribution)]
    if len(finite) < 0.9 * len(distribution):  # undefined in too many resamples
        return [None, None]
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


def intervals(curves: list[ClassCurves], n_resamples: int = 1000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, list]:
    """Bootstrap interval of every metric of one run, resampling samples within classes.

    Parameters
    ----------
    curves : list of ClassCurves
        One per class.
    n_resamples : int, default 1000
    confidence : float, default 0.95
    seed : int, default 0

    Returns
    -------
    dict of metric name to [low, high]
        ``[None, None]`` where the metric is undefined (e.g. suspect recall of ``all``).
    """
    if min(len(c.object_labels) for c in curves) < 2:
        return {m: [None, None] for m in METRICS}
    distribution = _resample([len(c.object_labels) for c in curves],
                             lambda *index: _mean_over_classes(curves, index), n_resamples, seed)
    return {m: _interval(distribution[:, k], confidence) for k, m in enumerate(METRICS)}


def paired_difference(a: list[ClassCurves], b: list[ClassCurves], n_resamples: int = 1000,
                      confidence: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """B - A on the same samples: the observed difference, its bootstrap interval and a paired permutation p.

    Parameters
    ----------
    a, b : list of ClassCurves
        The two runs, one entry per class, records in the same sample order.
    n_resamples : int, default 1000
        Bootstrap resamples, and random swap patterns when the 2^n patterns exceed ``EXACT_MAX``.
    confidence : float, default 0.95
    seed : int, default 0

    Returns
    -------
    dict of metric name (``PAIRED``) to {"diff", "interval", "p", "n", "reliable"}
        None values where undefined; ``n`` is the number of paired samples, ``reliable`` False when a class has
        fewer than ``RELIABLE_N`` of them.
    """
    sizes = [len(c.object_labels) for c in a]
    observed = (_mean_over_classes(b, tuple(np.arange(n) for n in sizes), PAIRED)
                - _mean_over_classes(a, tuple(np.arange(n) for n in sizes), PAIRED))
    n, reliable = int(sum(sizes)), min(sizes) >= RELIABLE_N
    if min(sizes) < 2:
        return {m: {"diff": _number(observed[k]), "interval": [None, None], "p": None, "n": n, "reliable": False}
                for k, m in enumerate(PAIRED)}
    distribution = _resample(sizes, lambda *index: (
        _mean_over_classes(b, index, PAIRED) - _mean_over_classes(a, index, PAIRED)), n_resamples, seed)
    p_values = permutation_p(a, b, n_resamples, seed)
    result = {}
    for k, metric in enumerate(PAIRED):
        interval = _interval(distribution[:, k], confidence)
        p = p_values[k] if np.isfinite(observed[k]) and np.isfinite(p_values[k]) else None
        result[metric] = {"diff": _number(observed[k]), "interval": interval, "p": p, "n": n, "reliable": reliable}
    return result


def permutation_p(a: list[ClassCurves], b: list[ClassCurves], n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Two-sided paired permutation p-value of B - A for each metric of ``PAIRED``.

    Each class's A and B samples are put in one :class:`ClassCurves` (A's first); a swap pattern picks, per
    sample, which of the two counts as B, and the statistic is the mean over classes of the pooled metric of
    the picked B samples minus that of the others. ``scipy.stats.permutation_test`` enumerates every pattern
    when there are at most ``EXACT_MAX`` (n = 3 gives 8 patterns, so p >= 0.25), else draws ``n_resamples``.

    Returns
    -------
    ndarray of shape (len(PAIRED),), float64
        NaN where the metric is undefined.
    """
    joint = [ClassCurves(labels=ca.labels + cb.labels, scores=ca.scores + cb.scores, regions=ca.regions + cb.regions,
                         object_labels=np.r_[ca.object_labels, cb.object_labels],
                         object_scores=np.r_[ca.object_scores, cb.object_scores], hits=np.r_[ca.hits, cb.hits],
                         regions_total=np.r_[ca.regions_total, cb.regions_total]) for ca, cb in zip(a, b)]
    sizes = [len(c.object_labels) for c in a]
    offsets = np.cumsum([0] + sizes)
    a_index, b_index = np.arange(offsets[-1]), np.arange(offsets[-1]) + offsets[-1]

    def statistic(x, y, axis=-1):  # x, y: (n,) or (batch, n) global sample numbers now counted as A and as B
        single = np.ndim(x) == 1
        x, y = np.atleast_2d(x), np.atleast_2d(y)
        values = [curve.batch_metrics(_pick(y, offsets, k, sizes[k]))
                  - curve.batch_metrics(_pick(x, offsets, k, sizes[k])) for k, curve in enumerate(joint)]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every class: NaN
            found = np.nanmean(np.array(values), axis=0)  # (batch, len(PAIRED))
        return found[0] if single else found

    patterns = 2.0 ** offsets[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = permutation_test((a_index, b_index), statistic, permutation_type="samples", vectorized=True,
                                  n_resamples=int(patterns) if patterns <= EXACT_MAX else n_resamples,
                                  alternative="two-sided", random_state=np.random.default_rng(seed), batch=512)
    return np.minimum(np.asarray(result.pvalue, dtype=np.float64), 1.0)


def _pick(chosen: np.ndarray, offsets: np.ndarray, k: int, size: int) -> np.ndarray:
    """0/1 weights (batch, 2 * size) over class ``k``'s joint samples (A's ``size`` then B's) for the global sample
    numbers ``chosen`` (batch, n): number ``i`` < n is A's sample ``i``, ``n + i`` is B's."""
    total = offsets[-1]
    mine = np.asarray(chosen, dtype=np.int64)[:, offsets[k]:offsets[k + 1]]
    weight = np.zeros((len(mine), 2 * size))
    np.put_along_axis(weight, (mine >= total) * size + np.arange(size), 1.0, axis=1)
    return weight


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def format_difference(name: str, baseline: str, metric: str, found: dict) -> str:
    """``"llm - random: +0.030 [-0.050, 0.110], p = 0.42"`` (with the metric's name)."""
    if found["diff"] is None:
        return f"{name} - {baseline} {metric}: undefined"
    low, high = found["interval"]
    interval = f" [{low:+.3f}, {high:+.3f}]" if low is not None else ""
    p = f", p = {found['p']:.3g}" if found["p"] is not None else ""
    n = f", n = {found['n']}" if found.get("n") is not None else ""
    warning = " (unreliable: under 10 samples per class)" if found.get("reliable") is False else ""
    return f"{name} - {baseline} {metric}: {found['diff']:+.3f}{interval}{p}{n}{warning}"
