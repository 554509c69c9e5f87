"""Isolated execution of matrix cells in long-lived worker processes.

Starting a fresh interpreter per cell would spend seconds importing torch and
transformers each time, so each worker imports once and runs models one by
one, each model's cells together (``cells.run_model``).  Isolation is kept
where it matters: a worker that crashes (segfault, abort, out of memory) or
overruns a step's timeout is killed and replaced, only the cell whose step
it was gets the verdict ``crashed`` or ``timeout`` (the worker says which
step it is on), and the model's other cells run again on a fresh worker.

Torch runs on one thread in every worker, whatever ``jobs`` is: a cell's
process CPU time then does not change when other processes compete for the
cores (docs/harness.md, "Timing"), and parallelism comes from running models side by
side.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from multiprocessing.connection import Connection, wait
from pathlib import Path

from modelexport.harness.cells import CRASHED, TIMEOUT, CellResult, ModelSpec


def import_plugin(path: str) -> None:
    """Execute a user's Python file so its ``@zoo_entry`` and ``register_strategy`` calls run."""
    resolved = Path(path).resolve()
    name = f"modelexport_plugin_{abs(hash(str(resolved)))}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def prepare_for_cells(plugins: list[str]) -> None:
    """Set up a process that runs cells: quiet libraries, torch on one thread, the plugins.

    Shared by the local workers and Dask's (``distributed.run_on_worker``);
    repeated calls in one process cost nothing.
    """
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    torch.set_num_threads(1)
    import model_zoo  # noqa: F401  (registers the built-in entries)
    import modelexport.strategies  # noqa: F401

    for plugin in plugins:
        import_plugin(plugin)


def _worker_main(connection: Connection, plugins: list[str]) -> None:
    """Worker loop: receive a ModelSpec dict; send each step, then the cells' dicts."""
    import logging

    logging.disable(logging.WARNING)  # this process is ours alone: nothing to hear from
    prepare_for_cells(plugins)
    from modelexport.harness.cells import run_model

    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        message["strategies"] = tuple(message["strategies"])
        results = run_model(ModelSpec(**message),
                            on_step=lambda strategy: connection.send(("step", strategy)))
        connection.send(("cells", [r.to_dict() for r in results]))


class _Worker:
    """One worker process and the model job it runs (with the step it is on)."""

    def __init__(self, context: mp.context.BaseContext, plugins: list[str]):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, plugins),
                                       daemon=True)
        self.process.start()
        child.close()
        self.job: ModelSpec | None = None
        self.step: str | None = None  # the strategy whose step runs; None: a shared step
        self.started = 0.0  # when the current step started: the timeout is per step

    def submit(self, job: ModelSpec) -> None:
        self.job, self.step, self.started = job, None, time.monotonic()
        self.connection.send(asdict(job))

    def kill(self, grace: float = 0.0) -> None:
        """Stop the worker: wait ``grace`` seconds for a clean exit, then kill it."""
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


def run_cells(specs: list[ModelSpec], jobs: int, timeout: float, plugins: list[str],
              ) -> Iterator[CellResult]:
    """Run every model's cells on ``jobs`` workers; yield results as models finish.

    ``timeout`` applies to each step of a model (its build and analysis, one
    export, one timed export).  A worker that dies or overruns a step is
    replaced: the cell whose step it was gets ``crashed`` or ``timeout``
    (every cell, if the step was shared), and the model's other cells run
    again on the new worker.
    """
    context = mp.get_context("spawn")
    jobs = max(1, min(jobs, len(specs))) if specs else 1
    pending = list(reversed(specs))
    workers = [_Worker(context, plugins) for _ in range(jobs)]
    try:
        while pending or any(w.job is not None for w in workers):
            for index, worker in enumerate(workers):
                if worker.job is None and pending:
                    if not worker.process.is_alive():
                        worker.kill()
                        workers[index] = worker = _Worker(context, plugins)
                    worker.submit(pending.pop())
            busy = [w for w in workers if w.job is not None]
            ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy],
                         timeout=1.0)
            for index, worker in enumerate(workers):
                if worker.job is None:
                    continue
                results = _collect(worker, ready, timeout)
                if results is None:
                    continue
                job = worker.job
                if any(r.status in (CRASHED, TIMEOUT) for r in results):
                    worker.kill()
                    workers[index] = _Worker(context, plugins)
                    rest = job.without({r.strategy for r in results})
                    if rest is not None:
                        pending.append(rest)  # next: the model's other cells, afresh
                else:
                    worker.job = None
                yield from results
    finally:
        for worker in workers:
            idle = worker.job is None and worker.process.is_alive()
            if idle:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
            worker.kill(grace=10.0 if idle else 0.0)


def _collect(worker: _Worker, ready: list, timeout: float) -> list[CellResult] | None:
    """The job's cells if it finished, its lost cells if it died or overran, else None."""
    if worker.connection in ready:
        try:
            while worker.connection.poll():
                kind, payload = worker.connection.recv()
                if kind == "cells":
                    return [CellResult.from_dict(cell) for cell in payload]
                worker.step, worker.started = payload, time.monotonic()
        except (EOFError, OSError):
            return _lost(worker, CRASHED)
    if worker.process.sentinel in ready or not worker.process.is_alive():
        return _lost(worker, CRASHED)
    if time.monotonic() - worker.started > timeout:
        return _lost(worker, TIMEOUT)
    return None


def _lost(worker: _Worker, status: str) -> list[CellResult]:
    """The verdict on the step's cell, or on every cell of the job for a shared step."""
    job = worker.job
    assert job is not None
    if status == TIMEOUT:
        error = f"no result within {time.monotonic() - worker.started:.0f}s; worker killed"
    else:
        worker.process.join(timeout=2)
        error = f"worker died (exit code {worker.process.exitcode})"
    if worker.step is None:
        error += " in a step the model's cells share (build, analysis or latency)"
    lost = job.strategies if worker.step is None else (worker.step,)
    return [CellResult(model=job.model, strategy=strategy, status=status, error=error,
                       cell_seconds=time.monotonic() - worker.started) for strategy in lost]
