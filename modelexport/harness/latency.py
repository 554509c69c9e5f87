"""ONNX Runtime inference latency of an exported file: the runtime objective's figure.

Every cell is timed with the same session options (one intra- and one
inter-op thread, sequential execution, all graph optimisations), so the
figure compares files, not thread schedules: a matrix runs two cells at
once on two cores, and threads would fight.  Warm runs only; the median of
repeated runs, stopped by count or by a time budget so a large file cannot
stall the matrix.

Strategies that share a capture write the same graph and differ only in
its tags (HTP and USAGE_BASED).  Timed separately, two copies of one graph
read differently by noise alone, and a 10% tie rule then puts one in the
best set and not the other.  Each file therefore also records its
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
