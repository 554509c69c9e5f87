"""Isolated execution of matrix cells in long-lived worker processes.

Starting a fresh interpreter per cell would spend seconds importing torch and
transformers each time, so each worker imports once and runs cells one by
one.  Isolation is kept where it matters: a worker that crashes (segfault,
abort, out of memory) or overruns the cell's timeout is killed and replaced,
and only that cell gets the verdict ``crashed`` or ``timeout``.

Torch runs on one thread in every worker, whatever ``jobs`` is: a cell's
process CPU time then does not change when other processes compete for the
cores (README, "Timing"), and parallelism comes from running cells side by
side.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from multiprocessing.connection import Connection, wait
from pathlib import Path

from modelexport.harness.cells import CRASHED, TIMEOUT, CellResult, CellSpec


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
    """Worker loop: receive a CellSpec dict, send back a CellResult dict."""
    import logging

    logging.disable(logging.WARNING)  # this process is ours alone: nothing to hear from
    prepare_for_cells(plugins)
    from modelexport.harness.cells import run_cell

    while True:
        try:
            message = connection.recv()
        except EOFError:
            return
        if message is None:
            return
        result = run_cell(CellSpec(**message))
        connection.send(result.to_dict())


class _Worker:
    def __init__(self, context: mp.context.BaseContext, plugins: list[str]):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, plugins),
                                       daemon=True)
        self.process.start()
        child.close()
        self.spec: CellSpec | None = None
        self.started = 0.0

    def submit(self, spec: CellSpec) -> None:
        self.spec, self.started = spec, time.monotonic()
        self.connection.send(asdict(spec))

    def kill(self, grace: float = 0.0) -> None:
        """Stop the worker: wait ``grace`` seconds for a clean exit, then kill it."""
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


def run_cells(specs: list[CellSpec], jobs: int, timeout: float, plugins: list[str],
              on_result: Callable[[CellResult], None] | None = None) -> Iterator[CellResult]:
    """Run every spec on ``jobs`` workers; yield results as they finish."""
    context = mp.get_context("spawn")
    jobs = max(1, min(jobs, len(specs))) if specs else 1
    pending = list(reversed(specs))
    workers = [_Worker(context, plugins) for _ in range(jobs)]
    try:
        while pending or any(w.spec is not None for w in workers):
            for index, worker in enumerate(workers):
                if worker.spec is None and pending:
                    if not worker.process.is_alive():
                        worker.kill()
                        workers[index] = worker = _Worker(context, plugins)
                    worker.submit(pending.pop())
            busy = [w for w in workers if w.spec is not None]
            ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy],
                         timeout=1.0)
            for index, worker in enumerate(workers):
                if worker.spec is None:
                    continue
                result = _collect(worker, ready, timeout)
                if result is None:
                    continue
                if result.status in (CRASHED, TIMEOUT):
                    worker.kill()
                    workers[index] = _Worker(context, plugins)
                else:
                    worker.spec = None
                if on_result is not None:
                    on_result(result)
                yield result
    finally:
        for worker in workers:
            idle = worker.spec is None and worker.process.is_alive()
            if idle:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
            worker.kill(grace=10.0 if idle else 0.0)


def _collect(worker: _Worker, ready: list, timeout: float) -> CellResult | None:
    spec = worker.spec
    assert spec is not None
    if worker.connection in ready:
        try:
            return CellResult.from_dict(worker.connection.recv())
        except (EOFError, OSError):
            pass
        return _verdict(spec, CRASHED, worker)
    if worker.process.sentinel in ready or not worker.process.is_alive():
        return _verdict(spec, CRASHED, worker)
    if time.monotonic() - worker.started > timeout:
        return _verdict(spec, TIMEOUT, worker)
    return None


def _verdict(spec: CellSpec, status: str, worker: _Worker) -> CellResult:
    if status == TIMEOUT:
        error = f"no result within {time.monotonic() - worker.started:.0f}s; worker killed"
    else:
        worker.process.join(timeout=2)
        error = f"worker died (exit code {worker.process.exitcode})"
    return CellResult(model=spec.model, strategy=spec.strategy, status=status, error=error,
                      cell_seconds=time.monotonic() - worker.started)
