"""FX capture: ``torch.fx.symbolic_trace`` module paths carried into the ONNX graph.

FX records, for every traced op, the stack of modules it ran in
(``nn_module_stack``).  Plain functions and tensor methods are inlined into
the root graph, though, so a TorchScript export of the traced ``GraphModule``
would put them all on the root.  This capture therefore wraps every FX op
in a tiny leaf module with a unique name (``fxop_12``) on the GraphModule,
never on the user's modules, and remembers which module path each one came
from (``Captured.op_paths``).  The TorchScript export names every ONNX node
after its op's scope, which ``attribution.op_paths`` maps back to the path.
(TorchScript names a scope by the module's own attribute name, which loses
the path of containers that never run, so wrapping at the original paths
would be ambiguous.)

FX's honest domain is plain PyTorch: symbolic tracing refuses data-dependent
control flow and much of what current Hugging Face models do.  Such failures
are reported in one line naming the model and the reason.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx

from modelexport.capture.base import Capture, Captured, Evidence
from modelexport.capture.request import ExportRequest
from modelexport.capture.torchscript import torchscript_export
from modelexport.errors import one_line
from modelexport.hierarchy import ROOT

OP_PREFIX = "fxop_"

# What FX's error messages mean, for a reason a user can act on.
_KNOWN_FAILURES = (
    ("symbolically traced variables cannot be used as inputs to control flow",
     "control flow on a traced value (data- or shape-dependent) in forward"),
    ("does not support item assignment", "in-place indexing on a traced value"),
    ("object is not iterable", "iteration over a traced value"),
)


class FxTraceError(RuntimeError):
    """torch.fx could not trace the model; the message says why in one line."""


class _FxOp(torch.nn.Module):
    """Runs one FX node's op, so that it executes inside a scope of its own.

    A wrapped ``call_module`` keeps its module out of the registry (a plain
    attribute), so parameters are not registered twice.
    """

    def __init__(self, kind: str, target: Any) -> None:
        super().__init__()
        self.kind = kind
        object.__setattr__(self, "target", target)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "call_method":
            return getattr(args[0], self.target)(*args[1:], **kwargs)
        return self.target(*args, **kwargs)


def _module_path(node: torch.fx.Node) -> str:
    """Innermost module of an FX node (the stack's keys carry ``@N`` call marks)."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ROOT
    return next(reversed(stack.values()))[0]


def trace(model: torch.nn.Module, concrete: dict[str, Any]) -> torch.fx.GraphModule:
    try:
        return torch.fx.symbolic_trace(model, concrete_args=concrete or None)
    except Exception as exc:
        message = one_line(exc, 200)
        reason = next((why for needle, why in _KNOWN_FAILURES if needle in message), message)
        raise FxTraceError(
            f"FX cannot trace {type(model).__name__}: {reason} ({type(exc).__name__})"
        ) from None


def scope_ops(graph_module: torch.fx.GraphModule) -> dict[str, str]:
    """Wrap every op node in an ``fxop_N`` leaf at the root; return name -> module path."""
    paths: dict[str, str] = {}
    for index, node in enumerate(list(graph_module.graph.nodes)):
        if node.op not in ("call_function", "call_method", "call_module"):
            continue
        if node.target is operator.getitem:
            continue  # tuple unpacking: no ONNX op, keeps FX's multi-output plumbing
        target = node.target
        if node.op == "call_module":
            target = graph_module.get_submodule(node.target)
        name = f"{OP_PREFIX}{index}"
        graph_module.add_submodule(name, _FxOp(node.op, target))
        paths[name] = _module_path(node)
        with graph_module.graph.inserting_after(node):
            wrapped = graph_module.graph.call_module(name, node.args, node.kwargs)
        wrapped.meta = dict(node.meta)
        node.replace_all_uses_with(wrapped)
        graph_module.graph.erase_node(node)
    graph_module.recompile()
    return paths


class FxCapture(Capture):
    """FX symbolic trace, every op in a scope of its own, then a TorchScript export."""

    name = "fx"
    provides = frozenset({Evidence.SCOPE_NAMES, Evidence.OP_PATHS})

    def __call__(self, request: ExportRequest) -> Captured:
        if request.capture_model is not None:
            raise FxTraceError("FX traces the model itself, not an adapter around it "
                               "(with_past)")
        non_tensor_kwargs = {k: v for k, v in request.inputs.kwargs.items()
                             if not isinstance(v, torch.Tensor)}
        graph_module = trace(request.model, non_tensor_kwargs)
        op_paths = scope_ops(graph_module)
        captured = torchscript_export(graph_module, request, self.name)
        captured.op_paths = op_paths
        return captured
