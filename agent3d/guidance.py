"""Guidance that steers detection: the words go to the language model, the geometry to geometry.

A guidance text ("pits are normal; report the bumps") is read by the language model as a text encoder: the mean of
its per-token states of the text alone (llama.cpp, the frozen model; :meth:`agent3d.llm.states.LineStateReader.
text_state`), and a linear probe on that state (Alain & Bengio, 2016) says which kind of defect the text asks for:
``raised``, ``sunk`` or ``any`` — a small validated specification. Geometry then applies it: each point's score is
weighted by how well its signed displacement (:func:`agent3d.defects.signed_displacement`) fits the kind, so a
region of the other kind is no longer reported as a defect.

A guidance reader is a folder (``guidance.npz``: ``mean``, ``scale``, ``coef``, ``intercept``; ``guidance.json``:
base model name and sha256, classes, pooling, the phrasings it was trained on and its held-out accuracy), loaded
without pickle. Guidance sets (``evaluate --guidance-set``) are TOML files of ``[[guidance]]`` entries with ``text``,
``kind`` and ``split`` (``train`` / ``held-out``); one ships (:func:`shipped_guidance_set`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent3d.base import InputError
from agent3d.defects import surface_displacement
from agent3d.file_checks import check_file
from agent3d.llm.base import check_base_model

KINDS = ("raised", "sunk", "any")
NOTE = 'An inspector wrote: "{}"\nIn one word, the defects the inspector wants reported are'
POOLINGS = {"text mean": (None, None), "note, last 8 tokens": (NOTE, 8)}  # template, last tokens averaged
MAX_GUIDANCE_FILE = 1 << 20  # bytes; a guidance set is a few kilobytes of phrasings
SHARPNESS = 1.0  # point spacings of signed displacement over which a point's weight goes from 0.27 to 0.73


class GuidanceEntry(BaseModel):
    """One phrasing of a guidance set."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=2000)
    kind: Literal[KINDS]
    split: Literal["train", "held-out"] = "held-out"


class GuidanceSet(BaseModel):
    """A guidance set: ``[[guidance]]`` entries."""

    model_config = ConfigDict(extra="forbid")

    guidance: list[GuidanceEntry] = Field(min_length=1)

    def of(self, split: str) -> list[GuidanceEntry]:
        """The entries of ``split`` (``train`` or ``held-out``), in file order."""
        return [entry for entry in self.guidance if entry.split == split]


def shipped_guidance_set() -> Path:
    """The guidance set shipped with the package (36 raised, 36 sunk and 6 any phrasings, split once, by position,
    before any training)."""
    return Path(__file__).resolve().parent / "shipped" / "guidance.toml"


def guidance_set_path(path: str | Path) -> Path:
    """The file a guidance set argument names: ``embedded`` is :func:`shipped_guidance_set`."""
    return shipped_guidance_set() if str(path) == "embedded" else Path(path)


def read_guidance_set(path: str | Path) -> GuidanceSet:
    """Read and validate a guidance set (a TOML file, or ``embedded``: the shipped one).

    Raises
    ------
    InputError
        A missing or oversized file (over 1 MiB), not TOML, an unknown kind or field, a missing or empty text.
    """
    import tomllib

    path = check_file(guidance_set_path(path))  # a FIFO or device would block the read
    try:
        if path.stat().st_size > MAX_GUIDANCE_FILE:
            raise InputError(path, f"a guidance set is at most {MAX_GUIDANCE_FILE} bytes")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read the guidance set ({type(error).__name__})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(path, f"not valid TOML ({error})") from None
    try:
        return GuidanceSet.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(path, f"{where}: {first['msg']}") from None


class GuidanceReader:
    """A linear probe on the pooled state of a guidance text: which kind of defect the words ask for.

    Parameters
    ----------
    folder : str or Path, optional
        A saved reader (``guidance.npz`` + ``guidance.json``); None for an unfitted one (:meth:`fit`).

    Attributes
    ----------
    classes_ : list of str
        The kinds, in the order of the probe's outputs.
    record_ : dict
        ``guidance.json``.
    name_ : str
        The folder's name (``embedded`` for the shipped reader).
    folder_ : Path or None
        Where it was read from (what a refusal names).

    Raises
    ------
    InputError
        A missing or malformed file.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder_ = folder = None if folder is None else Path(folder)
        if folder is None:
            return
        self.name_ = "embedded" if folder == shipped_reader_dir() else folder.name
        try:
            self.record_ = json.loads((folder / "guidance.json").read_text())
            with np.load(folder / "guidance.npz", allow_pickle=False) as data:
                self.arrays_ = {key: np.asarray(data[key], dtype=np.float64) for key in ("mean", "scale", "coef",
                                                                                        "intercept")}
            self.classes_ = [str(c) for c in self.record_["classes"]]
            base = self.record_["base_model"]
            if not isinstance(base, dict) or not all(isinstance(base.get(k), str) for k in ("name", "sha256")):
                raise ValueError("base_model needs a name and a sha256")
            if self.record_.get("pooling") not in POOLINGS or not isinstance(base.get("model", ""), str):
                raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(folder, f"not a guidance reader ({type(error).__name__}: {str(error)[:100]})") from None
        coef = self.arrays_["coef"]
        if coef.shape != (len(self.classes_), len(self.arrays_["mean"])) or not set(self.classes_) <= set(KINDS):
            raise InputError(folder, "guidance.npz does not match its classes")

    def fit(self, states: np.ndarray, kinds: list[str], strength: float = 1.0, seed: int = 0) -> "GuidanceReader":
        """Fit the probe (multinomial logistic regression on standardised states).

        Parameters
        ----------
        states : ndarray of shape (n_texts, n_embd), float
            Pooled states of the training phrasings.
        kinds : list of str
            Their kinds.
        strength : float, default 1.0
            Inverse L2 regularisation (scikit-learn's ``C``).
        seed : int, default 0

        Returns
        -------
        self
        """
        from sklearn.linear_model import LogisticRegression

        states = np.asarray(states, dtype=np.float64)
        mean, scale = states.mean(axis=0), states.std(axis=0) + 1e-6
        model = LogisticRegression(C=strength, max_iter=5000, random_state=seed).fit((states - mean) / scale, kinds)
        self.classes_ = [str(c) for c in model.classes_]
        coef, intercept = model.coef_, model.intercept_
        if len(self.classes_) == 2:  # scikit-learn keeps one row for two classes
            coef, intercept = np.vstack([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        self.arrays_ = {"mean": mean, "scale": scale, "coef": coef, "intercept": intercept}
        self.record_ = {"classes": self.classes_}
        return self

    def predict_proba(self, states: np.ndarray) -> np.ndarray:
        """Probability of each kind; ndarray of shape (n_texts, len(classes_)), float64."""
        logits = ((np.atleast_2d(states) - self.arrays_["mean"]) / self.arrays_["scale"]) @ self.arrays_["coef"].T \
            + self.arrays_["intercept"]
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def read(self, reader, text: str) -> dict[str, float]:
        """The probability of each kind for one guidance text, read by ``reader`` (a
        :class:`agent3d.llm.states.LineStateReader` of the model this probe was trained on) with the recorded
        pooling.

        Raises
        ------
        InputError
            ``reader`` holds another model than the probe was trained on.
        """
        check_base_model(self.folder_, self.record_["base_model"], reader.model, reader.sha256)
        probabilities = self.predict_proba(pooled_state(reader, text, self.record_["pooling"]))[0]
        return {kind: float(p) for kind, p in zip(self.classes_, probabilities)}

    def predict(self, states: np.ndarray) -> list[str]:
        """The most likely kind of each text."""
        return [self.classes_[i] for i in np.argmax(self.predict_proba(states), axis=1)]

    def save(self, folder: str | Path, record: dict) -> None:
        """Write ``guidance.npz`` and ``guidance.json`` (``record`` plus the classes) into ``folder``."""
        from agent3d.outputs import write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "guidance.npz", **self.arrays_)
        self.record_ = {**record, "classes": self.classes_}
        write_json(folder / "guidance.json", self.record_)


def shipped_reader_dir() -> Path:
    """The guidance reader shipped with the package (``--guidance-reader embedded``): a probe on Gemma 3 270M's
    states, trained on the shipped set's training phrasings (README, "Guidance")."""
    return Path(__file__).resolve().parent / "shipped" / "guidance-reader"


def resolve_reader(value: str | None) -> "GuidanceReader | None":
    """The reader ``--guidance-reader`` names: ``embedded`` (the shipped one), a folder, or ``none`` / None; its model
    is located (an embedded one assembled) so that a missing one is refused before any work.

    Raises
    ------
    InputError
        A folder that is not a guidance reader.
    agent3d.llm.base.BackendError
        Its model is an embedded model that is not installed (the message names the extra).
    """
    from agent3d.llm.base import BackendError
    from agent3d.llm.embedded import model_path

    if not value or value == "none":
        return None
    reader = GuidanceReader(shipped_reader_dir() if value == "embedded" else value)
    try:
        model_path(reader.record_["base_model"].get("model"))
    except BackendError as error:
        raise BackendError(f"the guidance reader needs its model: {error}; or --guidance-reader none") from None
    return reader


_MODELS: dict = {}
_DISPLACEMENT: dict = {}
_READING = threading.Lock()  # one llama.cpp context per model, used by one thread at a time


def read_kinds(reader: "GuidanceReader", text: str) -> dict[str, float]:
    """The kind probabilities ``reader`` reads from ``text``, its model loaded once per process.

    Raises
    ------
    InputError
        The reader's model is another than its record names.
    agent3d.llm.base.BackendError
        The reader's model is not installed (an embedded model's message names its extra).
    """
    from agent3d.llm.states import LineStateReader

    base = reader.record_["base_model"]
    with _READING:
        if base["sha256"] not in _MODELS:
            _MODELS[base["sha256"]] = LineStateReader(base.get("model"), n_ctx=2048)
        return reader.read(_MODELS[base["sha256"]], text)


def guidance_weights(points: np.ndarray, kinds: dict[str, float]) -> np.ndarray:
    """Each point's fit to the kinds read: ``sum_k p_k kind_weights(displacement, k)``.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    kinds : dict of str to float
        From :func:`read_kinds`.

    Returns
    -------
    ndarray of shape (n_points,), float64, in (0, 1]
    """
    displacement = cloud_displacement(points)
    return sum(p * kind_weights(displacement, kind) for kind, p in kinds.items())


def cloud_displacement(points: np.ndarray) -> np.ndarray:
    """:func:`agent3d.defects.surface_displacement` of ``points``, the last cloud's kept (detect's verdict and the
    guidance benchmark weight the same cloud many times); ndarray of shape (n_points,), float64, point spacings."""
    key = hashlib.sha1(np.ascontiguousarray(points).tobytes()).hexdigest()
    with _READING:
        if _DISPLACEMENT.get("key") != key:
            _DISPLACEMENT.update(key=key, value=surface_displacement(points))
        return _DISPLACEMENT["value"]


def guided_scores(scores: np.ndarray, scored: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Scores after guidance: each scored point's score times its weight, the rest the new floor (the lowest weighted
    score), as :func:`agent3d.scoring.propagate` gives it — points the scorer never checked stay ungraded.

    Parameters
    ----------
    scores : ndarray of shape (n_points,), float64
    scored : ndarray of shape (n_points,), bool
    weights : ndarray of shape (n_points,), float64
        From :func:`guidance_weights` (or one kind's :func:`kind_weights`).

    Returns
    -------
    ndarray of shape (n_points,), float64
    """
    weighted = scores[scored] * weights[scored]
    guided = np.full(len(scores), weighted.min() if len(weighted) else 0.0)
    guided[scored] = weighted
    return guided


def pooled_state(reader, text: str, pooling: str) -> np.ndarray:
    """The state of ``text`` under ``pooling`` (a key of :data:`POOLINGS`) read by ``reader``
    (:class:`agent3d.llm.states.LineStateReader`); ndarray of shape (n_embd,), float32."""
    template, last = POOLINGS[pooling]
    return reader.text_state(template.format(text) if template else text, last)


def kind_weights(displacement: np.ndarray, kind: str) -> np.ndarray:
    """How well each point fits the asked kind: a sigmoid of its signed displacement (raised: positive, sunk:
    negative), ones for ``any``.

    Parameters
    ----------
    displacement : ndarray of shape (n_points,), float64
        Signed displacement in point spacings (:func:`agent3d.defects.signed_displacement`).
    kind : {"raised", "sunk", "any"}

    Returns
    -------
    ndarray of shape (n_points,), float64, in (0, 1]
    """
    if kind == "any":
        return np.ones(len(displacement))
    sign = 1.0 if kind == "raised" else -1.0
    return 1.0 / (1.0 + np.exp(-np.clip(sign * np.asarray(displacement) / SHARPNESS, -50, 50)))
