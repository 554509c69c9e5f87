"""Dynamo capture: ``torch.onnx.export(dynamo=True)``, which records name scopes.

The dynamo exporter writes ``pkg.torch.onnx.name_scopes`` on almost every
node (``attribution.name_scopes`` reads them).

The export runs with autograd off: torch.export turns a ``torch.no_grad()``
block inside a model into a higher-order op, and the name scopes of the
modules called inside it come out as the enclosing module's (a DeepSeek
sparse-attention indexer's projections all tagged on the indexer).  With
grad already off, such a block changes nothing and is traced inline.

A dynamo failure is a failure.  Some torch releases fall back to the
TorchScript exporter on error; that fallback is switched off wherever the
installed torch offers the switch, so a file reported as DYNAMO really is.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator

import torch
from torch.utils import _pytree as pytree

from modelexport.capture.base import Capture, Captured, Evidence
from modelexport.capture.graph_optimizer import optimize_graph
from modelexport.capture.request import ExportRequest, normalise_names
from modelexport.inputs import ModelInputs, bound_arguments


def _dynamic_shapes(request: ExportRequest, model: torch.nn.Module,
                    inputs: ModelInputs) -> dict | None:
    """torch.export's spec: every forward argument by name, symbolic dims where asked.

    Tensor leaves are matched to the graph input names in flattening order,
    so an argument holding a tuple of tensors gets a tuple of specs.
    """
    if not request.dynamic_axes:
        return None
    names = iter(request.input_names)

    def spec(leaf: object) -> dict[int, object] | None:
        if not isinstance(leaf, torch.Tensor):
            return None
        axes = request.dynamic_axes.get(next(names, ""))
        return {dim: torch.export.Dim.DYNAMIC for dim in axes} if axes else None

    try:
        bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs)
    except (TypeError, ValueError):  # no signature to follow: one spec per input
        return {name: pytree.tree_map(spec, value)
                for name, value in bound_arguments(model, inputs).items()}
    # torch.export wants the signature's shape: ``*args`` a tuple, ``**kwargs`` a
    # dict under its own name (a ``use_cache=False`` passed into ``**kwargs``).
    shapes: dict[str, object] = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            shapes[name] = tuple(pytree.tree_map(spec, item) for item in value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            shapes[name] = {key: pytree.tree_map(spec, item) for key, item in value.items()}
        else:
            shapes[name] = pytree.tree_map(spec, value)
    return shapes


@contextlib.contextmanager
def _options_fixed(model: torch.nn.Module, inputs: ModelInputs) -> Iterator[ModelInputs]:
    """Non-tensor options that land in ``**kwargs`` fixed on the forward, for the export.

    torch.export (2.13) cannot match a dynamic-shapes spec to a non-tensor
    value inside ``**kwargs`` ("Must provide a tree_name"), and transformers
    models take ``use_cache=False`` there.  Such a value is a constant of the
    graph anyway: it is bound to the instance's forward for the export and
    the instance is left as it was.  Yields the inputs that remain.
    """
    options = _var_keyword_options(model, inputs)
    if not options:
        yield inputs
        return
    own = model.__dict__.get("forward")
    model.forward = functools.partial(model.forward, **options)
    try:
        yield ModelInputs(args=inputs.args, kwargs={
            key: value for key, value in inputs.kwargs.items() if key not in options})
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own


def _var_keyword_options(model: torch.nn.Module, inputs: ModelInputs) -> dict[str, object]:
    """The keyword inputs without a tensor that bind into ``forward``'s ``**kwargs``."""
    try:
        bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs)
    except (TypeError, ValueError):
        return {}
    for name, value in bound.arguments.items():
        if bound.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            return {key: item for key, item in value.items()
                    if not any(isinstance(leaf, torch.Tensor)
                               for leaf in pytree.tree_leaves(item))}
    return {}


class DynamoCapture(Capture):
    """torch.export, then its ONNX translation; nodes carry name-scope metadata."""

    name = "dynamo"
    provides = frozenset({Evidence.NAME_SCOPES})

    def __call__(self, request: ExportRequest) -> Captured:
        options: dict[str, object] = {
            "dynamo": True,
            "opset_version": request.opset,
            # optimised below, keeping one initializer per parameter (graph_optimizer)
            "optimize": False,
            "verbose": False,
        }
        if "fallback" in inspect.signature(torch.onnx.export).parameters:
            options["fallback"] = False
        model = request.traced
        with torch.no_grad(), _options_fixed(model, request.inputs) as inputs:
            options["dynamic_shapes"] = _dynamic_shapes(request, model, inputs)
            program = torch.onnx.export(model, inputs.args, kwargs=inputs.kwargs, **options)
        if program is None or not hasattr(program, "model_proto"):
            raise RuntimeError("the dynamo exporter returned no ONNX program")
        if request.optimize:
            optimize_graph(program.model, parameters=request.state_names(),
                           dedupe_weights=request.dedupe_weights)
        graph = program.model_proto
        normalise_names(graph, request, adapters=request.adapter_depth)
        return Captured(graph)
