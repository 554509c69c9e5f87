"""ONNX translations for aten ops that TorchScript's ONNX exporter lacks.

The TorchScript exporter stops at the first operator without a symbolic
function (``Exporting the operator 'aten::diff' ... is not supported``),
although many such ops are short compositions of standard ONNX ops.  Each
function here is one such composition, registered with
``torch.onnx.register_custom_op_symbolic`` the first time a TorchScript
capture runs.  Add an op here when a model needs it and the composition is
exact; the export's parity check then guards it on every model that uses it.
"""

from __future__ import annotations

import functools

import torch
from torch.onnx import symbolic_helper

_INT64_MAX = 2**63 - 1
_OLDEST_OPSET = 9


def _constant(graph: torch._C.Graph, values: list[int]) -> torch._C.Value:
    return graph.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


@symbolic_helper.parse_args("v", "i", "i", "v", "v")
def _diff(graph, value, n, dim, prepend, append):
    """``torch.diff``: ``x[1:] - x[:-1]`` along ``dim``, ``n`` times; ``!=`` for booleans."""
    pieces = [p for p in (prepend, value, append) if not symbolic_helper._is_none(p)]
    if len(pieces) > 1:
        value = graph.op("Concat", *pieces, axis_i=dim)
    is_bool = symbolic_helper._type_utils.JitScalarType.from_value(
        value, symbolic_helper._type_utils.JitScalarType.UNDEFINED
    ) == symbolic_helper._type_utils.JitScalarType.BOOL
    axes = _constant(graph, [dim])
    for _ in range(n):
        later = graph.op("Slice", value, _constant(graph, [1]), _constant(graph, [_INT64_MAX]),
                         axes)
        earlier = graph.op("Slice", value, _constant(graph, [0]), _constant(graph, [-1]), axes)
        value = graph.op("Xor" if is_bool else "Sub", later, earlier)
    return value


@symbolic_helper.parse_args("v", "i", "none")
def _cumsum(graph, value, dim, dtype):
    """``torch.cumsum``; booleans are summed as int64, as torch does (ONNX's CumSum takes none)."""
    scalar = symbolic_helper._type_utils.JitScalarType
    if dtype.node().kind() != "prim::Constant" or not symbolic_helper._is_none(dtype):
        target = scalar(symbolic_helper._get_const(dtype, "i", "dtype"))
        value = graph.op("Cast", value, to_i=target.onnx_type())
    elif scalar.from_value(value, scalar.UNDEFINED) == scalar.BOOL:
        value = graph.op("Cast", value, to_i=scalar.INT64.onnx_type())
    return graph.op("CumSum", value, _constant(graph, [dim]))


@symbolic_helper.parse_args("v")
def _expm1(graph, value):
    """``torch.expm1``: ``exp(x) - 1`` (less precise than expm1 for tiny x; parity decides)."""
    one = graph.op("CastLike", graph.op("Constant", value_t=torch.tensor(1.0)), value)
    return graph.op("Sub", graph.op("Exp", value), one)


SYMBOLICS = {"aten::diff": _diff, "aten::cumsum": _cumsum, "aten::expm1": _expm1}


@functools.cache
def register_missing_symbolics(opset: int) -> None:
    """Register every translation in ``SYMBOLICS`` for ``opset`` (once per process).

    The exporter picks, per op, the registration for the newest opset not
    above the target, so a translation registered at an old opset would lose
    to a built-in one registered later (``aten::cumsum`` at 11): each is
    registered at the target opset itself.
    """
    for name, function in SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(name, function, max(opset, _OLDEST_OPSET))
