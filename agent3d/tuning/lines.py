"""Line-level training data for heads and the learned baseline: every shown line of a prompt, labeled.

A labeled cloud is sampled and verbalized exactly as ``detect`` does (same sampling, view code and prompt
template; one example per sampling seed). Each shown line gets a label (1 when its point lies within the
suspect-recall radius of an anomalous point: what the evaluation counts as a hit) and the ground-truth regions it
would hit, so a ranking of the lines can be scored by suspect recall at any number of suspects: 64 labels per
prompt instead of one generated reply.

The frozen model's per-line states (:class:`agent3d.llm.states.LineStateReader`) are cached on disk under
``$AGENT3D_CACHE_DIR/states`` (default ``~/.cache/agent3d/states``), keyed by the model's sha256 and the prompt's
tokens, so a head is retrained in seconds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from agent3d.agent import prompt_messages
from agent3d.cloud import PointCloud
from agent3d.evaluation.metrics import gt_regions, region_radius
from agent3d.file_checks import InputError, make_folder
from agent3d.geometry import CloudContext
from agent3d.gating import saliency_seeds
from agent3d.learned import line_features
from agent3d.llm.base import Messages
from agent3d.llm.cache import cache_dir
from agent3d.prompts import PromptTemplate
from agent3d.sampling import sample
from agent3d.verbalize import POINT_FORMATS, View, shown_view


@dataclass
class LineExample:
    """One prompt and a label per shown line.

    Attributes
    ----------
    source : str
        The cloud file and the sampling seed (``FILE#SEED``).
    cloud : str
        The cloud file (examples of one cloud never straddle a train / validation split).
    messages : list of dict
        Chat messages exactly as ``detect`` sends them in round 1 (lines in view order).
    reversed_messages : list of dict
        The same prompt with the lines in reverse order (for a second, backward reading).
    ids : list of str
        Line ids in view order.
    labels : ndarray of shape (n_lines,), uint8
        1 where the line's point is within the suspect-recall radius of an anomalous point.
    hits : ndarray of shape (n_lines, n_regions), bool
        Which ground-truth regions each line would hit as a suspect.
    features : ndarray of shape (n_lines, 12), float64
        The numbers the line shows (:func:`agent3d.learned.line_features`).
    salience : ndarray of shape (n_lines,), float64
        The saliency rule's score (higher first), for the baseline ranking.
    states : ndarray of shape (n_lines, n_embd), float32, optional
        Filled by :func:`read_states`.
    """

    source: str
    cloud: str
    messages: Messages
    reversed_messages: Messages
    ids: list[str]
    labels: np.ndarray
    hits: np.ndarray
    features: np.ndarray
    salience: np.ndarray
    states: np.ndarray | None = field(default=None, repr=False)


def line_examples(cloud: PointCloud, prompt: PromptTemplate, n_points: int, seeds: list[int],
                  sampling: str = "fps", guidance: str = "", max_suspects: int = 8) -> list[LineExample]:
    """One :class:`LineExample` per sampling seed of a labeled cloud.

    Parameters
    ----------
    cloud : PointCloud
        With ``labels``.
    prompt : PromptTemplate
        A point-format prompt (``xyz`` or ``xyz+geom``).
    n_points : int
        Points shown.
    seeds : list of int
    sampling : {"fps", "voxel"}, default "fps"
    guidance : str, default ""
    max_suspects : int, default 8
        What the prompt says the model may name.

    Raises
    ------
    ValueError
        A ``regions`` prompt (heads read point lines).
    """
    if prompt.format not in POINT_FORMATS:
        raise InputError("--prompt", f"'{prompt.name}' shows regions; heads and the learned baseline read point lines")
    points, labels = cloud.points, cloud.labels
    radius = region_radius(points)
    regions = gt_regions(points, labels, radius)
    anomalous = np.flatnonzero(labels)
    tree = cKDTree(points[anomalous]) if len(anomalous) else None
    examples = []
    for seed in seeds:
        context = CloudContext(points, seed=seed)
        shown = sample(points, n_points, sampling, seed=seed)
        view = shown_view(context, shown, prompt.format)
        geom = view if view.digits is not None else shown_view(context, shown, "xyz+geom")
        render = prompt_messages(prompt, "user", view, len(points), guidance, max_suspects)
        rows = np.arange(len(view.lines))
        near = _region_hits(points, view, regions, radius, tree)
        geometry = context.geometry(view.indices)
        order = saliency_seeds(np.arange(len(rows)), geometry.curvature, geometry.residual, len(rows))
        salience = np.empty(len(rows))
        salience[order] = np.arange(len(rows), 0, -1)
        examples.append(LineExample(
            source=f"{cloud.source}#{seed}", cloud=str(cloud.source), messages=render(rows),
            reversed_messages=render(rows[::-1]), ids=list(view.ids), labels=near.any(axis=1).astype(np.uint8),
            hits=near, features=line_features(geom), salience=salience))
    return examples


def _region_hits(points: np.ndarray, view: View, regions: np.ndarray, radius: float, tree) -> np.ndarray:
    """(n_lines, n_regions) bool: the line's point within ``radius`` of a point of the region."""
    n_regions = int(regions.max()) + 1 if (regions >= 0).any() else 0
    hits = np.zeros((len(view.indices), n_regions), dtype=bool)
    if tree is None or n_regions == 0:
        return hits
    anomalous = np.flatnonzero(regions >= 0)
    for row, near in enumerate(tree.query_ball_point(points[view.indices], r=radius)):
        hits[row, np.unique(regions[anomalous[near]])] = True
    return hits


def recall_at(examples: list[LineExample], scores: list[np.ndarray], k: int) -> tuple[int, int]:
    """Ground-truth regions hit by the ``k`` top-scored lines of each example, and regions in all.

    Parameters
    ----------
    examples : list of LineExample
    scores : list of ndarray of shape (n_lines,)
        One ranking score per line of each example (higher first; ties by line order).
    k : int

    Returns
    -------
    hit, total : int
    """
    hit = total = 0
    for example, score in zip(examples, scores):
        top = np.argsort(-np.asarray(score), kind="stable")[:k]
        hit += int(example.hits[top].any(axis=0).sum())
        total += example.hits.shape[1]
    return hit, total


def read_states(reader, examples: list[LineExample], both_directions: bool = False, on_example=None) -> None:
    """Fill ``states`` of every example from the frozen model (cached on disk).

    Parameters
    ----------
    reader : LineStateReader
    examples : list of LineExample
    both_directions : bool, default False
        Concatenate the states of a second reading with the lines reversed (n_embd * 2 columns).
    on_example : callable, optional
        Called with (number done, total) after each example.
    """
    for number, example in enumerate(examples, start=1):
        parts = [_cached(reader, example.messages, example.ids)]
        if both_directions:
            parts.append(_cached(reader, example.reversed_messages, example.ids))
        example.states = np.hstack(parts)
        if on_example:
            on_example(number, len(examples))


def _cached(reader, messages: Messages, ids: list[str]) -> np.ndarray:
    key = hashlib.sha256(repr((reader.sha256, reader.tokens(messages), ids)).encode()).hexdigest()
    file = cache_dir("states") / f"{key}.npy"
    if file.is_file():
        try:
            return np.load(file, allow_pickle=False)
        except (OSError, ValueError):
            file.unlink(missing_ok=True)  # a torn cache entry is read again
    states = reader.line_states(messages, ids)[0]
    make_folder(file.parent)
    tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, states)
    tmp.replace(file)
    return states
