"""What a TorchScript trace of the model shows, before any ONNX is written.

The TorchScript-based strategies (HTP, USAGE_BASED, FX's export) fail on a
model for two reasons that an eager forward cannot reveal: the tracer
itself refuses the model (outputs it cannot flatten, a state-dict that
changes under tracing), or the traced graph holds an ATen op the
TorchScript ONNX exporter has no translation for.  The eager forward sees
torch functions (``interpolate``) while the trace records the ATen op they
lower to (``_upsample_bilinear2d_aa``), so only the trace can be looked up
in the exporter's registry op by op.

The trace here is the one the exporter makes (``torch.jit._get_trace_graph``
on the same call adapter, autograd and the fused-attention fast path off,
the extra translations of :mod:`modelexport.capture.torchscript_ops`
registered), then put through the exporter's own passes that run before
translation (``_prepare_for_translation``: they erase number casts such as
``aten::Int`` and rewrite in-place ops), so its evidence describes the
export that would follow.  It costs about one forward; the zoo records it
for every model, and ``recommend_strategy(model, inputs=...)`` computes it.  AUTO does not: its
first TorchScript attempt *is* this trace, and a failure falls back.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from modelexport.analysis.execution_evidence import TORCHSCRIPT_OPSET, torchscript_registry
from modelexport.capture.export_friendly import export_friendly
from modelexport.capture.torchscript import CallAdapter, autograd_off
from modelexport.capture.torchscript_ops import register_missing_symbolics
from modelexport.capture.trace_shims import traceable_arguments
from modelexport.errors import one_line
from modelexport.inputs import ModelInputs


@dataclass(frozen=True)
class TraceEvidence:
    """The outcome of tracing the model as the TorchScript exporter would."""

    traced: bool
    error: str = ""  # why the trace failed, one line
    untranslatable_ops: list[str] = field(default_factory=list)  # ATen ops, no translation
    registry_known: bool = True  # False: torch's registry could not be read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _node_kinds(block: Any) -> set[str]:
    """Every node kind in a graph or block, nested blocks (``If``, ``Loop``) included."""
    kinds: set[str] = set()
    for node in block.nodes():
        kinds.add(node.kind())
        for inner in node.blocks():
            kinds |= _node_kinds(inner)
    return kinds


def _prepare_for_translation(graph: Any) -> None:
    """The graph passes ``torch.onnx`` runs on a trace before translating it, in its order.

    Mirrors the pre-translation part of the TorchScript exporter's
    ``_optimize_graph`` (torch 2.13) that needs neither the module nor the
    parameters: inlining, tuple lowering, constant propagation, dead code
    removal, peepholes, the in-place and preprocessing passes for ONNX, and
    erasing number types.
    """
    passes = torch._C
    passes._jit_pass_inline(graph)
    passes._jit_pass_inline_fork_wait(graph)
    passes._jit_pass_lower_all_tuples(graph)
    passes._jit_pass_constant_propagation(graph)
    passes._jit_pass_dce(graph)
    passes._jit_pass_peephole(graph, True)
    passes._jit_pass_fuse_addmm(graph)
    passes._jit_pass_lower_all_tuples(graph)
    passes._jit_pass_onnx_remove_inplace_ops_for_onnx(graph, None)
    passes._jit_pass_onnx_preprocess(graph)
    passes._jit_pass_prepare_division_for_onnx(graph)
    passes._jit_pass_erase_number_types(graph)


def _registered_names(kind: str) -> set[str]:
    """The registry names a node kind may be translated under.

    torch registers the dunder operators with one trailing underscore
    (``aten::__and_`` for ``aten::__and__``); an in-place op left over is
    translated as its out-of-place form.
    """
    if kind.endswith("__"):
        return {kind, kind[:-1]}
    if kind.endswith("_"):
        return {kind, kind.rstrip("_")}
    return {kind}


def untranslatable(kinds: set[str], registry: Any) -> list[str]:
    """The ATen ops among node ``kinds`` that the TorchScript exporter cannot translate."""
    missing = []
    for kind in sorted(kinds):
        if not kind.startswith("aten::"):
            continue
        if not any(registry.is_registered_op(name, TORCHSCRIPT_OPSET)
                   for name in _registered_names(kind)):
            missing.append(kind.removeprefix("aten::"))
    return missing


def trace_model(model: torch.nn.Module, inputs: ModelInputs) -> TraceEvidence:
    """Trace ``model`` on ``inputs`` the way the TorchScript capture does, and judge the graph.

    ``inputs`` should be the ones an export would use (a KV cache nobody
    asked for already turned off), since a cache object is itself something
    the tracer refuses.
    """
    registry = torchscript_registry()
    if registry is not None:
        register_missing_symbolics(TORCHSCRIPT_OPSET)
    adapter = CallAdapter(model, inputs.args, inputs.kwargs)
    try:
        with (warnings.catch_warnings(), autograd_off(), export_friendly(model),
              traceable_arguments()):
            warnings.simplefilter("ignore")
            graph, _ = torch.jit._get_trace_graph(adapter, tuple(inputs.tensors()),
                                                  strict=False)
            _prepare_for_translation(graph)
    except Exception as exc:  # the evidence is the failure itself
        return TraceEvidence(traced=False, error=f"{type(exc).__name__}: {one_line(exc)}",
                             registry_known=registry is not None)
    if registry is None:
        return TraceEvidence(traced=True, registry_known=False)
    return TraceEvidence(traced=True, untranslatable_ops=untranslatable(_node_kinds(graph),
                                                                        registry))
