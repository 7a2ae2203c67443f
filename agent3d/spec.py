"""The defect specification a guidance text is read into: which kind of defect to report, which design features are
normal, which size matters, and how sure the reader is of each.

It is the one structure between the words and the geometry (:mod:`agent3d.guidance` reads it, :mod:`agent3d.
pipeline` applies it, ``detect --json``, the run record and ``agent3d guidance read`` print it). A reader that is
not sure of the kind abstains: the kind is ``any`` and detection is text-blind for the kind.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KINDS = ("raised", "sunk", "any")
FEATURES = ("edges", "corners", "holes")  # design features a text may call normal
SIZES = ("small", "large", "any")
FEATURE_WORDS = {"edges": "sharp edges", "corners": "corners", "holes": "holes by design"}


class Probabilities(BaseModel):
    """The reader's probability of each field's value: ``kind`` and ``size`` distributions, ``normal`` one
    probability per feature (that the text calls it normal)."""

    model_config = ConfigDict(extra="forbid")

    kind: dict[Literal[KINDS], float]
    normal: dict[Literal[FEATURES], float] = Field(default_factory=dict)
    size: dict[Literal[SIZES], float] = Field(default_factory=dict)

    @field_validator("kind", "normal", "size")
    @classmethod
    def _unit(cls, value: dict) -> dict:
        if any(not 0.0 <= p <= 1.0 for p in value.values()):
            raise ValueError("probabilities lie in [0, 1]")
        return value


class DefectSpec(BaseModel):
    """A defect specification.

    Attributes
    ----------
    kind : {"raised", "sunk", "any"}
        Raised: material above the surface (bumps, spatter, burrs); sunk: below it (pits, dents, pores); any.
    normal : list of {"edges", "corners", "holes"}
        Design features the text calls normal (sorted, unique): a sharp edge (two planes meeting), a corner (three),
        a hole by design.
    size : {"small", "large", "any"}, default "any"
    probabilities : Probabilities
    reader : str
        The reader that read it (``embedded``, a folder's name, ``given``).
    abstained : bool
        The reader was not sure of the kind (below its threshold): ``kind`` is ``any``.

    Raises
    ------
    pydantic.ValidationError
        An unknown value, a probability outside [0, 1], a kind distribution not summing to 1.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal[KINDS] = "any"
    normal: list[Literal[FEATURES]] = Field(default_factory=list)
    size: Literal[SIZES] = "any"
    probabilities: Probabilities
    reader: str = "given"
    abstained: bool = False

    @field_validator("normal")
    @classmethod
    def _sorted(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _distribution(self) -> "DefectSpec":
        total = sum(self.probabilities.kind.values())
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"kind probabilities sum to {total:.3f}, not 1")
        return self

    @classmethod
    def given(cls, kind: str, normal: list[str] | None = None, size: str = "any") -> "DefectSpec":
        """A specification known for certain (the benchmark's "kind given" rows, a user's own)."""
        return cls(kind=kind, normal=normal or [], size=size, reader="given",
                   probabilities=Probabilities(kind={k: float(k == kind) for k in KINDS},
                                               normal={f: float(f in (normal or [])) for f in FEATURES},
                                               size={s: float(s == size) for s in SIZES}))

    @classmethod
    def from_probabilities(cls, kind: dict[str, float], normal: dict[str, float], size: dict[str, float],
                           reader: str, abstain_below: float = 0.0) -> "DefectSpec":
        """The specification a reader's probabilities give: the most likely kind unless its probability is below
        ``abstain_below`` (then ``any``, abstained), each feature whose probability is at least one half, the most
        likely size.

        Parameters
        ----------
        kind, normal, size : dict of str to float
        reader : str
        abstain_below : float, default 0.0
            The reader's confidence threshold (chosen on its training phrasings).
        """
        best = max(kind, key=kind.get)
        abstained = kind[best] < abstain_below
        sized = max(size, key=size.get) if size else "any"
        return cls(kind="any" if abstained else best, normal=[f for f, p in normal.items() if p >= 0.5],
                   size=sized, reader=reader, abstained=abstained,
                   probabilities=Probabilities(kind=kind, normal=normal, size=size))

    def kinds(self) -> dict[str, float]:
        """The kind weights detection applies: the kind read for certain, or all ``any`` when abstained."""
        if self.abstained:
            return {"any": 1.0}
        return dict(self.probabilities.kind)

    def line(self) -> str:
        """One line saying what was understood and how sure the reader is."""
        p = self.probabilities
        if self.abstained:
            best = max(p.kind, key=p.kind.get)
            head = (f"not understood (kind: {best} at {p.kind[best]:.2f}, below the reader's threshold): "
                    f"every kind is reported")
        else:
            head = f"kind {self.kind} ({p.kind.get(self.kind, 1.0):.2f})"
        normal = ", ".join(f"{FEATURE_WORDS[f]} ({p.normal.get(f, 1.0):.2f})" for f in self.normal) or "nothing"
        size = self.size if self.size == "any" else f"{self.size} ({p.size.get(self.size, 1.0):.2f})"
        return f"{head}; normal: {normal}; size: {size} [reader {self.reader}]"

    def summary(self) -> dict:
        """The JSON shape ``guidance read --json`` prints: ``{"kind", "normal", "size", "probabilities", "reader",
        "abstained"}``."""
        return self.model_dump()
