"""Every ONNX Runtime session modelexport opens, made in one place.

The exporter's self-check, parity, usage-based tagging, the latency figure,
and the tools (extract, profile, optimize) each need a CPU session with
slightly different options.  They all come from :func:`session_options` and
:func:`open_session`, so the choices (quiet logs, CPU only, which
optimisation level a name means) cannot drift apart, and a runtime failure
reads the same everywhere (:func:`ort_call`).  Feeds are built strictly by
input name (:func:`ort_feed`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx

from modelexport.errors import InputMismatchError, ModelExportError, one_line
from modelexport.inputs import ModelInputs

T = TypeVar("T")

# Graph optimisation levels by the names users pass (profile --level, optimize --ort-level).
ORT_LEVELS = ("disable", "basic", "extended", "all")
# The levels that rewrite a graph: offline optimisation at "disable" would write it back as is.
OPTIMIZING_LEVELS = ORT_LEVELS[1:]


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


def ort_level(name: str) -> Any:
    """ONNX Runtime's GraphOptimizationLevel for one of :data:`ORT_LEVELS`."""
    import onnxruntime as ort

    return {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[name]


def session_options(level: str = "all", threads: int = 0, sequential: bool = False,
                    prepack: bool = True, profile_prefix: Path | None = None,
                    optimized_path: Path | None = None, spinning: bool = False) -> Any:
    """Options for a CPU session.

    ``level`` names the graph optimisation (``"disable"`` keeps every tensor
    under its own name); ``threads`` 0 lets ONNX Runtime choose; ``sequential``
    pins one inter-op thread too; ``prepack=False`` skips weight pre-packing,
    half of a load that only asks whether the file loads.  ``spinning``
    lets idle pool threads busy-wait for the next task, ONNX Runtime's
    default, which trades CPU for latency: right for timing a deployment
    (``profile``), wasted on the few runs of a check.  Beside one CPU-bound
    process, an HTP export of the tiny bert spent 0.185 s of CPU (median of
    8) with spinning and 0.157 s without.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort_level(level)
    options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if sequential:
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return options


def open_session(source: onnx.ModelProto | str | Path | bytes, options: Any = None) -> Any:
    """A CPU InferenceSession on a file, serialised bytes or an in-memory graph.

    Raises what ONNX Runtime raises; wrap the call in :func:`ort_call` where
    the failure is the user's to read.
    """
    import onnxruntime as ort

    if isinstance(source, onnx.ModelProto):
        source = source.SerializeToString()
    elif isinstance(source, Path):
        source = str(source)
    return ort.InferenceSession(source, options if options is not None else session_options(),
                                providers=["CPUExecutionProvider"])


def ort_feed(wanted: list[str], inputs: ModelInputs, names: list[str]) -> dict[str, np.ndarray]:
    """Arrays for the graph inputs ``wanted``, strictly by name.

    Never by position: a file whose input called ``attention_mask`` reads
    the token types would pass a positional check and fail every user who
    feeds it by name, which is how ONNX Runtime is fed.
    """
    by_name = dict(zip(names, inputs.tensors()))
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise InputMismatchError(
            f"the ONNX graph expects inputs {wanted}; the example has no "
            f"{', '.join(missing)} (it provides {', '.join(by_name) or 'no tensors'})")
    return {name: by_name[name].detach().cpu().numpy() for name in wanted}
