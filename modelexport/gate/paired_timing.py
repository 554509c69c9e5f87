"""The gate's timing: BASE and HEAD export the same cell turn about, a pair at a time.

Measured on this 2-core VM, a cell's CPU time moves with the machine over
seconds (a reference export timed next to a cell correlated 0.78 with it,
one timed seconds away 0.4-0.55), and between fresh processes by ~3%.
Timing each side in its own matrix run put ~10 s between the two exports
of a pair, too far apart for pairing to divide the machine out: six rounds
of a no-op commit then read +9% on a 18 ms cell in one CI run.  So each
round starts one worker per side (``timing_worker``, importing that side's
code), warms every cell up on both, then times the cells ``repeat`` times as
back-to-back pairs, alternating which side goes first.  A round's figure
for a cell is the median of its paired HEAD / BASE ratios (``_round_ratio``);
fresh workers per round turn each process's own luck (memory layout) into
noise that the gate's verdict over rounds weighs (``significance``).

A cell that timed out or crashed in either side's matrix run is not timed
(``skip``); any other export that gives no answer within ``ANSWER_TIMEOUT``
ends the gate with a one-line error naming it, instead of hanging it.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from modelexport.errors import ModelExportError

WORKER = Path(__file__).with_name("timing_worker.py")
SIDES = ("base", "head")
# Seconds a worker may take for one answer (start-up, or one export of a tiny cell).
ANSWER_TIMEOUT = 600.0


@dataclass
class CellTiming:
    """One cell's rounds: each side's best CPU seconds and the paired ratio, per round."""

    base: list[float] = field(default_factory=list)
    head: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    error: str = ""


class _Worker:
    """A timing worker in one side's worktree, answering one request per line."""

    def __init__(self, tree: Path, log_file: IO[str]) -> None:
        self.tree = tree
        self._log = log_file
        launcher = ("import runpy, sys; sys.argv = [sys.argv[1]]; "
                    "runpy.run_path(sys.argv[0], run_name='__main__')")
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
        self._process = subprocess.Popen(
            [sys.executable, "-c", launcher, str(WORKER)], cwd=tree, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file)

    def read(self, waiting_for: str = "start-up", timeout: float = ANSWER_TIMEOUT,
             ) -> dict[str, Any]:
        """The worker's next answer; a worker silent for ``timeout`` seconds is killed."""
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            self._process.kill()
            self._process.wait()
            raise ModelExportError(f"timing worker in {self.tree} gave no answer for "
                                   f"{waiting_for} within {timeout:.0f} s")
        line = self._process.stdout.readline()
        if not line:
            self._log.flush()
            tail = Path(self._log.name).read_text().strip().splitlines()[-1:]
            raise ModelExportError(f"timing worker in {self.tree} exited: {tail}")
        return json.loads(line)

    def ask(self, model: str, strategy: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"model": model, "strategy": strategy}) + "\n")
        self._process.stdin.flush()
        return self.read(f"{model}/{strategy}")

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _round_ratio(pairs: list[dict[str, float]]) -> float:
    """HEAD / BASE for one round: the median of the paired ratios.

    It holds while fewer than half the pairs are disturbed.  It used to be the
    lower of this and the ratio of each side's best export, on the idea that
    noise only adds CPU time.  On this VM it does not: the machine's speed
    wanders both ways by up to 25% within a second, so one side's best export
    is as often a lucky one, and that estimate swung a round by up to 0.19
    either way (a no-op round read 0.84 by it and 1.03 paired).  Taking the
    lower of the two then pulled rounds of a planted 20% slowdown under 1.0,
    and the gate missed it in CI.
    """
    return statistics.median(p["head"] / p["base"] for p in pairs)


def _round(trees: dict[str, Path], cells: list[tuple[str, str]], repeat: int,
           timings: dict[str, CellTiming], scratch: Path, index: int) -> None:
    logs = {side: open(scratch / f"worker-{side}-{index}.log", "w")  # noqa: SIM115
            for side in SIDES}
    workers = {side: _Worker(trees[side], logs[side]) for side in SIDES}
    try:
        for worker in workers.values():
            worker.read()  # ready: both import and start side by side
        live = []
        for model, strategy in cells:  # warm-up: lazy imports and first-call caches
            answers = {side: workers[side].ask(model, strategy) for side in SIDES}
            failed = [f"{side}: {a['error']}" for side, a in answers.items() if "error" in a]
            if failed:
                timings[f"{model}/{strategy}"].error = "; ".join(failed)
            else:
                live.append((model, strategy))
        pairs: dict[str, list[dict[str, float]]] = {f"{m}/{s}": [] for m, s in live}
        for attempt in range(repeat):
            order = SIDES if attempt % 2 == 0 else SIDES[::-1]
            for model, strategy in live:
                pair = {side: workers[side].ask(model, strategy) for side in order}
                if all("cpu" in answer for answer in pair.values()):
                    pairs[f"{model}/{strategy}"].append({s: a["cpu"] for s, a in pair.items()})
        for key, measured in pairs.items():
            if not measured:
                continue
            timing = timings[key]
            timing.base.append(min(p["base"] for p in measured))
            timing.head.append(min(p["head"] for p in measured))
            timing.ratios.append(_round_ratio(measured))
    finally:
        for side in SIDES:
            workers[side].close()
            logs[side].close()


def time_pairs(trees: dict[str, Path], models: list[str], strategies: list[str],
               rounds: int, repeat: int, log: Callable[[str], None] = lambda _: None,
               skip: dict[str, str] | None = None) -> dict[str, CellTiming]:
    """Every cell's paired timings over ``rounds`` rounds of fresh workers.

    ``skip`` maps cells not to time (``model/strategy``) to the reason.
    """
    skip = skip or {}
    timings = {f"{m}/{s}": CellTiming(error=skip.get(f"{m}/{s}", ""))
               for m in models for s in strategies}
    cells = [(model, strategy) for model in models for strategy in strategies
             if f"{model}/{strategy}" not in skip]
    if not cells:
        return timings
    with tempfile.TemporaryDirectory(prefix="modelexport-gate-timing-") as scratch:
        for index in range(rounds):
            log(f"timing round {index + 1}/{rounds}: {len(cells)} cells x {repeat} pairs")
            _round(trees, cells, repeat, timings, Path(scratch), index)
    return timings
