"""Guidance that steers detection: the words go to the language model, the geometry to geometry.

A guidance text ("pits are normal; report the bumps", "날카로운 모서리는 정상입니다") is read by a language model as a
text encoder: the states of the last tokens of a fixed note around the text (llama.cpp; :meth:`agent3d.llm.states.
LineStateReader.text_state`), and linear heads on that state give a defect specification (:class:`agent3d.spec.
DefectSpec`): the kind of defect asked for (raised / sunk / any), the design features called normal (edges, corners,
holes) and the size. A reader below its confidence threshold abstains. Geometry then applies it: each point's score
is weighted by how well its signed displacement (:func:`agent3d.defects.signed_displacement`) fits the kind and by
whether a normal design feature explains it (:mod:`agent3d.design_features`).

A guidance reader is a folder (``guidance.npz``: ``mean``, ``scale``, ``coef``, ``intercept`` and, for a reader of
every field, ``normal_coef`` ... ``size_intercept``; ``guidance.json``: base model name and sha256, classes,
pooling, the abstention threshold, what it was trained on; optionally ``adapter.gguf``, a LoRA adapter llama.cpp
applies to the model first), loaded without pickle. Guidance sets: :mod:`agent3d.guidance_sets`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from agent3d.base import InputError
from agent3d.defects import surface_displacement
from agent3d.design_features import feature_fit
from agent3d.llm.base import check_base_model
from agent3d.guidance_sets import MAX_GUIDANCE_TEXT
from agent3d.spec import FEATURES, KINDS, SIZES, DefectSpec

NOTE = 'An inspector wrote: "{}"\nIn one word, the defects the inspector wants reported are'
POOLINGS = {"text mean": (None, None), "note, last 8 tokens": (NOTE, 8),  # template, last tokens averaged
            "note, last token": (NOTE, 1)}
ARRAYS = ("mean", "scale", "coef", "intercept", "normal_coef", "normal_intercept", "size_coef", "size_intercept")
SHARPNESS = 1.0  # point spacings of signed displacement over which a point's weight goes from 0.27 to 0.73


def check_guidance_text(text: str, where: str) -> str:
    """A guidance text as read: refused when empty or over :data:`MAX_GUIDANCE_TEXT` characters.

    Raises
    ------
    InputError
        Naming ``where`` (the argument or ``@FILE`` as given).
    """
    if not text.strip():
        raise InputError(where, "the guidance text is empty")
    if len(text) > MAX_GUIDANCE_TEXT:
        raise InputError(where, f"the guidance text has {len(text):,} characters; at most {MAX_GUIDANCE_TEXT:,} are "
                                "read (a note of a few sentences)")
    return text.strip()


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
            self.name_, self.adapter_, self.abstain_below_ = "unsaved", None, 0.0
            return
        self.name_ = "embedded" if folder == shipped_reader_dir() else folder.name
        try:
            self.record_ = json.loads((folder / "guidance.json").read_text())
            with np.load(folder / "guidance.npz", allow_pickle=False) as data:
                self.arrays_ = {key: np.asarray(data[key], dtype=np.float64) for key in ARRAYS if key in data}
            self.classes_ = [str(c) for c in self.record_["classes"]]
            base = self.record_["base_model"]
            if not isinstance(base, dict) or not all(isinstance(base.get(k), str) for k in ("name", "sha256")):
                raise ValueError("base_model needs a name and a sha256")
            if self.record_.get("pooling") not in POOLINGS or not isinstance(base.get("model", ""), str):
                raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(folder, f"not a guidance reader ({type(error).__name__}: {str(error)[:100]})") from None
        coef, width = self.arrays_.get("coef", np.empty((0, 0))), len(self.arrays_.get("mean", ()))
        shapes = [self.arrays_[f"{field}_coef"].shape for field in ("normal", "size") if f"{field}_coef" in self.arrays_]
        if coef.shape != (len(self.classes_), width) or not set(self.classes_) <= set(KINDS) \
                or any(shape != (3, width) for shape in shapes):
            raise InputError(folder, "guidance.npz does not match its classes")
        adapter = self.record_.get("adapter")
        self.adapter_ = None if adapter is None else folder / str(adapter)
        if self.adapter_ is not None and (self.adapter_.name != adapter or not self.adapter_.is_file()):
            raise InputError(folder, f"its adapter {adapter!r} is not a file in the folder")
        self.abstain_below_ = float(self.record_.get("abstain_below", 0.0))

    def check_model(self, model: str) -> None:
        """Refuse a model other than the reader's (an embedded model's name or a GGUF file).

        Raises
        ------
        InputError
            ``model`` is another model, or not a file.
        """
        from agent3d.llm.base import file_sha256
        from agent3d.llm.embedded import model_path

        path = model_path(model)
        if not path.is_file():
            raise InputError(path, "no such model file")
        check_base_model(self.folder_, self.record_["base_model"], path.name, file_sha256([path]))

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
        coef, intercept = class_rows(model)
        self.arrays_ = {"mean": mean, "scale": scale, "coef": coef, "intercept": intercept}
        self.record_, self.adapter_, self.abstain_below_ = {"classes": self.classes_}, None, 0.0
        return self

    def predict_proba(self, states: np.ndarray, field: str = "kind") -> np.ndarray:
        """Probability of each value of ``field``: ``kind`` (ndarray of shape (n_texts, len(classes_))), ``size``
        (n_texts, 3: :data:`agent3d.spec.SIZES`), both softmax; ``normal`` (n_texts, 3: :data:`agent3d.spec.
        FEATURES`), one sigmoid each; float64."""
        prefix = "" if field == "kind" else f"{field}_"
        logits = ((np.atleast_2d(states) - self.arrays_["mean"]) / self.arrays_["scale"]) \
            @ self.arrays_[f"{prefix}coef"].T + self.arrays_[f"{prefix}intercept"]
        if field == "normal":
            return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def spec(self, state: np.ndarray) -> DefectSpec:
        """The specification of one pooled state (ndarray of shape (n_embd,)): every field this reader has heads
        for (a kind-only probe reads no normal feature and any size), abstaining below its threshold."""
        kind = dict(zip(self.classes_, (float(p) for p in self.predict_proba(state)[0])))
        kind = {k: kind.get(k, 0.0) for k in KINDS}
        normal = dict(zip(FEATURES, (float(p) for p in self.predict_proba(state, "normal")[0]))) \
            if "normal_coef" in self.arrays_ else {}
        size = dict(zip(SIZES, (float(p) for p in self.predict_proba(state, "size")[0]))) \
            if "size_coef" in self.arrays_ else {}
        return DefectSpec.from_probabilities(kind, normal, size, self.name_, self.abstain_below_)

    def read(self, reader, text: str) -> DefectSpec:
        """The specification of one guidance text, read by ``reader`` (a :class:`agent3d.llm.states.LineStateReader`
        of the model this probe was trained on, its adapter applied) with the recorded pooling.

        Raises
        ------
        InputError
            ``reader`` holds another model than the probe was trained on.
        """
        check_base_model(self.folder_, self.record_["base_model"], reader.model, reader.sha256)
        return self.spec(pooled_state(reader, text, self.record_["pooling"]))

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


def class_rows(probe) -> tuple[np.ndarray, np.ndarray]:
    """A fitted scikit-learn ``LogisticRegression``'s weights with one row per class: ndarrays of shape (n_classes,
    n_features) and (n_classes,), float64 (scikit-learn keeps one row for two classes: split evenly, as a softmax
    over the two gives the same probabilities)."""
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:
        coef, intercept = np.vstack([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    return coef, intercept


def shipped_reader_dir() -> Path:
    """The guidance reader shipped with the package (``--guidance-reader embedded``): a LoRA adapter and heads on
    Gemma 3 270M, trained on generated phrasings (docs: results, "Guidance readers")."""
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
_FEATURES: dict = {}
_READING = threading.Lock()  # one llama.cpp context per model, used by one thread at a time


def read_spec(reader: "GuidanceReader", text: str) -> DefectSpec:
    """The specification ``reader`` reads from ``text``, its model (and adapter) loaded once per process.

    Raises
    ------
    InputError
        The reader's model is another than its record names.
    agent3d.llm.base.BackendError
        The reader's model is not installed (an embedded model's message names its extra).
    """
    from agent3d.llm.states import LineStateReader

    base = reader.record_["base_model"]
    key = (base["sha256"], str(reader.adapter_))
    with _READING:
        if key not in _MODELS:
            _MODELS[key] = LineStateReader(base.get("model"), n_ctx=2048, lora=reader.adapter_)
        return reader.read(_MODELS[key], text)


def guidance_weights(points: np.ndarray, kinds: dict[str, float]) -> np.ndarray:
    """Each point's fit to the kinds read: ``sum_k p_k kind_weights(displacement, k)``.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    kinds : dict of str to float
        Kind probabilities (:meth:`agent3d.spec.DefectSpec.kinds`).

    Returns
    -------
    ndarray of shape (n_points,), float64, in (0, 1]
    """
    displacement = cloud_displacement(points)
    return sum(p * kind_weights(displacement, kind) for kind, p in kinds.items())


def spec_weights(points: np.ndarray, spec: DefectSpec) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each point's fit to a specification: :func:`guidance_weights` of its kinds times the design features'
    weights (:func:`agent3d.design_features.feature_fit`: explained points low), and what the features leave
    unexplained (:func:`cloud_feature_fit`); each None when it asks nothing (kind ``any`` or abstained; no feature):
    detection stays text-blind.

    Parameters
    ----------
    points : ndarray of shape (n_points, 3), float64
    spec : DefectSpec

    Returns
    -------
    weights : ndarray of shape (n_points,), float64, in (0, 1], or None
    unexplained : ndarray of shape (n_points,), float64, or None
    """
    kinds = spec.kinds()
    features, unexplained = cloud_feature_fit(points, spec.normal) if spec.normal else (None, None)
    if kinds.get("any", 0.0) == 1.0:
        return features, unexplained
    weights = guidance_weights(points, kinds)
    return (weights if features is None else weights * features), unexplained


def cloud_feature_fit(points: np.ndarray, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`agent3d.design_features.feature_fit` of ``points`` (the features' weights and the bends they leave
    unexplained), the last cloud's kept per feature list; two ndarrays of shape (n_points,), float64."""
    key = (hashlib.sha1(np.ascontiguousarray(points).tobytes()).hexdigest(), tuple(sorted(features)))
    with _READING:
        if _FEATURES.get("key") != key:
            _FEATURES.update(key=key, value=feature_fit(points, list(features)))
        return _FEATURES["value"]


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
