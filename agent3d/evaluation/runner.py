"""Batch evaluation: every gating x prompt on every sample, appended as it finishes, resumable.

``DIR/config.json`` records the configuration; ``DIR/samples.jsonl`` gets one line per finished
(sample, gating, prompt), flushed and fsynced at once; ``DIR/scores/`` holds each run's point
scores, labels and GT regions (``.npz``, written before its line). Rerunning the same command skips
what is done; a different configuration in the same folder is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from agent3d.datasets import Dataset, Sample
from agent3d.evaluation.distributed import dask_results
from agent3d.evaluation.metrics import GroundTruth
from agent3d.evaluation.store import ARRAYS, EvalConfig, SampleRecord, append_record, prepare_output, run_lock
from agent3d.file_checks import InputError
from agent3d.gating import strategy
from agent3d.io import read_references
from agent3d.llm import make_backend
from agent3d.llm.base import BackendError
from agent3d.pipeline import detect
from agent3d.scoring import RegistrationError, build_scorer

_PROCESS_CACHE: dict = {}  # per worker process: the loaded model and the memory banks
_BUILD_LOCK = threading.RLock()  # threads of one process (--concurrency, Dask worker threads) build each once


def run_key(sample: Sample, gating: str, prompt: str | None) -> str:
    """Identity of one line of ``samples.jsonl``."""
    return f"{sample.class_name}/{sample.name}/{gating}/{prompt or '-'}"


def evaluate_sample(sample: Sample, runs: list[tuple[str, str | None]], config: EvalConfig,
                    references: list[str], out: Path) -> list[dict]:
    """Run every (gating, prompt) of ``runs`` on one sample; return the records, each with its point arrays
    under ``ARRAYS`` (the driver writes them, so workers need no access to ``out`` but for the request log).

    A run that cannot be done (an unreadable sample or reference, a cloud the scorer cannot use) gives a
    record with ``"failed"``: the reason, naming the file; the batch goes on.

    Raises
    ------
    agent3d.llm.base.BackendError
        When the model cannot be reached (the batch stops; a rerun resumes).
    agent3d.io.InputError
        A model that cannot be loaded (the batch stops).
    """
    asks = any(strategy(gating).needs_backend for gating, _ in runs)
    backend = _backend(config, out) if asks else None  # its errors stop the batch
    try:
        cloud = sample.load(config.remove_plane)
        truth = GroundTruth.of(cloud.points, cloud.labels)
        scorer = class_scorer(sample.class_name, references, config)
    except BackendError:
        raise
    except Exception as error:  # recorded, counted in the summary, never silent
        return [failure(sample, gating, prompt, error) for gating, prompt in runs]
    records = []
    for gating, prompt in runs:
        try:
            records.append(_run(sample, cloud, truth, scorer, gating, prompt, config, backend))
        except BackendError:
            raise
        except Exception as error:
            records.append(failure(sample, gating, prompt, error))
    return records


def failure(sample: Sample, gating: str, prompt: str | None, error: Exception) -> dict:
    """The record of a run that could not be done, with the reason in one line naming the file."""
    reason = str(error) if isinstance(error, InputError) else f"{sample.path}: {type(error).__name__}: {error}"
    return SampleRecord(key=run_key(sample, gating, prompt), class_name=sample.class_name, sample=sample.name,
                        gating=gating, prompt=prompt, failed=" ".join(reason.split())[:500]).to_dict()


def _run(sample: Sample, cloud, truth: GroundTruth, scorer, gating: str, prompt: str | None, config: EvalConfig,
         backend) -> dict:
    detect_config = config.detect.model_copy(update={"gating": gating, "prompt": prompt or config.detect.prompt})
    try:
        result = detect(cloud, detect_config, backend if strategy(gating).needs_backend else None, scorer)
    except RegistrationError as error:
        raise InputError(sample.path, str(error)) from None
    key = run_key(sample, gating, prompt)
    scores_file = Path("scores") / (key.replace("/", "__") + ".npz")
    arrays = {"scores": result.scores.astype(np.float32), "labels": cloud.labels,
              "regions": truth.regions.astype(np.int32), "scored": result.scored}
    hit, total = truth.regions_hit(result.seeds)
    llm = result.llm
    record = SampleRecord(
        key=key, class_name=sample.class_name, sample=sample.name, gating=gating, prompt=prompt,
        label=int(cloud.labels.max()), object_score=result.object_score, n_points=result.n_points,
        n_scored=result.n_scored, regions=total, regions_hit=hit if strategy(gating).budgeted else None,
        tokens_prompt=llm.prompt_tokens if llm else 0, tokens_completion=llm.completion_tokens if llm else 0,
        llm_seconds=round(llm.seconds, 3) if llm else 0.0, seconds=round(result.seconds, 3),
        scoring_seconds=round(result.scoring_seconds, 3),
        llm_calls=llm.calls if llm else 0, llm_retries=llm.transport_retries if llm else 0,
        llm_cached=llm.cached if llm else 0, llm_failures=len(llm.failures) if llm else 0,
        dropped=llm.dropped if llm else None, suspects=[s.to_json() for s in result.suspects], seeds=result.seeds,
        scorer=result.scorer, scores_file=str(scores_file))
    return {**record.to_dict(), ARRAYS: arrays}


def class_scorer(class_name: str, references: list[str], config: EvalConfig):
    """The scorer ``config`` names for one class, fitted once per process on its references (paths).

    Raises
    ------
    InputError
        An unreadable reference.
    """
    name, seed, remove_plane = config.detect.scorer, config.detect.seed, config.remove_plane
    key = ("scorer", class_name, tuple(references), name, seed, remove_plane)
    with _BUILD_LOCK:
        if key not in _PROCESS_CACHE:
            clouds = read_references(references, remove_plane)
            _PROCESS_CACHE[key] = build_scorer(name, [c.points for c in clouds], [c.source for c in clouds], seed)
        return _PROCESS_CACHE[key]


def sample_references(sample: Sample, config: EvalConfig, dataset: Dataset) -> list[str]:
    """The reference clouds (paths) a sample is scored against: ``config.references``, else its class's in the
    dataset."""
    return config.references or [str(p) for p in dataset.references.get(sample.class_name, [])]


def _backend(config: EvalConfig, out: Path):
    """The configured backend, loaded once per process, logging every exchange to ``out/llm_log.jsonl``."""
    key = ("backend", config.backend.model_dump_json(), str(out))
    with _BUILD_LOCK:
        if key not in _PROCESS_CACHE:
            _PROCESS_CACHE[key] = make_backend(config.backend, log_dir=out)
        return _PROCESS_CACHE[key]


def check_parallelism(config: EvalConfig, workers: int, concurrency: int) -> None:
    """Refuse ``concurrency`` > 1 with ``workers`` > 1, or with a local model for ``llm`` gating (before anything is
    made).

    Raises
    ------
    InputError
    """
    asks = any(strategy(g).needs_backend for g in config.gatings)
    if concurrency > 1 and (workers > 1 or (asks and config.backend.backend != "openai")):
        raise InputError("--concurrency", "needs --workers 1, and --backend openai for llm gating (local models "
                         "run one request at a time)")


def run_evaluation(dataset: Dataset, config: EvalConfig, out: Path, workers: int = 1,
                   on_record: Callable[[dict], None] | None = None, concurrency: int = 1,
                   scheduler=None) -> int:
    """Evaluate every pending (sample, gating, prompt); append each record as its sample finishes, holding
    the folder's lock (:func:`run_lock`) throughout. A run that fails is a record with ``"failed"``. Only this
    process (the driver) writes ``samples.jsonl`` and the score files, whatever runs the samples.

    Parameters
    ----------
    dataset : Dataset
    config : EvalConfig
    out : Path
    workers : int, default 1
        Samples run in parallel processes (joblib) when > 1; each loads its own model.
    on_record : callable, optional
        Called with every record once it is written (progress display).
    concurrency : int, default 1
        Samples in flight at once in this process (threads): with a hosted model most of a sample's time is
        waiting for the server. Needs ``workers`` 1, and the ``openai`` backend for ``llm`` gating.
    scheduler : distributed.Client, optional
        A client of a Dask cluster (:func:`agent3d.evaluation.distributed.connect`): samples run on its workers
        (each loads its model and memory banks once); a worker lost mid-sample has the sample rerun elsewhere.

    Returns
    -------
    int
        Records written by this call.

    Raises
    ------
    RunLocked
        Another process is writing into ``out``.
    ValueError
        ``concurrency`` with a local backend or with ``workers`` > 1.
    ConfigMismatch, agent3d.llm.base.BackendError
    """
    check_parallelism(config, workers, concurrency)
    with run_lock(out):
        fresh = not (out / "config.json").is_file()
        done = prepare_output(out, config)
        pending = [(s, [r for r in config.runs() if run_key(s, *r) not in done]) for s in dataset.samples]
        pending = [(s, runs) for s, runs in pending if runs]
        written = 0
        try:
            for records in _results(pending, config, dataset, out, workers, concurrency, scheduler):
                for record in records:
                    append_record(out, record)
                    written += 1
                    if on_record:
                        on_record(record)
        except BaseException:
            if fresh and not written:  # nothing finished: no configuration left to refuse the corrected rerun
                (out / "config.json").unlink(missing_ok=True)
                if not any((out / "scores").iterdir()):
                    (out / "scores").rmdir()
            raise
    return written


def _results(pending, config: EvalConfig, dataset: Dataset, out: Path, workers: int, concurrency: int,
             scheduler) -> Iterator[list[dict]]:
    tasks = [(evaluate_sample, (sample, runs, config, sample_references(sample, config, dataset), out))
             for sample, runs in pending]
    if scheduler is not None:
        yield from dask_results(scheduler, tasks)
    elif workers > 1:
        from joblib import Parallel, delayed

        yield from Parallel(n_jobs=workers, return_as="generator_unordered")(delayed(f)(*a) for f, a in tasks)
    elif concurrency > 1:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(concurrency) as pool:
            futures = [pool.submit(f, *a) for f, a in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()
    else:
        for function, arguments in tasks:
            yield function(*arguments)
