"""Run a graph in ONNX Runtime with its intermediate tensors exposed.

Used wherever a tool needs the value of tensors inside the graph, not only
its outputs: usage-based tagging, per-module parity, extract's boundary check.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx

from modelexport.onnx_runtime.sessions import open_session, ort_call, session_options
from modelexport.output.onnx_payload import MemoryPayloads, left_out_weights, skeleton


def ort_session(model: onnx.ModelProto | str, optimize: bool = False) -> object:
    """A CPU session; graph optimisation off unless asked, so tensors keep their names."""
    return ort_call("load the model", lambda: open_session(
        model, session_options(level="all" if optimize else "disable")))


def intermediate_values(graph: onnx.ModelProto, feeds: dict[str, np.ndarray],
                        names: Iterable[str] | None = None,
                        payloads: MemoryPayloads | None = None) -> dict[str, np.ndarray]:
    """Node outputs of ``graph`` on ``feeds`` (all of them, or ``names``), from one run.

    Tensors need a type to become graph outputs, so shapes are inferred
    first; a tensor inference cannot type is left out.  Both the inference
    and the session work on the graph's skeleton, its weights fed as inputs
    (:mod:`modelexport.output.onnx_payload`): copying a bert-base's 440 MB of
    weights through protobuf for each took three times as long as the run.
    ``payloads`` holds the graph's in-memory weights, fed without a copy.
    """
    probe = skeleton(graph)
    inferred = onnx.shape_inference.infer_shapes(probe)
    typed = {v.name: v for v in inferred.graph.value_info}
    wanted = set(names) if names is not None else None
    existing = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if (name and name not in existing and name in typed
                    and (wanted is None or name in wanted)):
                probe.graph.output.append(typed[name])
                existing.add(name)
    session = ort_session(probe)
    outputs = [o.name for o in session.get_outputs()]
    weights = left_out_weights(graph, probe, payloads)
    results = ort_call("run the model", lambda: session.run(outputs, {**weights, **feeds}))
    values = dict(zip(outputs, results))
    values.update(feeds)
    return values
