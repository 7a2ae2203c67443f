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

from agent3d.file_checks import InputError

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
    check_scheduler(scheduler)
    try:
        return Client(scheduler, timeout=f"{CONNECT_SECONDS}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(scheduler, f"cannot reach the Dask scheduler ({type(error).__name__}: {error})") from None


def check_scheduler(address: str) -> None:
    """Ask the server at ``address`` who it is (the ``identity`` operation of Dask's comm protocol) before a
    ``Client`` connects: a ``Client`` pointed at another kind of server misreads its bytes as a frame length
    (a MemoryError for exabytes), then times out closing itself with a traceback.

    Raises
    ------
    InputError
        Nothing answers within ``CONNECT_SECONDS``, or what answers is not a Dask scheduler.
    """
    import asyncio

    from distributed.comm import connect as open_comm

    async def identity():
        comm = await open_comm(address, timeout=CONNECT_SECONDS)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), CONNECT_SECONDS)
        finally:
            comm.abort()

    try:
        reply = asyncio.run(identity())
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(address, f"cannot reach the Dask scheduler ({type(error).__name__}: {error})") from None
    except Exception as error:  # whatever the protocol makes of another server's bytes
        raise InputError(address, f"is not a Dask scheduler ({type(error).__name__})") from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise InputError(address, "is not a Dask scheduler (it does not answer the identity request as one)")


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
