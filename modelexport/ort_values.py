"""Run a graph in ONNX Runtime with its intermediate tensors exposed.

Used wherever a tool needs the value of tensors inside the graph, not only
its outputs: usage-based tagging, per-module parity, extract's boundary check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np
import onnx

from modelexport.errors import ModelExportError, one_line
from modelexport.onnx_payload import left_out_weights, skeleton

T = TypeVar("T")


class OrtRunError(ModelExportError):
    """ONNX Runtime could not load or run a graph (bad file, inputs that don't fit)."""


def ort_call(what: str, call: Callable[[], T]) -> T:
    """Run ``call``; an ONNX Runtime failure becomes one readable line."""
    try:
        return call()
    except ModelExportError:
        raise
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise OrtRunError(f"ONNX Runtime could not {what}: {one_line(exc)}") from exc

ORT_LEVELS = ("disable", "basic", "extended", "all")


def ort_level(name: str) -> object:
    """ONNX Runtime's GraphOptimizationLevel for one of :data:`ORT_LEVELS`."""
    import onnxruntime as ort

    return {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[name]


def ort_session(model: onnx.ModelProto | str, optimize: bool = False) -> object:
    """A CPU session; graph optimisation off unless asked, so tensors keep their names."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort_level("disable")
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort_call("load the model", lambda: ort.InferenceSession(
        source, options, providers=["CPUExecutionProvider"]))


def intermediate_values(graph: onnx.ModelProto, feeds: dict[str, np.ndarray],
                        names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Node outputs of ``graph`` on ``feeds`` (all of them, or ``names``), from one run.

    Tensors need a type to become graph outputs, so shapes are inferred
    first; a tensor inference cannot type is left out.  Both the inference
    and the session work on the graph's skeleton, its weights fed as inputs
    (:mod:`modelexport.onnx_payload`): copying a bert-base's 440 MB of
    weights through protobuf for each took three times as long as the run.
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
    weights = left_out_weights(graph, probe)
    results = ort_call("run the model", lambda: session.run(outputs, {**weights, **feeds}))
    values = dict(zip(outputs, results))
    values.update(feeds)
    return values
