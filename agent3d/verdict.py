"""The first screen's answer to "did the language model help?": for a cloud with ground truth, the run's P-AUROC
and how many ground-truth regions got a suspect (or seed), next to the same two figures for the learned (no-LLM),
saliency, random and all gatings on the same cloud with the same scorer and budget (no model call; seconds)."""

from __future__ import annotations


from agent3d.cloud import Detection, PointCloud
from agent3d.config import DetectConfig
from agent3d.evaluation.metrics import GroundTruth, auroc
from agent3d.gating import TO_BEAT, strategy
from agent3d.pipeline import detect

BASELINES = ("learned", "saliency", "random", "all")


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
    """
    truth = GroundTruth.of(cloud.points, cloud.labels)

    def figures(found: Detection) -> dict:
        hit, total = truth.regions_hit(found.seeds)
        return {"p_auroc": auroc(cloud.labels, found.scores),
                "regions_hit": hit if strategy(found.gating).budgeted else None,
                "regions": total}

    table = {result.gating: figures(result)}
    for gating in BASELINES:
        if gating not in table:
            table[gating] = figures(detect(cloud, config.model_copy(update={"gating": gating}), None, scorer))
    return table


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
    if beaten == rivals:
        return (f"{run} beats {' and '.join(beaten)} on this cloud (P-AUROC and regions hit); one cloud is not "
                "evidence: run evaluate.")
    return (f"{run} does not beat {' and '.join(rivals)} on this cloud: the classical baselines point at the defect "
            "as well or better.")
