"""Samples on a dask.distributed cluster: the driver submits one task per sample and takes the results back
as they finish; it alone writes the run folder (Rocklin, "Dask: Parallel Computation with Blocked algorithms
and Task Scheduling", SciPy 2015; https://distributed.dask.org).

A worker that dies mid-sample loses nothing: the scheduler reruns its tasks on the other workers, and each
task's result reaches the driver once (``distributed.as_completed``), so no record is lost or duplicated.
Workers import agent3d and keep the loaded model and memory banks between tasks (one load per worker
process). Local models are not thread-safe: start such workers with ``--nthreads 1``. The request log
(``llm_log.jsonl``) is written by each worker at the run folder's path, so it is complete on a shared filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agent3d.io import InputError

CONNECT_SECONDS = 10


def connect(scheduler: str):
    """A ``distributed.Client`` of the scheduler at ``scheduler`` (``tcp://HOST:PORT``).

    Raises
    ------
    InputError
        The ``distributed`` package is missing or the scheduler cannot be reached (names the address).
    """
    try:
        from distributed import Client
    except ImportError:
        raise InputError(scheduler, "--scheduler needs dask.distributed (pip install 'agent3d[distributed]')") from None
    try:
        return Client(scheduler, timeout=f"{CONNECT_SECONDS}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(scheduler, f"cannot reach the Dask scheduler ({type(error).__name__}: {error})") from None


def dask_results(client, tasks: list[tuple[Callable, tuple]]) -> Iterator:
    """Run ``function(*arguments)`` for every task on the cluster of ``client``; yield results as they finish.

    Parameters
    ----------
    client : distributed.Client
        From :func:`connect`.
    tasks : list of (callable, tuple)

    Raises
    ------
    Exception
        Whatever a task raised (e.g. a backend failure), after the other tasks are cancelled.
    """
    from distributed import as_completed

    futures = [client.submit(function, *arguments, pure=False) for function, arguments in tasks]
    try:
        for future in as_completed(futures, loop=client.loop):
            yield future.result()
    finally:
        client.cancel(futures)
