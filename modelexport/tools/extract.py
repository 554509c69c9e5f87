"""One module (and its descendants) as a standalone ONNX model.

The module's region becomes the graph: tensors it reads from outside become
graph inputs, tensors it hands outside become graph outputs, the initializers
and outside ``Constant`` nodes it reads are copied in, and tags stay on the
nodes.  Types and shapes of the boundary come from ONNX shape inference, and
where inference cannot type a tensor (or, in a static model, leaves a size
unnamed), from one ONNX Runtime run of the whole model on generated inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from modelexport.errors import ModelExportError
from modelexport.input_generation.for_graph import generated_feeds
from modelexport.onnx_runtime.comparison import max_abs_difference
from modelexport.onnx_runtime.sessions import ort_call
from modelexport.onnx_runtime.values import intermediate_values, ort_session
from modelexport.tools.module_view import ModuleView, iter_within
from modelexport.tools.regions import Boundary, RegionIndex

MODEL_KEY_EXTRACTED = "modelexport.extracted_module"


class ModuleNotFoundInGraph(ModelExportError):
    """The requested module has no nodes in the file."""


@dataclass
class Extraction:
    model: onnx.ModelProto
    boundary: Boundary
    node_indices: list[int]


def _static(value: onnx.ValueInfoProto) -> bool:
    """Every dimension of the tensor's shape is a number."""
    shape = value.type.tensor_type.shape
    return value.type.tensor_type.HasField("shape") and all(
        d.HasField("dim_value") for d in shape.dim)


def _value_infos(model: onnx.ModelProto, names: list[str],
                 dims: dict[str, int]) -> dict[str, onnx.ValueInfoProto]:
    """Typed value infos for ``names``: inferred, else measured in one run.

    In a model whose inputs are all static, a boundary shape that inference
    leaves symbolic (``unk__1``) is measured too: the layer of a static model
    is static, and a symbolic size would leave its users (``profile``)
    guessing a size that does not fit.
    """
    known: dict[str, onnx.ValueInfoProto] = {v.name: v for v in model.graph.input}
    known.update({v.name: v for v in model.graph.output})
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        known.update({v.name: v for v in inferred.graph.value_info})
    except Exception:  # inference is an optimisation here; the run below is the fallback
        pass
    static = all(_static(v) for v in model.graph.input)
    missing = [n for n in names if n not in known or not known[n].type.HasField("tensor_type")
               or (static and not _static(known[n]))]
    if missing:
        values = intermediate_values(model, generated_feeds(model, dims), missing)
        for name in missing:
            if name not in values:
                raise ModelExportError(f"cannot determine the type of boundary tensor {name!r}")
            array = values[name]
            known[name] = onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))
    return {name: known[name] for name in names}


def extract_module(view: ModuleView, module: str, dims: dict[str, int] | None = None,
                   ) -> Extraction:
    """Cut ``module``'s region out of ``view.model`` (which must hold its weights)."""
    model = view.model
    region = list(iter_within(view, module))
    if not region:
        known = [p for p in view.tree() if p]
        hint = ", ".join(p for p in known if module.split(".")[-1] in p)[:200] or \
            ", ".join(known[:5])
        raise ModuleNotFoundInGraph(
            f"no nodes of module {module!r} in {view.path or 'the model'} (modules: {hint}...)")
    index = RegionIndex(model)
    # Outside constants a region reads are part of its computation, not inputs.
    inside = set(region)
    constants = {
        index.producer[name] for i in region for name in model.graph.node[i].input
        if name in index.producer
        and model.graph.node[index.producer[name]].op_type == "Constant"
        and index.producer[name] not in inside
    }
    chosen = sorted(inside | constants)
    boundary = index.boundary(chosen)
    infos = _value_infos(model, boundary.inputs + boundary.outputs, dims or {})
    weights = {init.name: init for init in model.graph.initializer}
    graph = onnx.helper.make_graph(
        nodes=[model.graph.node[i] for i in chosen],
        name=f"{model.graph.name or 'graph'}:{module}",
        inputs=[infos[n] for n in boundary.inputs],
        outputs=[infos[n] for n in boundary.outputs],
        initializer=[weights[n] for n in boundary.initializers],
    )
    out = onnx.helper.make_model(graph, opset_imports=list(model.opset_import),
                                 ir_version=model.ir_version)
    out.functions.extend(model.functions)
    for prop in model.metadata_props:
        out.metadata_props.add(key=prop.key, value=prop.value)
    out.metadata_props.add(key=MODEL_KEY_EXTRACTED, value=module)
    onnx.checker.check_model(out, full_check=True)
    return Extraction(out, boundary, chosen)


def boundary_error(full: onnx.ModelProto, extraction: Extraction,
                   dims: dict[str, int] | None = None, seed: int = 0) -> float:
    """Largest difference between the extracted model and the whole model at the boundary.

    The whole model runs on generated inputs with the boundary exposed; the
    extracted model runs on the boundary inputs it recorded.
    """
    boundary = extraction.boundary
    values = intermediate_values(full, generated_feeds(full, dims, seed),
                                 boundary.inputs + boundary.outputs)
    session = ort_session(extraction.model)
    feeds = {name: values[name] for name in boundary.inputs}
    got = ort_call("run the extracted model", lambda: session.run(boundary.outputs, feeds))
    worst = 0.0
    for name, array in zip(boundary.outputs, got):
        expected = values[name]
        if array.shape != expected.shape:
            return float("inf")
        worst = max(worst, max_abs_difference(array, expected))
    return worst
