"""ONNX Runtime inference latency of an exported file: the runtime objective's figure.

Every cell is timed with the same session options (one intra- and one
inter-op thread, sequential execution, all graph optimisations), so the
figure compares files, not thread schedules: a matrix runs two cells at
once on two cores, and threads would fight.  Warm runs only; the median of
repeated runs, stopped by count or by a time budget so a large file cannot
stall the matrix.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from modelexport.inputs import ModelInputs
from modelexport.onnx_runtime.sessions import open_session, ort_feed, session_options

WARMUP_RUNS = 2
MIN_RUNS, MAX_RUNS = 10, 200
BUDGET_SECONDS = 0.5


@dataclass(frozen=True)
class Latency:
    median_ms: float
    runs: int


def ort_latency(path: Path, example: ModelInputs, input_names: list[str]) -> Latency:
    """Median warm latency of ``path`` on ``example``, fed by name (``input_names``).

    See the module doc for the stopping rule.
    """
    # the same options for every timed session (module doc): one thread, sequential
    session = open_session(path, session_options(level="all", threads=1, sequential=True))
    wanted = [i.name for i in session.get_inputs()]
    feed = ort_feed(wanted, example, input_names)
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < MAX_RUNS and (len(times) < MIN_RUNS
                                     or time.perf_counter() - started < BUDGET_SECONDS):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return Latency(statistics.median(times), len(times))
