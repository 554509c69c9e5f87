"""ONNX Runtime inference latency of an exported file: the runtime objective's figure.

Every file is timed with the same session options (one intra- and one
inter-op thread, sequential execution, all graph optimisations), so the
figure compares files, not thread schedules: a matrix runs two models at
once on two cores, and threads would fight.  Warm runs only; the median of
repeated runs, stopped by count or by a time budget so a large file cannot
stall the matrix.  A model's files are run turn about in one process
(``interleaved_latencies``): timed one cell after another, two copies of
one graph read 0.63x to 1.70x of each other (10th to 90th percentile, 307
wide models), since each was timed beside different work on the other core.

Strategies that share a capture write the same graph and differ only in
its tags (HTP and USAGE_BASED).  Even timed turn about, two copies of one
graph read differently by noise alone, and a 10% tie rule could then put
one in the best set and not the other.  Each file therefore also records its
``runtime_fingerprint``: equal fingerprints mean the same operators on the
same shapes and constants, so the same kernels run; the scoring pools the
latencies of equal files (``scoring.pooled_latencies``).
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from modelexport.inputs import ModelInputs
from modelexport.onnx_runtime.sessions import open_session, ort_feed, session_options
from modelexport.output.onnx_payload import shell

WARMUP_RUNS = 2
MIN_RUNS, MAX_RUNS = 10, 200
BUDGET_SECONDS = 0.5


@dataclass(frozen=True)
class Latency:
    median_ms: float
    runs: int


def interleaved_latencies(files: dict[str, tuple[Path, ModelInputs, list[str]]],
                          ) -> dict[str, Latency | Exception]:
    """Median warm latency of each file, the files run turn about.

    ``files`` maps a key to (path, example inputs, the export's input names,
    by which the inputs are fed).  One round runs every file once, the order
    rotated each round, until each has run ``MIN_RUNS`` times and the
    rounds took ``BUDGET_SECONDS`` per file, or ``MAX_RUNS`` rounds: files
    compared are timed under the same conditions, minutes apart at most,
    rather than each beside whatever else the machine ran at its own time.
    A file that cannot be opened or run gets its exception instead.
    """
    outcome: dict[str, Latency | Exception] = {}
    runnable: dict[str, tuple[Any, dict[str, Any]]] = {}
    for key, (path, example, input_names) in files.items():
        try:
            # the same options for every timed session (module doc): one thread, sequential
            session = open_session(path, session_options(level="all", threads=1,
                                                         sequential=True))
            feed = ort_feed([i.name for i in session.get_inputs()], example, input_names)
            for _ in range(WARMUP_RUNS):
                session.run(None, feed)
        except Exception as exc:
            outcome[key] = exc
            continue
        runnable[key] = (session, feed)
    times: dict[str, list[float]] = {key: [] for key in runnable}
    keys = list(runnable)
    started, rounds = time.perf_counter(), 0
    while keys and rounds < MAX_RUNS and (
            rounds < MIN_RUNS or time.perf_counter() - started < BUDGET_SECONDS * len(keys)):
        shift = rounds % len(keys)
        for key in keys[shift:] + keys[:shift]:
            session, feed = runnable[key]
            start = time.perf_counter()
            try:
                session.run(None, feed)
            except Exception as exc:
                outcome[key] = exc
                keys.remove(key)
                continue
            times[key].append((time.perf_counter() - start) * 1000)
        rounds += 1
    for key in keys:
        outcome[key] = Latency(statistics.median(times[key]), len(times[key]))
    return outcome


def runtime_fingerprint(model: onnx.ModelProto) -> str:
    """A digest of what decides a saved file's run time (``model``, as read), and nothing else.

    Kept: every operator with its inputs, outputs and attributes, the graph's
    inputs and outputs, small initializers with their values (a Reshape's
    target shape), large ones by name, type and shape.  Left out: tags and
    other metadata, node names, doc strings, and the values of large weights,
    which change no kernel's work.
    """
    structure = shell(model, keep_external=False)
    del structure.metadata_props[:]
    for node in structure.graph.node:
        del node.metadata_props[:]
        node.name = node.doc_string = ""
    digest = hashlib.sha256(structure.SerializeToString(deterministic=True))
    kept = {t.name for t in structure.graph.initializer}
    for tensor in model.graph.initializer:
        if tensor.name not in kept:
            digest.update(f"{tensor.name}:{tensor.data_type}:{list(tensor.dims)};".encode())
    return digest.hexdigest()[:16]
