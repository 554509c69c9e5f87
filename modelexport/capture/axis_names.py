"""Readable, shared names for a graph's dynamic axes, whatever exporter wrote them.

The TorchScript exporter names a dynamic axis as it is told (``batch``);
torch.export invents a symbol per dimension (``s72``), and may give two
inputs' batch dimensions two symbols.  A user binding ONNX Runtime, or
reading the file in Netron, wants ``batch`` and ``sequence`` on every input
that has them, as Optimum writes them.  This pass renames each symbol that
stands on a requested axis of a graph input to that axis' name, everywhere
it appears (inputs, outputs, value infos, and inside expressions such as
``s72 + 1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import onnx


def name_dynamic_axes(graph: onnx.ModelProto, axes: Mapping[str, Mapping[int, str]]) -> None:
    """Rename the symbols on the requested ``axes`` (input name -> dim -> name) in place."""
    renames: dict[str, str] = {}
    for value in graph.graph.input:
        wanted = axes.get(value.name, {})
        for index, dim in enumerate(_dims(value)):
            name = wanted.get(index)
            if name and dim.dim_param and dim.dim_param != name:
                renames.setdefault(dim.dim_param, name)
    if not renames:
        return
    token = re.compile("|".join(rf"\b{re.escape(s)}\b" for s in sorted(renames, key=len,
                                                                         reverse=True)))
    for value in _values(graph):
        for dim in _dims(value):
            if dim.dim_param:
                dim.dim_param = token.sub(lambda m: renames[m.group(0)], dim.dim_param)


def dynamic_dims(graph: onnx.ModelProto) -> dict[str, dict[int, str]]:
    """Graph input name -> dim -> symbol, for each dimension the file leaves open."""
    found: dict[str, dict[int, str]] = {}
    for value in graph.graph.input:
        open_dims = {i: d.dim_param or "?" for i, d in enumerate(_dims(value))
                     if not d.HasField("dim_value")}
        if open_dims:
            found[value.name] = open_dims
    return found


def _values(graph: onnx.ModelProto) -> Iterator[onnx.ValueInfoProto]:
    yield from graph.graph.input
    yield from graph.graph.output
    yield from graph.graph.value_info


def _dims(value: onnx.ValueInfoProto) -> list[onnx.TensorShapeProto.Dimension]:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type" or not value.type.tensor_type.HasField("shape"):
        return []
    return list(value.type.tensor_type.shape.dim)
