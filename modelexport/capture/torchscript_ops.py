"""ONNX translations for aten ops that TorchScript's ONNX exporter lacks.

The TorchScript exporter stops at the first operator without a symbolic
function (``Exporting the operator 'aten::diff' ... is not supported``),
although many such ops are short compositions of standard ONNX ops.  Each
function in ``SYMBOLICS`` is one such composition; the ones that fix a
translation torch has are in ``torchscript_repairs``.  Both are registered
with ``torch.onnx.register_custom_op_symbolic`` the first time a TorchScript
capture runs.  Add an op here when a model needs it and the composition is
exact; the export's parity check then guards it on every model that uses it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch.onnx import symbolic_helper
from torch.onnx._internal.torchscript_exporter import registration

from modelexport.capture.torchscript_repairs import REPAIRS

_INT64_MAX = 2**63 - 1
_OLDEST_OPSET = 9


def _constant(graph: torch._C.Graph, values: list[int]) -> torch._C.Value:
    return graph.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))


def _pair(values: list[int], default: int) -> list[int]:
    return list(values) if values else [default, default]


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


@symbolic_helper.parse_args("v", "is", "v", "f")
def _rms_norm(graph, value, normalized_shape, weight, eps):
    """``torch.rms_norm``: ``x / sqrt(mean(x**2) + eps) * weight`` over the trailing dims.

    ``eps=None`` means the machine epsilon of the input's dtype, as in torch.
    """
    if eps is None:
        scalar = symbolic_helper._type_utils.JitScalarType
        eps = torch.finfo(scalar.from_value(value, scalar.FLOAT).dtype()).eps
    axes = list(range(-len(normalized_shape), 0))
    square = graph.op("Mul", value, value)
    if graph.opset >= 18:
        mean = graph.op("ReduceMean", square, _constant(graph, axes), keepdims_i=1)
    else:
        mean = graph.op("ReduceMean", square, axes_i=axes, keepdims_i=1)
    epsilon = graph.op("CastLike", graph.op("Constant", value_t=torch.tensor(eps)), value)
    scaled = graph.op("Div", value, graph.op("Sqrt", graph.op("Add", mean, epsilon)))
    if symbolic_helper._is_none(weight):
        return scaled
    return graph.op("Mul", scaled, weight)


def _antialiased_resize(mode: str, cubic_coeff_a: float) -> Callable:
    """``interpolate(..., antialias=True)``: ONNX ``Resize`` with ``antialias=1`` (opset 18 on).

    The Resize is torch's own translation of the plain interpolation, given
    the antialias flag.  torch's antialiased kernels leave out the samples
    that fall outside the image and renormalise the rest (``exclude_outside``);
    its antialiased bicubic uses the coefficient -0.5 (as PIL does) where its
    plain bicubic uses -0.75.
    """
    translate = symbolic_helper._interpolate_helper(f"upsample_{mode}2d_aa", 4, mode)

    def resize(graph, value, output_size, *args):
        if graph.opset < 18:
            return symbolic_helper._unimplemented(
                f"upsample_{mode}2d_aa", "antialiasing needs ONNX opset 18 or later", value)
        result = translate(graph, value, output_size, *args)
        result.node().i_("antialias", 1).i_("exclude_outside", 1).f_("cubic_coeff_a",
                                                                      cubic_coeff_a)
        return result
    return resize


@symbolic_helper.parse_args("v", "v", "v", "is", "is", "is")
def _col2im(graph, value, output_size, kernel_size, dilation, padding, stride):
    """``nn.functional.fold``: ONNX ``Col2Im`` (opset 18 on).

    Replaces torch's translation, which reads the number of spatial axes off
    ``output_size``'s static shape (unknown when the size is computed, as in
    MobileViTV2) and lays the padding out as ``[h, h, w, w]`` where ONNX wants
    every begin before every end, ``[h, w, h, w]``.  ``fold`` takes two
    spatial axes only.
    """
    if graph.opset < 18:
        return symbolic_helper._unimplemented("col2im", "Col2Im needs ONNX opset 18", value)
    padding = _pair(padding, 0)
    return graph.op("Col2Im", value, output_size, kernel_size, dilations_i=_pair(dilation, 1),
                    pads_i=padding + padding, strides_i=_pair(stride, 1))


SYMBOLICS = {
    "aten::diff": _diff, "aten::cumsum": _cumsum, "aten::expm1": _expm1,
    "aten::rms_norm": _rms_norm, "aten::col2im": _col2im,
    "aten::_upsample_bilinear2d_aa": _antialiased_resize("linear", -0.75),
    "aten::_upsample_bicubic2d_aa": _antialiased_resize("cubic", -0.5),
}


@functools.cache
def register_missing_symbolics(opset: int) -> None:
    """Register every translation in ``SYMBOLICS`` and ``REPAIRS`` for ``opset`` (once per process).

    The exporter picks, per op, the registration for the newest opset not
    above the target, so a translation registered at an old opset would lose
    to a built-in one registered later (``aten::cumsum`` at 11): each is
    registered at the target opset itself.  A repair wraps the translation
    the exporter would otherwise use at that opset, a user's own included.
    """
    opset = max(opset, _OLDEST_OPSET)
    for name, function in SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(name, function, opset)
    for name, repair in REPAIRS.items():
        functions = registration.registry.get_function_group(name)
        builtin = functions.get(opset) if functions is not None else None
        if builtin is not None:
            torch.onnx.register_custom_op_symbolic(name, repair(builtin), opset)
