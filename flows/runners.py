"""Where a flow's tasks run: `--runner local` (threads in this process) or `--runner dask`.

`dask` is prefect-dask's DaskTaskRunner, chosen with `flow.with_options(task_runner=...)`: the
flows do not change. With `--dask-address tcp://host:port` the tasks go to that scheduler's
workers; without one, a LocalCluster of two worker processes (one thread each) is started for
the run and closed after it. A runner always names its cluster by address, never by a cluster
object, so a subflow can run on a copy of its parent's runner (`on_caller_runner`) without
starting a second cluster.

What the workers run is the de-identification of one genomic file per task (flows.pipeline)
and the delivery of one encrypted file per task (flows.delivery_tasks). They read the inputs, the
job specs, the release and the keystore folder at the paths the flow sees, so they need the lab's
filesystem (shared storage); a delivery also needs the destination's credentials (for S3, the
usual AWS configuration). Neither needs a secret of the lab: assessment, the gate and the signed
transfer log stay in the flow's process, which alone reads the keystore passphrase.
Only flows/ imports prefect_dask (import-linter).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from flows.errors import UsageProblem

if TYPE_CHECKING:  # prefect and dask load in the functions: the CLI starts without them
    from prefect.flows import Flow
    from prefect.futures import PrefectFuture
    from prefect.task_runners import TaskRunner

P = ParamSpec("P")
R = TypeVar("R")

LOCAL_WORKERS = os.cpu_count() or 2  # per-file tasks at once in this process: one per core
LOCAL_CLUSTER_WORKERS = 2
CONNECT_TIMEOUT = 5.0  # seconds a scheduler has to answer


class Runner(StrEnum):
    """The task runners a flow can be started on."""

    LOCAL = "local"
    DASK = "dask"


def local_runner() -> TaskRunner[PrefectFuture[Any]]:
    """Threads in this process, one per core (per-file tasks are CPU-bound htslib work)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=LOCAL_WORKERS))


@contextmanager
def task_runner(kind: Runner, address: str | None = None) -> Iterator[TaskRunner[PrefectFuture[Any]]]:
    """The task runner to start a flow on; a LocalCluster started for dask without an address
    lives until the block ends. Raises UsageProblem for an address with the local runner or a
    scheduler that does not answer (before any flow starts)."""
    if kind is Runner.LOCAL:
        if address is not None:
            raise UsageProblem("--dask-address needs --runner dask; drop it or add --runner dask")
        yield local_runner()
        return
    if address is not None:
        check_scheduler(address)
        yield dask_runner(address)
        return
    from distributed import LocalCluster

    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=LOCAL_CLUSTER_WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield dask_runner(cluster.scheduler_address)


def dask_runner(address: str) -> TaskRunner[PrefectFuture[Any]]:
    """prefect-dask's DaskTaskRunner on the scheduler at address (a copy connects to the same one)."""
    from prefect_dask.task_runners import DaskTaskRunner

    return cast("TaskRunner[PrefectFuture[Any]]", DaskTaskRunner(address=address))


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise UsageProblem unless a Dask scheduler completes Dask's handshake at address within
    timeout seconds (a bare comm, not a Client: a Client that failed to start hangs at exit)."""
    from distributed.comm.core import connect

    async def handshake() -> None:
        comm = await connect(address, timeout=timeout)  # type: ignore[no-untyped-call]
        await comm.close()

    try:
        asyncio.run(handshake())
    except Exception as exc:  # a bad address, a refusal, a timeout, or a peer that is not Dask
        raise UsageProblem(
            f"--dask-address {address}: no Dask scheduler answered within {timeout:g} s; start one "
            "(`dask scheduler`) or fix the address (tcp://host:port)"
        ) from exc


def on_caller_runner(subflow: Flow[P, R]) -> Flow[P, R]:
    """subflow on (a copy of) the task runner of the flow that calls it: a subflow otherwise runs
    its tasks on its own runner, and `--runner dask` on the parent would not reach them."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None:
        return subflow
    return subflow.with_options(task_runner=context.task_runner)
