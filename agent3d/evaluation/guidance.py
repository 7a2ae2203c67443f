"""The guidance benchmark (``evaluate --guidance-set FILE.toml``): does the text change what is found, where only
the text can make a difference?

Per entry of a guidance set, the ground truth is the regions of the entry's kind (:func:`agent3d.defects.
point_kinds`; the other kind counts as normal, ``any`` keeps every region). For every run of the evaluation (its
stored per-point scores) three kinds of row:

- ``RUN``: the text-blind run as it is: the same scores under every entry, so its flip AUROC is exactly 0.5;
- ``RUN + guidance NAME``: the scored points' scores weighted by the kind a guidance reader
  (:class:`agent3d.guidance.GuidanceReader`) reads from the entry's text, ``w = sum_k p(k | text)
  kind_weights(displacement, k)``, as ``detect --guidance`` does (:func:`agent3d.guidance.guided_scores`);
- ``RUN + kind given``: the same with the entry's true kind (what a perfect reader would reach: the geometry's
  part alone).

Figures per row and split (``train`` / ``held-out`` phrasings): ``flip_auroc`` (over anomalous points of known kind,
raised = 1, sunk = 0, the score under a raised entry minus the score under its sunk counterpart, the j-th of each
kind in the split; pooled over clouds, mean over pairs), ``matched_p_auroc`` (mean over entries), ``matched_suspect_
recall`` (the run's seeds against the entry's regions; the guidance weights the scores, not the seeds) and
``n_points``; per-cloud flip AUROC gives the 95 % bootstrap interval over clouds and the exact paired permutation
p against the text-blind row (scipy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import bootstrap, permutation_test

from agent3d.datasets import Dataset
from agent3d.defects import region_kinds, surface_displacement
from agent3d.evaluation.metrics import auroc, region_radius, suspect_recall
from agent3d.evaluation.store import read_lines
from agent3d.guidance import (KINDS, GuidanceEntry, GuidanceReader, GuidanceSet, guided_scores, kind_weights,
                              read_kinds, resolve_reader)
from agent3d.outputs import write_json

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
                   remove_plane: bool = True, seed: int = 0) -> dict:
    """Read every entry with every reader (its model through llama.cpp), then write :func:`guidance_benchmark`'s
    figures to ``out/guidance.json`` (with the entries and each reader's kind probabilities) and return them."""
    readings = {name: [read_kinds(reader, entry.text) for entry in guidance_set.guidance]
                for name, reader in readers.items()}
    figures = guidance_benchmark(out, dataset, guidance_set, readings, remove_plane, seed)
    figures["entries"] = [{**entry.model_dump(), **{f"p_{name}": readings[name][i] for name in readings}}
                          for i, entry in enumerate(guidance_set.guidance)]
    write_json(out / "guidance.json", figures)
    return figures


def guidance_benchmark(out: Path, dataset: Dataset, guidance_set: GuidanceSet, readings: dict[str, list[dict]],
                       remove_plane: bool = True, seed: int = 0) -> dict:
    """The benchmark's figures for every run stored in ``out``.

    Parameters
    ----------
    out : Path
        A finished evaluation's run folder.
    dataset : Dataset
        Its dataset (the clouds are read again for their geometry).
    guidance_set : GuidanceSet
    readings : dict of str to list of dict
        Per guidance reader name, the kind probabilities it read from each entry of ``guidance_set`` (in order).
    remove_plane : bool, default True
    seed : int, default 0

    Returns
    -------
    dict
        ``{"runs": {ROW: {SPLIT: {"flip_auroc", "flip_interval", "flip_p", "matched_p_auroc",
        "matched_suspect_recall", "n_points", "n_clouds"}}}}``.
    """
    records = [r for r in read_lines(out) if not r.get("failed")]
    samples = {(s.class_name, s.name): s for s in dataset.samples}
    truth = {key: _truth(samples[key].load(remove_plane)) for key in {(r["class"], r["sample"]) for r in records}}
    given = [{entry.kind: 1.0} for entry in guidance_set.guidance]
    rows = {}
    for run in sorted({(r["gating"], r.get("prompt")) for r in records}, key=str):
        name = run[0] + (f"/{run[1]}" if run[1] else "")
        clouds = [_cloud_run(out, record, truth[(record["class"], record["sample"])]) for record in records
                  if (record["gating"], record.get("prompt")) == run]
        rows[name] = _row(clouds, guidance_set, None, seed)
        for reader, probabilities in readings.items():
            rows[f"{name} + guidance {reader}"] = _row(clouds, guidance_set, probabilities, seed)
        rows[f"{name} + kind given"] = _row(clouds, guidance_set, given, seed)
    return {"runs": rows}


def _truth(cloud) -> dict:
    """What every run on one labelled cloud is judged against: each point's region kind (``""`` for normal points),
    the regions of each kind numbered 0.. (-1 elsewhere, for :func:`suspect_recall`), the region radius, and each
    point's weight under each kind (:func:`agent3d.guidance.kind_weights` of its dominant displacement)."""
    regions, defects = region_kinds(cloud.points, cloud.labels)
    displacement = surface_displacement(cloud.points)
    numbered = {}
    for kind in ("raised", "sunk", "any"):
        chosen = [d.region for d in defects if kind == "any" or d.kind == kind]
        lookup = np.full(len(defects) + 1, -1, dtype=np.int64)
        lookup[np.asarray(chosen, dtype=np.int64) + 1] = np.arange(len(chosen))
        numbered[kind] = lookup[regions + 1]
    return {"points": cloud.points, "radius": region_radius(cloud.points), "regions": numbered,
            "kinds": np.array(["", *[d.kind for d in defects]])[regions + 1],
            "weights": {kind: kind_weights(displacement, kind) for kind in KINDS}}


def _cloud_run(out: Path, record: dict, truth: dict) -> dict:
    """One record's stored scores and, per kind, the regions of that kind its seeds hit and their number."""
    with np.load(out / record["scores_file"], allow_pickle=False) as data:
        scores = data["scores"].astype(np.float64)  # runs written before the mask was stored: every point counts
        scored = data["scored"].astype(bool) if "scored" in data.files else np.ones(len(scores), dtype=bool)
    seeds = np.asarray(record.get("seeds") or [], dtype=np.int64)
    hits = {kind: suspect_recall(truth["points"], regions, seeds, truth["radius"])
            for kind, regions in truth["regions"].items()}
    return {"kinds": truth["kinds"], "weights": truth["weights"], "scores": scores, "scored": scored, "hits": hits}


def _row(clouds: list[dict], guidance_set: GuidanceSet, probabilities: list[dict] | None, seed: int) -> dict:
    entries = list(enumerate(guidance_set.guidance))
    per_cloud = []
    for cloud in clouds:
        scores, weights = cloud["scores"], cloud["weights"]
        guided = {i: scores if probabilities is None else guided_scores(scores, cloud["scored"], sum(
            p * weights[kind] for kind, p in probabilities[i].items())) for i, _ in entries}
        per_cloud.append((cloud["kinds"], guided, cloud["hits"]))
    return {split: _figures([(i, e) for i, e in entries if e.split == split], per_cloud, seed) for split in SPLITS}


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
    hits = [sum(h[e.kind][0] for _, _, h in per_cloud) / max(1, sum(h[e.kind][1] for _, _, h in per_cloud))
            for _, e in entries]
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
