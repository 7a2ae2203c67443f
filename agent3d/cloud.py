"""The shared vocabulary: point clouds, suspects and detections.

Every stage of the pipeline talks through these types; this module imports no other
module of the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

MIN_POINTS = 16


@dataclass
class PointCloud:
    """A point cloud with optional ground truth.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
        Coordinates, in the file's units (unit-free everywhere in agent3d).
    labels : ndarray of shape (n_points,), uint8, optional
        Ground-truth mask, 1 = anomalous point, 0 = normal. ``None`` when unknown.
    source : str, default ""
        Where the cloud came from (a path), used in messages.
    """

    points: np.ndarray
    labels: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def diagonal(self) -> float:
        """Length of the axis-aligned bounding box diagonal, in the cloud's units."""
        return float(np.linalg.norm(self.points.max(axis=0) - self.points.min(axis=0)))


class Suspect(BaseModel):
    """One point the language model suspects, as it answered (the response schema).

    Parameters
    ----------
    id : str
        The short point id shown in the prompt, e.g. ``"p17"``.
    confidence : float in [0, 1]
        The model's confidence that the point lies on a defect.
    reason : str
        A few words on why (at most 60 characters).
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(max_length=12)
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field(default="", max_length=60)


class SuspectList(BaseModel):
    """The structured reply the language model must produce (the schema sent narrows ``maxItems`` to
    ``--max-suspects``; validation keeps at most that many)."""

    model_config = ConfigDict(extra="forbid")

    suspects: list[Suspect] = Field(default_factory=list)


@dataclass
class ResolvedSuspect:
    """A validated suspect mapped back to the full cloud.

    Parameters
    ----------
    id : str
        The id shown to the model.
    index : int
        Index of the point in the full cloud (row of ``PointCloud.points``).
    xyz : tuple of 3 floats
        Coordinates of that point, in the cloud's units.
    confidence : float in [0, 1]
    reason : str
    """

    id: str
    index: int
    xyz: tuple[float, float, float]
    confidence: float
    reason: str

    def to_json(self) -> dict:
        return {"id": self.id, "index": self.index, "xyz": list(self.xyz),
                "confidence": self.confidence, "reason": self.reason}


@dataclass
class LLMReport:
    """What happened between the pipeline and the language model for one cloud.

    Attributes
    ----------
    calls : int
        Requests sent (retries of unusable replies included; a cache hit counts as a call).
    transport_retries : int
        Requests repeated after a transport failure (429, 5xx, timeout, dropped connection).
    cached : int
        Calls answered from the reply cache.
    tiles : int
        Spatial tiles the verbalized view was split into to honour the token budget.
    dropped : dict of str to int
        Suspects dropped by validation: ``invalid`` (bad item), ``unknown_id``, ``duplicate``.
    failures : list of str
        One message per tile whose replies stayed unparsable after all retries; that tile
        then contributes no suspects.
    prompt_tokens, completion_tokens : int
        Token usage as reported by the backend, summed over calls.
    seconds : float
        Wall time spent waiting for the backend.
    replies : list of str
        Every raw reply, in order.
    rounds : list of dict
        Per agent round: calls, tokens, seconds, points shown, its raw replies and its final ids.
    """

    calls: int = 0
    transport_retries: int = 0
    cached: int = 0
    tiles: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"invalid": 0, "unknown_id": 0, "duplicate": 0})
    failures: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    replies: list[str] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"calls": self.calls, "transport_retries": self.transport_retries, "cached": self.cached,
                "tiles": self.tiles, "dropped": dict(self.dropped),
                "failures": list(self.failures), "seconds": round(self.seconds, 3),
                "replies": list(self.replies), "rounds": list(self.rounds)}


@dataclass
class Detection:
    """The result of running the pipeline on one cloud.

    Attributes
    ----------
    object_score : float
        Anomaly score of the whole object (max of the smoothed point scores).
    scores : ndarray of shape (n_points,), float64
        Anomaly score of every full-cloud point; unscored points hold the floor.
    scored : ndarray of shape (n_points,), bool
        Which points the scorer touched.
    suspects : list of ResolvedSuspect
        Final suspects, highest confidence first.
    seconds : float
        Wall time end to end, reading excluded.
    scoring_seconds : float
        Of ``seconds``, the time in the classical scorer (a coarse pass's included); the model's share is
        ``llm.seconds``, the rest is gating (sampling, geometry, seeds, growth, guidance).
    backend, model, prompt : str or None
        What produced the suspects; ``None`` when no language model was asked.
    gating, scorer : str
        Gating strategy and scorer name.
    reference : list of str
        Reference clouds of the memory bank (empty for the self-reference scorer).
    seeds : list of int
        Full-cloud indices the gating grew its neighbourhoods from (suspects, salient or random points).
    registration : dict or None
        Transform, fitness, inlier RMSE and reference of the alignment (registration and fused scorers).
    budget : float
        Fraction of full-cloud points the scorer was allowed to touch.
    llm : LLMReport or None
        Token usage, dropped items, failures and raw replies.
    guidance : dict or None
        When a guidance reader weighted the scores (:mod:`agent3d.guidance`): ``{"reader", "kinds"}``, the reader's
        folder name and the probability of each kind it read from ``--guidance``; None otherwise.
    """

    object_score: float
    scores: np.ndarray
    scored: np.ndarray
    suspects: list[ResolvedSuspect]
    seconds: float
    backend: str | None
    model: str | None
    prompt: str | None
    gating: str
    scorer: str
    budget: float
    reference: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    registration: dict | None = None
    llm: LLMReport | None = None
    guidance: dict | None = None
    scoring_seconds: float = 0.0

    @property
    def n_points(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())

    def to_json(self) -> dict:
        """The JSON object of the ``detect --json`` contract (docs/design.md, "Contracts"), plus diagnostics."""
        llm = self.llm or LLMReport()
        return {
            "object_score": self.object_score,
            "suspects": [s.to_json() for s in self.suspects],
            "n_points": self.n_points,
            "n_scored": self.n_scored,
            "tokens": {"prompt": llm.prompt_tokens, "completion": llm.completion_tokens},
            "seconds": round(self.seconds, 3),
            "scoring_seconds": round(self.scoring_seconds, 3),
            "backend": self.backend,
            "model": self.model,
            "prompt": self.prompt,
            "gating": self.gating,
            "budget": self.budget,
            "scorer": self.scorer,
            "reference": list(self.reference),
            "seeds": list(self.seeds),
            "registration": self.registration,
            "llm": self.llm.to_json() if self.llm else None,
            "guidance": self.guidance,
        }
