"""Matrix cells on a Dask distributed cluster (``zoo run --scheduler ADDRESS``).

The local worker pool (``workers.py``) stays the default; this is the
scale-out path, and it leaves scheduling, retries and worker restarts to
Dask.  Workers need this package and the zoo importable (the same
environment as the client) and should run one thread each
(``dask worker ADDRESS --nthreads 1``): cells sharing a process would
share its CPU-time clock.

A task is one model's cells (``cells.run_model``), as on the local workers.
A task cannot say which step it is on, so a model whose task fails is split:

* a task whose worker died (Dask gives up on it with ``KilledWorker``, after
  the scheduler's ``distributed.scheduler.allowed-failures`` retries) is run
  again one cell per task; a one-cell task that dies is ``crashed``, and the
  run goes on;
* a task still executing ``timeout`` seconds per cell after its worker first
  reported it executing (polled every second) is cancelled and that worker
  restarted, since a Python thread cannot be stopped from outside; it is
  split the same way, and a one-cell task that overruns is ``timeout``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

from modelexport.errors import ModelExportError, one_line
from modelexport.harness.cells import CRASHED, TIMEOUT, CellResult, ModelSpec

POLL_SECONDS = 1.0


def run_on_worker(spec: dict[str, Any], plugins: list[str]) -> list[dict[str, Any]]:
    """The task: one model's cells, inside a Dask worker (imports are cached per process)."""
    from modelexport.harness.cells import run_model
    from modelexport.harness.workers import prepare_for_cells

    prepare_for_cells(plugins)
    spec["strategies"] = tuple(spec["strategies"])
    return [cell.to_dict() for cell in run_model(ModelSpec(**spec))]


def cells_on_cluster(address: str, specs: list[ModelSpec], jobs: int, timeout: float,
                     plugins: list[str]) -> Iterator[CellResult]:
    """Submit every model to the scheduler at ``address``; yield cells as models finish.

    ``jobs`` is ignored: the cluster's worker threads set the parallelism,
    and no more models are in flight than there are threads.
    """
    try:
        from distributed import Client, wait
    except ImportError:
        raise ModelExportError("--scheduler needs Dask distributed: pip install "
                               "'modelexport[scale]' (make setup installs it)") from None

    del jobs
    run_id = uuid.uuid4().hex[:8]
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ModelExportError(f"cannot reach the Dask scheduler at {address}: "
                               f"{one_line(exc)}") from None
    with client:
        waiting = list(specs)
        futures: dict[Any, ModelSpec] = {}
        started: dict[str, float] = {}
        pending: set = set()
        submitted = 0
        while waiting or pending:
            # no more models in flight than worker threads: a task queued behind
            # another on a worker would die with it, or start its clock early
            while waiting and len(pending) < max(1, sum(client.nthreads().values())):
                spec = waiting.pop(0)
                future = client.submit(run_on_worker, asdict(spec), plugins, pure=False,
                                       key=f"modelexport-model-{run_id}-{submitted}")
                submitted += 1
                futures[future] = spec
                pending.add(future)
            try:
                done, _ = wait(list(pending), timeout=POLL_SECONDS,
                               return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished within the poll
                done = set()
            for future in done:
                pending.discard(future)
                spec = futures[future]
                try:
                    cells = [CellResult.from_dict(c) for c in future.result()]
                except Exception as exc:  # KilledWorker, or the task failing outside run_model
                    if len(spec.strategies) > 1:
                        waiting[:0] = _one_per_cell(spec)
                        continue
                    cells = [CellResult(model=spec.model, strategy=spec.strategies[0],
                                        status=CRASHED, error=f"worker lost "
                                        f"({type(exc).__name__}: {one_line(exc)})")]
                yield from cells
            for future in _overrun(client, pending, started, futures, timeout):
                pending.discard(future)
                spec = futures[future]
                if len(spec.strategies) > 1:
                    waiting[:0] = _one_per_cell(spec)
                    continue
                yield CellResult(model=spec.model, strategy=spec.strategies[0], status=TIMEOUT,
                                 error=f"no result within {timeout:.0f}s; worker restarted",
                                 cell_seconds=time.monotonic() - started[future.key])


def _one_per_cell(spec: ModelSpec) -> list[ModelSpec]:
    """A failed model split into one task per cell, to find which cell failed."""
    return [replace(spec, strategies=(strategy,)) for strategy in spec.strategies]


def executing_keys(dask_worker: Any) -> list[str]:
    """Run on each worker by ``Client.run``: the keys its threads are executing now."""
    return [str(key) for key, task in dask_worker.state.tasks.items()
            if task.state == "executing"]


def _overrun(client: Any, pending: set, started: dict[str, float],
             futures: dict[Any, ModelSpec], timeout: float) -> list:
    """Futures executing past ``timeout`` per cell; cancelled, with their workers restarted.

    The clock starts when a worker reports the cell executing (its event loop
    answers while the cell's thread is busy), not when the scheduler queues it.
    """
    now = time.monotonic()
    running = client.run(executing_keys, on_error="ignore")
    where = {key: worker for worker, keys in running.items() for key in keys}
    late, restart = [], set()
    for future in pending:
        if future.key not in where:
            continue
        started.setdefault(future.key, now)
        if now - started[future.key] > timeout * len(futures[future].strategies):
            late.append(future)
            restart.add(where[future.key])
    if late:
        client.cancel(late, force=True)
        client.restart_workers(list(restart), raise_for_error=False)
    return late
