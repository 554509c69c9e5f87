"""int8 quantization limited to chosen modules, through ONNX Runtime's quantizer.

ONNX Runtime's quantizer takes node names to quantize or to leave alone; the
tags turn module paths into those names, so ``--exclude 'encoder.layer.0.*'``
keeps a sensitive layer in float without the user reading a graph.  The
result is retagged (the quantizer's new nodes carry no metadata) and judged
per module:

- **int8 / float**: counted on the quantized graph, retagged: nodes that now
  compute in integers (an integer kernel such as ``MatMulInteger``, or an op
  between QDQ pairs, or a ``Gather`` on an int8 table), and nodes of an op
  type the quantizer handles still computing on float data.
- **error**: the largest absolute difference at the module's output tensors
  (those read outside it) between the float file and the quantized one, on
  the same generated inputs: where quantization error enters and how it grows.

A glob selects a module and everything inside it: ``encoder.layer.0`` its
own nodes and its descendants', ``encoder.layer.0.*`` its descendants' only.
"""

from __future__ import annotations

import fnmatch
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from modelexport.errors import ModelExportError, one_line
from modelexport.hierarchy import ROOT, ancestors, is_within
from modelexport.onnx_runtime.values import intermediate_values
from modelexport.output.onnx_payload import skeleton
from modelexport.tools.module_view import ModuleView, all_regions, module_view
from modelexport.tools.retag import RetagResult, retag

MODES = ("dynamic", "static")
# the op types each mode of ONNX Runtime's quantizer rewrites by default (its registries)
QUANTIZABLE = {
    "dynamic": frozenset({"MatMul", "Gemm", "Conv", "Gather", "Attention", "LSTM",
                          "EmbedLayerNormalization"}),
    "static": frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "Add", "Mul",
                         "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
                         "Concat", "Resize", "Softmax", "Sigmoid", "Transpose", "Reshape",
                         "Squeeze", "Unsqueeze", "Split", "Where", "LeakyRelu",
                         "InstanceNormalization", "LayerNormalization", "Pad", "ArgMax"}),
}
# the integer kernels the quantizer writes (ONNX's and ONNX Runtime's contrib ops)
INTEGER_OPS = frozenset({"MatMulInteger", "ConvInteger", "QLinearConv", "QLinearMatMul",
                         "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",
                         "QAttention", "QLinearAdd", "QLinearMul", "QEmbedLayerNormalization",
                         "DynamicQuantizeLSTM", "QLinearConcat", "QLinearSoftmax"})
CALIBRATION_BATCHES = 4


@dataclass
class ModuleQuantization:
    path: str
    cls: str
    quantized: int = 0
    kept_float: int = 0
    max_abs_error: float | None = None  # at the module's outputs; None: not measurable


@dataclass
class QuantizeResult:
    mode: str
    selected: int  # nodes the selection allowed the quantizer to touch
    quantized: int
    bytes_before: int
    bytes_after: int
    output_error: float
    modules: list[ModuleQuantization] = field(default_factory=list)
    retag: RetagResult | None = None

    def as_dict(self) -> dict:
        return {"mode": self.mode, "selected_nodes": self.selected,
                "quantized_nodes": self.quantized, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after, "output_max_abs_error": self.output_error,
                "retag": self.retag.as_dict() if self.retag else None,
                "modules": [vars(m) for m in self.modules]}


def matches(module: str, globs: Sequence[str]) -> bool:
    """True when ``module`` or one of its ancestors matches one of ``globs`` (the root,
    whose path is empty, only through ``*``)."""
    return any(fnmatch.fnmatchcase(path, glob) for path in ancestors(module)
               for glob in globs if path != ROOT or glob == "*")


def selected_nodes(view: ModuleView, include: Sequence[str], exclude: Sequence[str]
                   ) -> list[str]:
    """Names of the nodes the quantizer may touch: in an included module (every module
    when nothing is included), and in no excluded one."""
    chosen = []
    for node, info in zip(view.model.graph.node, view.nodes):
        module = info.module if info.module is not None else ROOT
        if include and not matches(module, include):
            continue
        if exclude and matches(module, exclude):
            continue
        chosen.append(node.name)
    return chosen


def _unique_names(model: onnx.ModelProto) -> None:
    """Name every node, uniquely: the quantizer selects nodes by name."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}__{index}"
        seen.add(node.name)


class _Calibration:
    """ONNX Runtime's calibration reader over a few generated batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _run_quantizer(source: Path, target: Path, mode: str, nodes: list[str],
                   calibration: list[dict[str, np.ndarray]]) -> None:
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    try:
        if mode == "dynamic":
            quantize_dynamic(str(source), str(target), nodes_to_quantize=nodes,
                             weight_type=QuantType.QInt8)
        else:
            quantize_static(str(source), str(target), _Calibration(calibration),
                            quant_format=QuantFormat.QDQ, nodes_to_quantize=nodes,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    except Exception as exc:  # the quantizer's own errors, from any of its passes
        raise ModelExportError(f"ONNX Runtime's quantizer failed: {one_line(exc)}") from None


_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
           onnx.TensorProto.BFLOAT16}


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the floating-point tensors: what quantization can touch (a ``Gather`` on
    a shape is integer work, not a candidate)."""
    inferred = onnx.shape_inference.infer_shapes(skeleton(model))
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {v.name for v in values if v.type.tensor_type.elem_type in _FLOATS}


def _module_outputs(view: ModuleView, regions: dict[str, list[int]], path: str) -> list[str]:
    nodes = view.model.graph.node
    inside = set(regions.get(path, ()))
    made = {out for i in inside for out in nodes[i].output if out}
    graph_outputs = {value.name for value in view.model.graph.output}
    read_outside = {name for i, node in enumerate(nodes) if i not in inside
                    for name in node.input} | graph_outputs
    return sorted(made & read_outside)


def _max_error(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names: list[str]
               ) -> float | None:
    errors = [float(np.abs(a[n].astype(np.float64) - b[n].astype(np.float64)).max())
              for n in names if n in a and n in b and a[n].shape == b[n].shape
              and a[n].size and np.issubdtype(a[n].dtype, np.floating)]
    return max(errors) if errors else None


def _report_modules(view: ModuleView, depth: int) -> list[str]:
    """The modules at ``depth``, and the leaves above it: together they cover the tree."""
    tree = view.tree()
    parents = {path.rsplit(".", 1)[0] if "." in path else ROOT for path in tree if path}
    return [path for path in tree if path != ROOT and (
        path.count(".") + 1 == depth or (path.count(".") + 1 < depth and path not in parents))]


def quantize_model(view: ModuleView, mode: str, include: Sequence[str],
                   exclude: Sequence[str], feeds: list[dict[str, np.ndarray]],
                   depth: int) -> tuple[onnx.ModelProto, QuantizeResult]:
    """Quantize the view's graph (loaded with its weights) within the selection.

    ``feeds`` are generated input batches: the first measures the errors, all of
    them calibrate static mode.  Returns the retagged quantized model and the
    per-module report at ``depth`` (root is 0)."""
    if mode not in MODES:
        raise ModelExportError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    original = onnx.ModelProto()
    original.CopyFrom(view.model)
    _unique_names(original)
    named = module_view(original)
    nodes = selected_nodes(named, include, exclude)
    selected = len(nodes)
    if mode == "dynamic":
        # the dynamic quantizer first rewrites each Gemm as a MatMul named <gemm>_MatMul
        # (and an Add), then selects by name: the selected Gemm's MatMul must be named too
        chosen = set(nodes)
        nodes += [f"{node.name}_MatMul" for node in original.graph.node
                  if node.op_type == "Gemm" and node.name in chosen]
    quantizable = QUANTIZABLE[mode]
    if not any(node.op_type in quantizable for node in original.graph.node
               if node.name in set(nodes)):
        raise ModelExportError("the selection holds no node the quantizer handles "
                               f"({', '.join(sorted(quantizable))}); check --include/--exclude")
    with tempfile.TemporaryDirectory(prefix="modelexport-quantize-") as scratch:
        source, target = Path(scratch) / "float.onnx", Path(scratch) / "int8.onnx"
        onnx.save(original, str(source))
        _run_quantizer(source, target, mode, nodes, feeds)
        quantized = onnx.load(str(target))
    result = QuantizeResult(mode=mode, selected=selected, quantized=0,
                            bytes_before=original.ByteSize(), bytes_after=quantized.ByteSize(),
                            output_error=0.0)
    result.retag = retag(quantized, named)
    regions = all_regions(named)
    watched = _report_modules(view, depth)
    outputs = {path: _module_outputs(named, regions, path) for path in watched}
    final = [value.name for value in original.graph.output]
    wanted = {name for names in outputs.values() for name in names} | set(final)
    before = intermediate_values(original, feeds[0], wanted)
    after = intermediate_values(quantized, feeds[0], wanted)
    result.output_error = _max_error(before, after, final) or 0.0
    kinds = _compute_kinds(quantized, quantizable, _float_tensors(original))
    modules = [info.module for info in module_view(quantized).nodes]
    for path in watched:
        row = ModuleQuantization(path, view.classes.get(path, ""))
        for kind, module in zip(kinds, modules):
            if kind is not None and module is not None and is_within(module, path):
                row.quantized += kind == "int8"
                row.kept_float += kind == "float"
        row.max_abs_error = _max_error(before, after, outputs[path])
        result.modules.append(row)
    result.quantized = kinds.count("int8")
    return quantized, result


def _compute_kinds(quantized: onnx.ModelProto, quantizable: frozenset[str],
                   floating: set[str]) -> list[str | None]:
    """Per node of the quantized graph: ``int8`` for integer compute (an integer kernel,
    or a quantizable op reading a dequantized tensor or feeding a dequantize), ``float``
    for a quantizable op still on float data, None for the rest (the quantizer's
    scale arithmetic, shape work)."""
    dequantized = {out for node in quantized.graph.node if node.op_type == "DequantizeLinear"
                   for out in node.output}
    to_dequantize = {node.input[0] for node in quantized.graph.node
                     if node.op_type == "DequantizeLinear"}
    kinds: list[str | None] = []
    for node in quantized.graph.node:
        if node.op_type in INTEGER_OPS or (node.op_type in quantizable and (
                any(name in dequantized for name in node.input)
                or any(name in to_dequantize for name in node.output))):
            kinds.append("int8")
        elif node.op_type in quantizable and node.input and node.input[0] in floating:
            kinds.append("float")
        else:
            kinds.append(None)
    return kinds


def render_table(result: QuantizeResult) -> str:
    lines = [f"{result.mode} int8: {result.quantized} nodes quantized of the "
             f"{result.selected} selected; {result.bytes_before / 1024:.1f} KiB -> "
             f"{result.bytes_after / 1024:.1f} KiB "
             f"({result.bytes_after / max(result.bytes_before, 1):.0%}); "
             f"model outputs max abs error {result.output_error:.3g}",
             f"{'module':<48} {'class':<24} {'int8':>5} {'float':>6} {'max abs error':>14}",
             "-" * 101]
    for row in result.modules:
        error = "-" if row.max_abs_error is None else f"{row.max_abs_error:.3g}"
        lines.append(f"{row.path:<48} {row.cls.rsplit('.', 1)[-1][:24]:<24} "
                     f"{row.quantized:>5} {row.kept_float:>6} {error:>14}")
    return "\n".join(lines)
