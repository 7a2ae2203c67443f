"""The Python API: what a notebook or script needs, and what the CLI's ``detect`` and ``evaluate`` call.

>>> import agent3d
>>> cloud = agent3d.read_cloud("data_samples/surface_00.txt")
>>> result = agent3d.detect(cloud, agent3d.DetectConfig(gating="saliency"))
>>> result.to_json()["object_score"]  # doctest: +SKIP

Errors are exceptions, never exits: :class:`agent3d.file_checks.InputError` (a ``ValueError``) for bad input,
:class:`agent3d.llm.base.BackendError` when a model cannot be reached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from pydantic import ValidationError

from agent3d.base import InputError
from agent3d.cloud import Detection, PointCloud
from agent3d.config import BackendConfig, DetectConfig
from agent3d.datasets import load_dataset
from agent3d.evaluation.distributed import connect
from agent3d.evaluation.guidance import load_readers, write_guidance
from agent3d.evaluation.report import write_report
from agent3d.evaluation.runner import check_parallelism, run_evaluation
from agent3d.evaluation.store import EvalConfig, check_config, done_keys, run_lock
from agent3d.evaluation.summary import summarize
from agent3d.evaluation.tradeoff import budget_folder, write_tradeoff
from agent3d.gating import strategy
from agent3d.guidance import resolve_reader
from agent3d.guidance_sets import read_guidance_set
from agent3d.io import read_cloud, read_references
from agent3d.llm import make_backend
from agent3d.outputs import check_output
from agent3d.pipeline import detect as run_detect
from agent3d.prompts import load_prompt
from agent3d.scoring import build_scorer


def fitted_scorer(references: Sequence[str | os.PathLike | PointCloud] = (), name: str = "auto", seed: int = 0):
    """The named scorer fitted on ``references`` (paths, folders or clouds; ``auto``: fused with references, else
    self-reference; :func:`agent3d.scoring.build_scorer`).

    Raises
    ------
    InputError
        An unreadable reference.
    ValueError
        A reference-based scorer without references, or references that cannot be registered.
    """
    paths = [r for r in references if not isinstance(r, PointCloud)]
    clouds = [r for r in references if isinstance(r, PointCloud)] + read_references(paths)
    return build_scorer(name, [c.points for c in clouds], [c.source for c in clouds], seed)


def check_detect(config: DetectConfig, backend: BackendConfig | None = None, prompts: Sequence[str] = ()):
    """Refuse, before any model loads or any cloud is read, a prompt (``config.prompt``, or each of ``prompts``),
    adapter or learned model that ``config`` cannot use (one :class:`InputError` naming it); return the adapter
    the gating will apply, or None (:meth:`agent3d.gating.Gating.check`). With ``--guidance``, the guidance reader
    and its model are checked too (:func:`agent3d.guidance.resolve_reader`)."""
    if config.guidance:
        resolve_reader(config.guidance_reader)
    return strategy(config.gating).check(config, backend, prompts)


def detect(cloud: PointCloud | str | os.PathLike, config: DetectConfig | None = None,
           references: Sequence[str | os.PathLike | PointCloud] = (), backend: BackendConfig | None = None,
           log_dir: str | os.PathLike | None = None, scorer=None) -> Detection:
    """One cloud through the whole flow: gating (the language model, the learned baseline, saliency, random or
    all), then the classical scorer on the gated points.

    Parameters
    ----------
    cloud : PointCloud or path
        A cloud, or any file :func:`agent3d.read_cloud` reads.
    config : DetectConfig, optional
        Gating, budget, prompt, scorer... (defaults: ``DetectConfig()``, the language model with the embedded
        SmolLM2-135M).
    references : sequence of paths or PointCloud, optional
        Normal clouds of the same part (reference-based scorers).
    backend : BackendConfig, optional
        The model for ``llm`` gating (default: ``BackendConfig()``, the embedded model through llama.cpp).
    log_dir : path, optional
        Append every request and reply to ``log_dir/llm_log.jsonl``.
    scorer : fitted scorer, optional
        Reuse one (:func:`fitted_scorer`) across many clouds instead of fitting on ``references`` each call.

    Returns
    -------
    Detection
        ``to_json()`` gives a plain dict (the CLI's ``--json``).

    Raises
    ------
    InputError, ValueError, BackendError
    """
    config = config or DetectConfig()
    check_detect(config, backend)
    cloud = cloud if isinstance(cloud, PointCloud) else read_cloud(cloud)
    scorer = scorer or fitted_scorer(references, config.scorer, config.seed)
    llm = make_backend(backend or BackendConfig(), log_dir) if strategy(config.gating).needs_backend else None
    return run_detect(cloud, config, llm, scorer)


def evaluate(dataset: str | os.PathLike, out: str | os.PathLike, gatings: Sequence[str] = ("saliency", "random", "all"),
             prompts: Sequence[str] = ("geom",), config: DetectConfig | None = None,
             backend: BackendConfig | None = None, references: Sequence[str | os.PathLike] = (),
             workers: int = 1, concurrency: int = 1, scheduler: str | None = None, remove_plane: bool = True,
             bootstrap: int = 1000, progress: Callable | None = None, guidance_set: str | os.PathLike | None = None,
             guidance_readers: Sequence[str | os.PathLike] = ()) -> dict:
    """Every gating x prompt on every sample of a dataset, resumable, with metrics per class and overall, bootstrap
    intervals and paired tests; writes ``out`` (``config.json``, ``samples.jsonl``, ``scores/``, ``summary.json``,
    reports).

    Parameters
    ----------
    dataset : path
        A labeled folder, Real3D-AD, Anomaly-ShapeNet or MVTec 3D-AD layout (``docs/design.md``).
    out : path
        The run folder; rerunning the same call resumes, another configuration is refused.
    gatings, prompts : sequence of str
        Gatings to compare; prompts for ``llm`` gating.
    config, backend : DetectConfig, BackendConfig, optional
        Every other detection setting, and the model (``llm`` gating).
    references : sequence of paths
        Normal clouds for every class (default: each class's own, else self-reference).
    workers, concurrency : int
        Parallel processes; samples in flight per process (a hosted model).
    scheduler : str, optional
        A Dask scheduler's address (``tcp://HOST:PORT``).
    remove_plane : bool, default True
        MVTec 3D-AD: drop the background plane.
    bootstrap : int, default 1000
        Resamples of the 95 % intervals (0: none).
    progress : callable, optional
        ``progress(total, done)`` returning a context manager that yields ``on_record(record)`` (the CLI's bar).
    guidance_set : path, optional
        A guidance set (TOML, or ``embedded``: :mod:`agent3d.guidance`): then ``out/guidance.json`` holds the
        guidance benchmark (:mod:`agent3d.evaluation.guidance`) of every run, text-blind and weighted by
        ``config.guidance_reader`` (unless ``none``) and each of ``guidance_readers`` (folders written by ``tune
        --method guidance``); the summary gains ``guidance``. Refused with ``config.guidance``: the runs must be
        text-blind.

    Returns
    -------
    dict
        The summary (``summary.json``).

    Raises
    ------
    InputError, ValueError, BackendError, agent3d.evaluation.store.RunLocked
    """
    from agent3d import __version__

    out, gatings = Path(out), list(dict.fromkeys(gatings))
    asks = any(strategy(g).needs_backend for g in gatings)
    prompts = list(dict.fromkeys(prompts)) if any(strategy(g).per_prompt for g in gatings) else []
    config = (config or DetectConfig()).model_copy(update={"gating": gatings[0], "prompt": (prompts or ["geom"])[0]})
    backend = backend or BackendConfig()
    hashes = {name: load_prompt(name, config.prompts_dir).digest for name in prompts}
    adapter = None
    for gating in gatings:  # every prompt checked, the adapter resolved once
        adapter = check_detect(config.model_copy(update={"gating": gating}), backend, prompts) or adapter
    data = load_dataset(dataset)
    guidance = read_guidance_set(guidance_set) if guidance_set else None  # refused before anything is written
    if guidance and config.guidance:
        raise InputError("--guidance-set", "benchmarks text-blind runs: leave out --guidance")
    readers = load_readers(config.guidance_reader, guidance_readers) if guidance else {}
    read_references(list(references), remove_plane)  # a bad reference is refused before anything is written
    check_output(out, folder=True, keep="config.json")
    run = EvalConfig(dataset=str(dataset), layout=data.layout, gatings=gatings, prompts=prompts, prompt_hashes=hashes,
                     references=[str(r) for r in references], detect=config, backend=backend,
                     adapter_hash=adapter.digest if adapter else None, remove_plane=remove_plane, version=__version__)
    check_config(out, run)
    check_parallelism(run, workers, concurrency)
    client = connect(scheduler) if scheduler else None
    with run_lock(out), client or nullcontext():
        total, done = len(data.samples) * len(run.runs()), len(done_keys(out))
        with (progress or (lambda total, done: nullcontext(None)))(total, done) as on_record:
            run_evaluation(data, run, out, workers, on_record, concurrency, client)
        summary = summarize(out, run.runs(), {
            "dataset": str(dataset), "layout": data.layout, "backend": backend.backend if asks else None,
            "model": (backend.model or "smollm2-135m (embedded SmolLM2-135M-Instruct)") if asks else None,
            "adapter": f"{backend.adapter or 'embedded'}@{adapter.digest}" if asks and adapter else None,
            "budget": config.budget, "version": __version__, "bootstrap": bootstrap},
            n_resamples=bootstrap, seed=config.seed)
        samples = {(s.class_name, s.name): s for s in data.samples}
        benchmark = write_guidance(out, data, guidance, readers, run) if guidance else None
        write_report(out, summary, lambda name, sample: samples[(name, sample)].load(remove_plane).points, benchmark)
        if benchmark:
            summary["guidance"] = benchmark["runs"]
    return summary


def evaluate_budgets(dataset: str | os.PathLike, out: str | os.PathLike, budgets: Sequence[float],
                     config: DetectConfig | None = None, progress: Callable | None = None, **options) -> dict:
    """The budget trade-off: :func:`evaluate` once per budget, into ``out/budget-B`` (each a whole, resumable
    evaluation), then P-AUROC and AUPRO against the fraction scored, with the seconds split, in ``out/tradeoff.json``,
    ``tradeoff.md`` and ``tradeoff.png`` (:mod:`agent3d.evaluation.tradeoff`).

    Parameters
    ----------
    dataset, out : path
    budgets : sequence of float
        Fractions of the points the scorer may check, each in (0, 1] (``DetectConfig.budget``).
    config : DetectConfig, optional
        Every other detection setting.
    progress : callable, optional
        ``progress(folder)`` giving :func:`evaluate`'s ``progress`` for one budget's folder.
    **options
        Passed to :func:`evaluate` (gatings, prompts, backend, references, workers, bootstrap, ...).

    Returns
    -------
    dict
        ``{"summaries": {budget: summary}, "tradeoff": rows}``.

    Raises
    ------
    InputError
        A budget out of range, or ``out`` holds files that are not a sweep's.
    """
    config = config or DetectConfig()
    try:
        configs = {b: DetectConfig.model_validate({**config.model_dump(), "budget": b}) for b in sorted(set(budgets))}
    except ValidationError as error:
        raise InputError("--budget", error.errors()[0]["msg"]) from None
    out = check_output(out, folder=True)
    foreign = [p.name for p in out.iterdir() if not p.name.startswith((".", "budget-", "tradeoff."))] \
        if out.is_dir() else []
    if foreign:
        raise InputError(out, f"folder holds files that are not a budget sweep's ({foreign[0]}); choose another --out")
    summaries = {b: evaluate(dataset, budget_folder(out, b), config=c, **options,
                             progress=progress(budget_folder(out, b)) if progress else None)
                 for b, c in configs.items()}
    return {"summaries": summaries, "tradeoff": write_tradeoff(out, summaries)}


def summary_frame(summary: dict):
    """The per-run rows of an evaluation summary as a pandas DataFrame (one row per gating / prompt, one column per
    figure; intervals and paired tests stay in the dict).

    Raises
    ------
    ImportError
        pandas is not installed.
    """
    import pandas as pd

    rows = {run: {k: v for k, v in figures.items() if not isinstance(v, (dict, list))}
            for run, figures in summary["per_gating"].items()}
    return pd.DataFrame.from_dict(rows, orient="index")
