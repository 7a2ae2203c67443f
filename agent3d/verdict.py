"""The first screen's answer to "did the language model help?": for a cloud with ground truth, the run's P-AUROC
and how many ground-truth regions got a suspect (or seed), next to the same two figures for the learned (no-LLM),
saliency, cascade, random and all gatings on the same cloud with the same scorer and budget (no model call; seconds).

When guidance weighted the scores, the ground truth is the regions of the kind the reader read most likely
(:func:`agent3d.defects.region_kinds`; ``any``: every region), and each baseline appears twice: guided, and
text-blind (``GATING (text-blind)``), so the panel shows what the words changed."""

from __future__ import annotations

import numpy as np


from agent3d.cloud import Detection, PointCloud
from agent3d.config import DetectConfig
from agent3d.defects import region_kinds
from agent3d.spec import DefectSpec
from agent3d.evaluation.metrics import GroundTruth, auroc
from agent3d.gating import TO_BEAT, strategy
from agent3d.pipeline import detect
from agent3d.scoring import ScoringState

BASELINES = ("learned", "saliency", "cascade", "random", "all")


def verdict(cloud: PointCloud, result: Detection, config: DetectConfig, scorer) -> dict:
    """P-AUROC and regions hit of ``result`` and of every baseline gating on the same cloud.

    Parameters
    ----------
    cloud : PointCloud
        With ``labels`` (the caller checks).
    result : Detection
        The run to judge.
    config : DetectConfig
        Its configuration; each baseline runs with it, only the gating changed.
    scorer
        The fitted scorer the run used (reused: references are not read again).

    Returns
    -------
    dict
        ``{gating: {"p_auroc", "regions_hit", "regions"}}``, the run's gating first; ``regions_hit`` is None
        for ``all`` (it scores every point, it names no seed); ``p_auroc`` None when the labels hold one class.
        With guidance, also ``{"GATING (text-blind)": ...}`` per baseline.
    """
    labels = matched_labels(cloud.points, cloud.labels, result.guidance["kinds"]) if result.guidance else cloud.labels
    truth = GroundTruth.of(cloud.points, labels)

    def figures(found: Detection) -> dict:
        hit, total = truth.regions_hit(found.seeds)
        return {"p_auroc": auroc(labels, found.scores),
                "regions_hit": hit if strategy(found.gating).budgeted else None,
                "regions": total}

    table = {result.gating: figures(result)}
    spec = DefectSpec.model_validate(result.guidance["spec"]) if result.guidance else None
    state = ScoringState(cloud.points)  # the baselines share what the cloud costs the scorer
    for gating in BASELINES:  # the guidance as the run read it, not read again
        if gating not in table:
            table[gating] = figures(detect(cloud, config.model_copy(update={"gating": gating}), None, scorer, spec,
                                           state))
    if result.guidance:
        for gating in BASELINES:
            blind = config.model_copy(update={"gating": gating, "guidance": ""})
            table[f"{gating} (text-blind)"] = figures(detect(cloud, blind, None, scorer, state=state))
    return table


def matched_labels(points: np.ndarray, labels: np.ndarray, kinds: dict[str, float]) -> np.ndarray:
    """The labels of the regions of the most likely kind in ``kinds`` (all of them for ``any``).

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    labels : ndarray of shape (n_points,), {0, 1}
    kinds : dict of str to float
        Kind probabilities (:meth:`agent3d.spec.DefectSpec.kinds`).

    Returns
    -------
    ndarray of shape (n_points,), uint8
    """
    kind = max(kinds, key=kinds.get)
    if kind == "any":
        return np.asarray(labels, dtype=np.uint8)
    regions, defects = region_kinds(points, labels)
    return np.isin(regions, [d.region for d in defects if d.kind == kind]).astype(np.uint8)


def verdict_line(table: dict) -> str:
    """One sentence: does the run's gating beat random and saliency on P-AUROC and regions hit?

    Parameters
    ----------
    table : dict
        From :func:`verdict`, the run's gating first.
    """
    run, figures = next(iter(table.items()))
    if strategy(run).chance or not strategy(run).budgeted or figures["p_auroc"] is None:
        return f"{run} gating: a baseline."
    rivals = [g for g in TO_BEAT if g != run]
    beaten = [g for g in rivals if table[g]["p_auroc"] is not None and figures["p_auroc"] > table[g]["p_auroc"]
              and figures["regions_hit"] >= table[g]["regions_hit"]]
    named = ", ".join(rivals[:-1]) + f" and {rivals[-1]}" if len(rivals) > 1 else rivals[0]
    if beaten == rivals:
        return f"{run} beats {named} on this cloud (P-AUROC and regions hit); one cloud is not evidence: run evaluate."
    return (f"{run} does not beat {named} on this cloud: the classical baselines point at the defect as well or "
            "better.")
