"""The guidance benchmark (``evaluate --guidance-set FILE.toml``): does the text change what is found, where only
the text can make a difference?

Per entry of a guidance set, the ground truth is the regions of the entry's kind (:func:`agent3d.defects.
region_kinds`; the other kind counts as normal, ``any`` keeps every region). For every run of the evaluation (its
stored per-point scores) three kinds of row:

- ``RUN``: the text-blind run as it is: the same scores under every entry, so its flip AUROC is exactly 0.5;
- ``RUN + guidance NAME``: what ``detect --guidance`` does with the kind a guidance reader
  (:class:`agent3d.guidance.GuidanceReader`) reads from the entry's text: each point's fit ``w = sum_k p(k | text)
  kind_weights(displacement, k)`` steers the seeds of a gating that follows guidance (:attr:`agent3d.gating.Gating.
  follows_guidance`; the cloud is gated and scored again, through :func:`agent3d.pipeline.detect`) and weights the
  scored points' scores (:func:`agent3d.guidance.guided_scores`); other runs' stored scores are weighted;
- ``RUN + guidance NAME, blind seeds`` (gatings that follow guidance only): the stored text-blind run's scores
  weighted, its seeds unchanged: what the seeds' steering adds;
- ``RUN + kind given`` (and ``, blind seeds``): the same with the entry's true kind (what a perfect reader would
  reach: the geometry's part alone).

Figures per row and split (``train`` / ``held-out`` phrasings): ``flip_auroc`` (over anomalous points of known kind,
raised = 1, sunk = 0, the score under a raised entry minus the score under its sunk counterpart, the j-th of each
kind in the split; pooled over clouds, mean over pairs), ``matched_p_auroc`` (mean over entries), ``matched_suspect_
recall`` (the run's seeds, under that entry, against the entry's regions) and
``n_points``; per-cloud flip AUROC gives the 95 % bootstrap interval over clouds and the exact paired permutation
p against the text-blind row (scipy).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, permutation_test

from agent3d.datasets import Dataset
from agent3d.defects import region_kinds
from agent3d.evaluation.metrics import auroc, region_radius, suspect_recall
from agent3d.evaluation.guidance_report import heatmaps
from agent3d.evaluation.runner import class_scorer, sample_references
from agent3d.evaluation.store import EvalConfig, read_lines
from agent3d.evaluation.summary import run_name
from agent3d.gating import strategy
from agent3d.guidance import (GuidanceReader, cloud_displacement, cloud_feature_fit, guided_scores, kind_weights,
                              read_spec, resolve_reader)
from agent3d.guidance_sets import GuidanceEntry, GuidanceSet
from agent3d.spec import KINDS, DefectSpec
from agent3d.outputs import write_json
from agent3d.pipeline import detect
from agent3d.scoring import ScoringState

SPLITS = ("train", "held-out")


def load_readers(configured: str, others=()) -> dict[str, GuidanceReader]:
    """Guidance readers by name (their folder's name; ``embedded``), checked before any work: the configured
    ``--guidance-reader`` (none for ``none``) and each of ``others``.

    Raises
    ------
    InputError
        A folder that is not a guidance reader.
    agent3d.llm.base.BackendError
        A reader's model that is not installed.
    """
    readers = [resolve_reader(configured), *(resolve_reader(str(folder)) for folder in others)]
    return {reader.name_: reader for reader in readers if reader is not None}


def write_guidance(out: Path, dataset: Dataset, guidance_set: GuidanceSet, readers: dict[str, GuidanceReader],
                   run: EvalConfig) -> dict:
    """Read every entry with every reader (its model through llama.cpp), then write :func:`guidance_benchmark`'s
    figures to ``out/guidance.json`` (with the entries and each reader's kind probabilities) and return them."""
    readings = {name: [read_spec(reader, entry.text) for entry in guidance_set.guidance]
                for name, reader in readers.items()}
    figures = guidance_benchmark(out, dataset, guidance_set, readings, run)
    figures["readers"] = {name: reading_accuracy(guidance_set.guidance, specs) for name, specs in readings.items()}
    figures["entries"] = [{**entry.model_dump(), **{f"p_{name}": readings[name][i].probabilities.kind
                                                    for name in readings},
                           **{f"spec_{name}": readings[name][i].summary() for name in readings}}
                          for i, entry in enumerate(guidance_set.guidance)]
    write_json(out / "guidance.json", figures)
    records = [r for r in read_lines(out) if not r.get("failed")]
    if records:  # one cloud text-blind and under each kind, for the report
        first = next(s for s in dataset.samples if (s.class_name, s.name) == (records[0]["class"],
                                                                               records[0]["sample"]))
        points = first.load(run.remove_plane).points
        figures["pictures"] = [str(p) for p in heatmaps(out, records[0], points, cloud_displacement(points))]
    return figures


def guidance_benchmark(out: Path, dataset: Dataset, guidance_set: GuidanceSet, readings: dict[str, list[dict]],
                       run: EvalConfig) -> dict:
    """The benchmark's figures for every run stored in ``out``.

    Parameters
    ----------
    out : Path
        A finished evaluation's run folder.
    dataset : Dataset
        Its dataset (the clouds are read again for their geometry, and gated and scored again under each entry for
        the rules that follow guidance).
    guidance_set : GuidanceSet
    readings : dict of str to list of DefectSpec or dict
        Per guidance reader name, the specification it read from each entry of ``guidance_set`` (in order), or
        only its kind probabilities.
    run : EvalConfig
        The evaluation's configuration (scorer, references, sampling, seed).

    Returns
    -------
    dict
        ``{"runs": {ROW: {SPLIT: {"flip_auroc", "flip_interval", "flip_p", "matched_p_auroc",
        "matched_suspect_recall", "n_points", "n_clouds"}}}}``.
    """
    records = [r for r in read_lines(out) if not r.get("failed")]
    readings = {**{f"guidance {name}": [as_spec(r, name) for r in p] for name, p in readings.items()},
                "kind given": [DefectSpec.given(entry.kind, entry.normal, entry.size)
                               for entry in guidance_set.guidance]}
    entries, per_row = guidance_set.guidance, {}
    runs = sorted({(r["gating"], r.get("prompt")) for r in records}, key=str)
    for sample in dataset.samples:  # cloud by cloud: its geometry and its scorer serve every row
        mine = {(r["gating"], r.get("prompt")): r for r in records if (r["class"], r["sample"]) == (sample.class_name,
                                                                                                 sample.name)}
        if not mine:
            continue
        truth, scorer = _truth(sample.load(run.remove_plane)), None
        for gating, prompt in (r for r in runs if r in mine):
            name, cloud = run_name(gating, prompt), _cloud_run(out, mine[(gating, prompt)], truth)
            per_row.setdefault(name, []).append(_weighted(cloud, entries, None))
            for row, probabilities in readings.items():
                weighted = _weighted(cloud, entries, probabilities)
                if strategy(gating).follows_guidance:
                    per_row.setdefault(f"{name} + {row}, blind seeds", []).append(weighted)
                    scorer = scorer or _Kept(class_scorer(sample.class_name, sample_references(sample, run, dataset),
                                                          run))
                    weighted = _steered(truth, gating, entries, probabilities, scorer, run)
                per_row.setdefault(f"{name} + {row}", []).append(weighted)
    order = [run_name(*r) for r in runs]  # every run's rows together, runs in order
    return {"runs": {row: _row(per_row[row], entries, run.detect.seed)
                     for row in sorted(per_row, key=lambda row: order.index(row.split(" + ")[0]))}}


def _truth(cloud) -> dict:
    """What every run on one labelled cloud is judged against: each point's region kind (``""`` for normal points),
    the regions of each kind numbered 0.. (-1 elsewhere, for :func:`suspect_recall`), the region radius, and each
    point's weight under each kind (:func:`agent3d.guidance.kind_weights` of its dominant displacement)."""
    regions, defects = region_kinds(cloud.points, cloud.labels)
    displacement = cloud_displacement(cloud.points)
    numbered = {}
    for kind in ("raised", "sunk", "any"):
        chosen = [d.region for d in defects if kind == "any" or d.kind == kind]
        lookup = np.full(len(defects) + 1, -1, dtype=np.int64)
        lookup[np.asarray(chosen, dtype=np.int64) + 1] = np.arange(len(chosen))
        numbered[kind] = lookup[regions + 1]
    return {"cloud": cloud, "radius": region_radius(cloud.points), "regions": numbered,
            "kinds": np.array(["", *[d.kind for d in defects]])[regions + 1],
            "weights": {kind: kind_weights(displacement, kind) for kind in KINDS}}


def _hits(truth: dict, seeds) -> dict:
    """Per kind, the regions of that kind the seeds hit and their number (:func:`suspect_recall`)."""
    seeds = np.asarray(seeds or [], dtype=np.int64)
    return {kind: suspect_recall(truth["cloud"].points, regions, seeds, truth["radius"])
            for kind, regions in truth["regions"].items()}


def _cloud_run(out: Path, record: dict, truth: dict) -> dict:
    """One record's stored scores and, per kind, the regions of that kind its seeds hit and their number."""
    with np.load(out / record["scores_file"], allow_pickle=False) as data:
        scores = data["scores"].astype(np.float64)  # runs written before the mask was stored: every point counts
        scored = data["scored"].astype(bool) if "scored" in data.files else np.ones(len(scores), dtype=bool)
    return {"kinds": truth["kinds"], "weights": truth["weights"], "scores": scores, "scored": scored,
            "hits": _hits(truth, record.get("seeds")), "points": truth["cloud"].points}


def _weighted(cloud: dict, entries: list[GuidanceEntry], specs: list[DefectSpec] | None) -> tuple:
    """A stored run under every entry: its scores (weighted by the specification read, when there is one) and its
    seeds' hits of the entry's kind; ``(kinds, {entry: scores}, {entry: (hit, total)})``."""
    scores, weights = cloud["scores"], cloud["weights"]

    def fit(spec: DefectSpec) -> np.ndarray:
        kind = sum(p * weights[k] for k, p in spec.kinds().items())
        return kind * cloud_feature_fit(cloud["points"], spec.normal)[0] if spec.normal else kind

    guided = {i: scores if specs is None else guided_scores(scores, cloud["scored"], fit(specs[i]))
              for i in range(len(entries))}
    return cloud["kinds"], guided, {i: cloud["hits"][entry.kind] for i, entry in enumerate(entries)}


def _steered(truth: dict, gating: str, entries: list[GuidanceEntry], specs: list[DefectSpec], scorer: "_Kept",
             run: EvalConfig) -> tuple:
    """One cloud detected again under every entry, as ``detect --guidance`` would with the specification read
    (:func:`agent3d.pipeline.detect`); entries (of any row) that steer to the same seeds are scored once. Like
    :func:`_weighted`."""
    config = run.detect.model_copy(update={"gating": gating})
    guided, hits = {}, {}
    state = truth.setdefault("state", ScoringState(truth["cloud"].points))  # one per cloud, for every row
    for i, spec in enumerate(specs):
        found = detect(truth["cloud"], config, None, scorer, spec=spec, state=state)
        guided[i] = found.scores
        hits[i] = _hits(truth, found.seeds)[entries[i].kind]
    return truth["kinds"], guided, hits


def as_spec(reading: DefectSpec | dict, reader: str) -> DefectSpec:
    """A reading as a specification: a kind-probability dict (``{"raised": 0.7, ...}``) becomes one with no normal
    feature and any size."""
    if isinstance(reading, DefectSpec):
        return reading
    kinds = {k: float(reading.get(k, 0.0)) for k in KINDS}
    return DefectSpec.from_probabilities(kinds, {}, {}, reader)


def reading_accuracy(entries: list[GuidanceEntry], specs: list[DefectSpec]) -> dict:
    """A reader's accuracy per field and language on a guidance set: ``{LANGUAGE: {"kind", "normal", "size",
    "abstained", "n"}}`` (kind: the specification's kind equals the entry's; normal: the same set of features; size:
    the same size; abstained: the share read as not understood), plus ``"all"``."""
    groups = {"all": list(range(len(entries)))}
    for i, entry in enumerate(entries):
        groups.setdefault(entry.language, []).append(i)
    return {language: {"kind": float(np.mean([specs[i].kind == entries[i].kind for i in rows])),
                       "normal": float(np.mean([specs[i].normal == sorted(entries[i].normal) for i in rows])),
                       "size": float(np.mean([specs[i].size == entries[i].size for i in rows])),
                       "abstained": float(np.mean([specs[i].abstained for i in rows])), "n": len(rows)}
            for language, rows in groups.items()}


class _Kept:
    """A fitted scorer that keeps each scored set's scores of one cloud (phrasings often steer to the same seeds)."""

    def __init__(self, scorer):
        self.scorer, self.kept = scorer, {}

    def __getattr__(self, name):
        return getattr(self.scorer, name)

    def score_samples(self, points: np.ndarray, indices: np.ndarray, state=None) -> np.ndarray:
        key = hashlib.sha1(np.ascontiguousarray(indices).tobytes()).hexdigest()
        if key not in self.kept:
            self.kept[key] = self.scorer.score_samples(points, indices, state)
        return self.kept[key]


def _row(per_cloud: list[tuple], entries: list[GuidanceEntry], seed: int) -> dict:
    return {split: _figures([(i, e) for i, e in enumerate(entries) if e.split == split], per_cloud, seed)
            for split in SPLITS}


def _figures(entries: list[tuple[int, GuidanceEntry]], per_cloud: list, seed: int) -> dict | None:
    if not entries:
        return None
    raised = [i for i, e in entries if e.kind == "raised"]
    sunk = [i for i, e in entries if e.kind == "sunk"]
    pairs = list(zip(raised, sunk))
    known = [np.isin(kinds, ("raised", "sunk")) for kinds, _, _ in per_cloud]

    def flip(clouds):
        values = []
        for a, b in pairs:
            labels = np.concatenate([(per_cloud[c][0] == "raised")[known[c]] for c in clouds])
            diff = np.concatenate([(per_cloud[c][1][a] - per_cloud[c][1][b])[known[c]] for c in clouds])
            values.append(auroc(labels, diff))
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    cloud_flips = [flip([c]) for c in range(len(per_cloud))]
    cloud_flips = np.array([v for v in cloud_flips if v is not None])
    matched = []
    for i, entry in entries:
        labels = np.concatenate([(kinds != "") if entry.kind == "any" else (kinds == entry.kind)
                                 for kinds, _, _ in per_cloud])
        matched.append(auroc(labels, np.concatenate([guided[i] for _, guided, _ in per_cloud])))
    hits = [sum(h[i][0] for _, _, h in per_cloud) / max(1, sum(h[i][1] for _, _, h in per_cloud))
            for i, _ in entries]
    figures = {"flip_auroc": flip(range(len(per_cloud))) if pairs else None,
               "matched_p_auroc": float(np.mean([m for m in matched if m is not None])),
               "matched_suspect_recall": float(np.mean(hits)), "n_points": int(sum(len(k) for k, _, _ in per_cloud)),
               "n_clouds": len(per_cloud), "flip_interval": None, "flip_p": None}
    if len(cloud_flips) >= 2 and np.ptp(cloud_flips) > 0:
        figures["flip_interval"] = [float(v) for v in bootstrap((cloud_flips,), np.mean, n_resamples=2000,
                                                                 random_state=seed).confidence_interval]
        figures["flip_p"] = float(permutation_test((cloud_flips - 0.5,), np.mean, permutation_type="samples",
                                                   n_resamples=2000, random_state=seed).pvalue)
    return figures
