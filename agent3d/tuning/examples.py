"""Training examples for tuning: what ``detect`` shows the model, and the reply it should give.

A labeled cloud is sampled and verbalized exactly as ``detect`` does (the same sampling, the same view
code, the same prompt template); several samplings per cloud (different seeds) serve as augmentation.
The target reply names the shown ids that lie on the ground-truth anomaly (on an anomalous point, or
within the suspect-recall radius of one: what the evaluation counts as a hit), nearest the defect's
centre first, at most the suspect limit; a normal sample, or one whose defect no shown point touches,
gets an empty list. For the ``regions`` format the targets are the regions holding such points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from agent3d.agent import MAX_SUSPECTS, prompt_messages, suspect_schema
from agent3d.cloud import PointCloud
from agent3d.evaluation.metrics import region_radius
from agent3d.geometry import CloudContext
from agent3d.llm.base import Messages
from agent3d.prompts import PromptTemplate
from agent3d.sampling import sample
from agent3d.verbalize import overview_of, shown_view

TARGET_CONFIDENCE = 0.9
TARGET_REASON = ""  # the reason costs reply tokens and carries nothing the labels can teach


@dataclass
class TuneExample:
    """One prompt and the reply the model should give.

    Attributes
    ----------
    messages : list of dict
        Chat messages, exactly as ``detect`` would send them in round 1.
    target : str
        The reply (JSON text in the suspect schema).
    schema : dict
        The response schema with the shown ids (for constrained decoding in validation).
    positives : list of str
        Ids the target names.
    has_defect : bool
        Whether the cloud has any anomalous point.
    source : str
        The cloud file and the sampling seed, for reports.
    """

    messages: Messages
    target: str
    schema: dict
    positives: list[str]
    has_defect: bool
    source: str


def target_reply(ids: list[str]) -> str:
    """The JSON reply naming ``ids`` (the format constrained decoding produces: ``", "`` and ``": "``)."""
    return json.dumps({"suspects": [{"id": i, "confidence": TARGET_CONFIDENCE, "reason": TARGET_REASON}
                                    for i in ids]})


def positive_rows(points: np.ndarray, labels: np.ndarray, rows_points: list[np.ndarray],
                  radius: float) -> list[int]:
    """Rows (of a view) holding a point on the anomaly, nearest the anomaly's centroid first.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    labels : ndarray of shape (n_points,), {0, 1}
    rows_points : list of ndarray of int64
        Full-cloud indices behind each view row (one point per row, or a region's members).
    radius : float
        A point within ``radius`` of an anomalous point counts as on it.

    Returns
    -------
    list of int
        At most ``MAX_SUSPECTS`` rows.
    """
    anomalous = np.flatnonzero(labels)
    if len(anomalous) == 0:
        return []
    tree = cKDTree(points[anomalous])
    centre = points[anomalous].mean(axis=0)
    hits = []
    for row, members in enumerate(rows_points):
        distance, _ = tree.query(points[members])
        if np.min(distance) <= radius:
            hits.append((float(np.min(np.linalg.norm(points[members] - centre, axis=1))), row))
    return [row for _, row in sorted(hits)[:MAX_SUSPECTS]]


def cloud_examples(cloud: PointCloud, prompt: PromptTemplate, n_points: int, seeds: list[int],
                   sampling: str = "fps", guidance: str = "") -> list[TuneExample]:
    """One example per seed for a labeled cloud.

    Parameters
    ----------
    cloud : PointCloud
        With ``labels``.
    prompt : PromptTemplate
    n_points : int
        Points shown (``--n-points``).
    seeds : list of int
        Sampling seeds, one example each.
    sampling : {"fps", "voxel"}, default "fps"
    guidance : str, default ""
        Text guidance shown by the templates.

    Returns
    -------
    list of TuneExample
    """
    points, labels = cloud.points, cloud.labels
    radius = region_radius(points)
    examples = []
    for seed in seeds:
        context = CloudContext(points, seed=seed)
        view = shown_view(context, sample(points, n_points, sampling, seed=seed), prompt.format)
        overview, members = overview_of(context, view, prompt.format)
        rows_points = ([view.indices[m] for m in members] if members is not None
                       else [np.array([i]) for i in overview.indices])
        rows = positive_rows(points, labels, rows_points, radius)
        ids = [overview.ids[r] for r in rows]
        messages = prompt_messages(prompt, "user", overview, len(points), guidance=guidance)(
            np.arange(len(overview.lines)))
        examples.append(TuneExample(messages=messages, target=target_reply(ids), schema=suspect_schema(overview.ids),
                                    positives=ids, has_defect=bool(labels.any()), source=f"{cloud.source}#{seed}"))
    return examples
