"""The three graph optimisers users run on exported files, behind one call.

Each returns the rewritten model; none of them keeps our tags on the nodes it
creates (and onnxslim and ONNX Runtime drop metadata on every node), which is
what :mod:`modelexport.tools.retag` repairs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from modelexport.errors import ModelExportError, one_line
from modelexport.onnx_runtime.sessions import open_session, session_options

OPTIMIZERS = ("onnxscript", "ort", "onnxslim")


def _onnxscript(model: onnx.ModelProto, _level: str) -> onnx.ModelProto:
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(model)


def _ort(model: onnx.ModelProto, level: str) -> onnx.ModelProto:
    """ONNX Runtime's offline mode: optimise once, save the session's graph."""
    with tempfile.TemporaryDirectory(prefix="modelexport-ort-") as scratch:
        target = Path(scratch) / "optimized.onnx"
        open_session(model, session_options(level=level, optimized_path=target))
        return onnx.load(str(target))


def _onnxslim(model: onnx.ModelProto, _level: str) -> onnx.ModelProto:
    try:
        import onnxslim
    except ImportError:
        raise ModelExportError("onnxslim is not installed (pip install onnxslim)") from None
    return onnxslim.slim(model)


def optimize(model: onnx.ModelProto, optimizer: str, ort_level: str = "extended",
             ) -> onnx.ModelProto:
    """Run ``optimizer`` on a copy of ``model``."""
    runners = {"onnxscript": _onnxscript, "ort": _ort, "onnxslim": _onnxslim}
    if optimizer not in runners:
        raise ModelExportError(f"unknown optimizer {optimizer!r}; choose from {OPTIMIZERS}")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        return runners[optimizer](copy, ort_level)
    except ModelExportError:
        raise
    except Exception as exc:
        raise ModelExportError(f"{optimizer} failed on this model: {one_line(exc)}") from None
