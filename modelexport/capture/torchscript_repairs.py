"""Fixes for translations TorchScript's ONNX exporter has but gets wrong.

Each entry of ``REPAIRS`` takes the translation torch would use for an op
at the export's opset and returns one that undoes a known defect of it,
then hands the rest back to torch's.  They were found on the wide tier,
where each stopped whole model families that the dynamo exporter handled.
``torchscript_ops.register_missing_symbolics`` registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.onnx import symbolic_helper

_TYPES = symbolic_helper._type_utils.JitScalarType


def _private_constant(graph: torch._C.Graph, value: Any) -> Any:
    """A copy of ``value`` if it is a constant, for a translation that edits its input in place.

    The exporter converts each TorchScript constant once and hands the same
    ``onnx::Constant`` to every op that read it; a translation that changes
    the constant's tensor in place changes it for all of them.
    """
    if isinstance(value, torch._C.Value) and value.node().kind() == "onnx::Constant":
        return graph.op("Constant", value_t=value.node().t("value").clone())
    return value


def _repeat_interleave_repair(builtin: Callable) -> Callable:
    """``repeat_interleave`` with its ``dim`` constant private to it.

    torch's translation turns a negative ``dim`` non-negative with ``dim +=
    rank`` on the constant's own tensor (pytorch/pytorch#128505).  Models
    share one ``-1`` constant between ops, so after a rotary embedding's
    ``repeat_interleave(..., dim=-1)`` on a rank-3 tensor every later
    ``stack``, ``flatten`` and ``cat`` along ``-1`` works on axis 2: the file
    fails shape inference (Cohere, GLM, Helium, Moonshine, ...).

    It also repeats every element the same number of times along an axis
    whose size is dynamic, which torch's translation refuses ("Unsupported
    along dimension with unknown input size") although the composition it
    uses for a static axis (unsqueeze, tile, flatten) needs only the rank:
    a batch or sequence axis left dynamic stopped grouped-query attention
    that repeats its keys with ``repeat_interleave``.
    """
    def repeat_interleave(graph, value, repeats, dim=None, output_size=None):
        dim = _private_constant(graph, dim)
        count = _single_constant(repeats)
        rank = symbolic_helper._get_tensor_rank(value)
        if count is not None and rank is not None and not symbolic_helper._is_none(dim):
            axis = symbolic_helper._get_const(dim, "i", "dim")
            axis = axis + rank if axis < 0 else axis
            return symbolic_helper._repeat_interleave_single_value_repeat_helper(
                graph, value, graph.op("Constant", value_t=torch.tensor([count])), axis)
        return builtin(graph, value, repeats, dim, output_size)
    return repeat_interleave


def _single_constant(value: Any) -> int | None:
    """The one integer a constant ``repeats`` holds, else None (a tensor of counts)."""
    if not isinstance(value, torch._C.Value) or value.node().kind() not in (
            "onnx::Constant", "prim::Constant"):
        return None
    constant = symbolic_helper._maybe_get_const(value, "t")
    if not isinstance(constant, torch.Tensor) or constant.numel() != 1 or \
            constant.dtype.is_floating_point:
        return None
    return int(constant.item())


def _permute_repair(builtin: Callable) -> Callable:
    """``permute`` with negative dims counted from the front.

    torch's translation writes the dims into ``Transpose``'s ``perm`` as
    given, and ONNX allows no negative entry there (``x.permute(0, -2, -1,
    1)`` in Nemotron-H's Mamba mixer).  A permutation names every axis, so its
    own length is the rank and no shape is needed.
    """
    @symbolic_helper.parse_args("v", "is")
    def permute(graph, value, dims):
        return builtin(graph, value, [dim % len(dims) for dim in dims])
    return permute


def _bitwise_or_repair(builtin: Callable) -> Callable:
    """``|`` on integer tensors: ONNX ``BitwiseOr`` (opset 18 on).

    torch's translation knows only booleans (``Or``) and refuses integers,
    as in CPM-Ant's position buckets.  Operands are promoted as torch
    promotes them, the way torch's own ``bitwise_and`` translation does.
    """
    def bitwise_or(graph, value, other):
        promoted = symbolic_helper._type_promote_from_values(
            *[v for v in (value, other) if symbolic_helper._get_tensor_rank(v)] or [value, other])
        if graph.opset < 18 or promoted == _TYPES.BOOL:
            return builtin(graph, value, other)
        value = symbolic_helper._maybe_cast_to_type(graph, value, promoted)
        other = symbolic_helper._maybe_cast_to_type(graph, other, promoted)
        return graph.op("BitwiseOr", value, other)
    return bitwise_or


def _index_add_repair(builtin: Callable) -> Callable:
    """``index_add`` with repeated indices: ``ScatterElements`` summing them (opset 16 on).

    torch's translation adds through a scatter that keeps one write per
    index, and refuses a source longer than the target along ``dim``, which
    a mixture-of-experts combine always has (JetMoE).  Since opset 16 the
    scatter itself sums repeated indices, so the index is only broadcast to
    the source's shape.
    """
    def index_add(graph, value, dim, index, source, alpha=None):
        rank = symbolic_helper._get_tensor_rank(value)
        axis = symbolic_helper._maybe_get_const(dim, "i")
        if (graph.opset < 16 or rank is None or not isinstance(axis, int)
                or symbolic_helper._get_tensor_rank(source) != rank):
            return builtin(graph, value, dim, index, source, alpha)
        if alpha is not None and not symbolic_helper._is_none(alpha) \
                and symbolic_helper._maybe_get_const(alpha, "f") != 1:
            source = graph.op("Mul", source, graph.op("CastLike", alpha, source))
        axis %= rank
        shape = [1] * rank
        shape[axis] = -1
        index = graph.op("Reshape", index, graph.op(
            "Constant", value_t=torch.tensor(shape, dtype=torch.int64)))
        index = graph.op("Expand", index, graph.op("Shape", source))
        return graph.op("ScatterElements", value, index, source, axis_i=axis,
                        reduction_s="add")
    return index_add


REPAIRS: dict[str, Callable[[Callable], Callable]] = {
    "aten::repeat_interleave": _repeat_interleave_repair,
    "aten::permute": _permute_repair,
    "aten::bitwise_or": _bitwise_or_repair,
    "aten::__or_": _bitwise_or_repair,
    "aten::index_add": _index_add_repair,
}
