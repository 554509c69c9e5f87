"""TorchScript capture: ``torch.onnx.export(dynamo=False)`` of a model called as the user calls it.

``TorchScriptCapture`` exports the model itself (HTP and USAGE_BASED pair it
with different attributions); the FX capture exports the graph module it
traced first through the same ``torchscript_export``.

Hugging Face models take keyword arguments, and positional tracing of them
fails, so the model is traced through a small adapter that rebuilds the
original call from a flat tuple of tensors.  The adapter holds the model
under ``wrapped``, so that name opens every node scope; the shared name
normalisation strips it again.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import onnx
import torch
from torch.utils import _pytree as pytree

from modelexport.capture.base import Capture, Captured, Evidence
from modelexport.capture.exporter_sources import recording_sources
from modelexport.capture.function_scan import structure_only_function_scan
from modelexport.capture.request import ExportRequest, normalise_names
from modelexport.capture.torchscript_ops import register_missing_symbolics
from modelexport.capture.trace_shims import traceable_arguments
from modelexport.inputs import UnrequestedCacheError, cache_left_to_model, holds_non_tensors
from modelexport.output.onnx_payload import detach_payloads


class CallAdapter(torch.nn.Module):
    """Calls the wrapped model with the original args/kwargs, from flat tensors.

    With ``refuse_cache``, a result holding a KV cache nobody asked for
    raises :class:`UnrequestedCacheError` the moment the forward returns.
    The trace could not flatten the cache anyway, and stopping there tells
    the export to capture again with ``use_cache=False``, which saves every
    export of a model that merely *could* return one (a ``BertModel`` takes
    ``use_cache``) a probe forward to find out first.
    """

    def __init__(self, model: torch.nn.Module, args: tuple, kwargs: dict,
                 refuse_cache: bool = False) -> None:
        super().__init__()
        self.wrapped = model
        leaves, self._spec = pytree.tree_flatten((args, kwargs))
        self._is_tensor = [isinstance(leaf, torch.Tensor) for leaf in leaves]
        self._constants = leaves
        self._refuse_cache = refuse_cache

    def forward(self, *tensors: torch.Tensor) -> object:
        supplied = iter(tensors)
        leaves = [
            next(supplied) if is_tensor else constant
            for is_tensor, constant in zip(self._is_tensor, self._constants)
        ]
        args, kwargs = pytree.tree_unflatten(leaves, self._spec)
        result = self.wrapped(*args, **kwargs)
        if self._refuse_cache and holds_non_tensors(result):
            raise UnrequestedCacheError(
                f"{type(self.wrapped).__name__} returned a KV cache the inputs did not ask for")
        return result


def torchscript_export(model: torch.nn.Module, request: ExportRequest, stem: str,
                       ) -> Captured:
    """``torch.onnx.export(dynamo=False)`` of ``model`` called like the user's model.

    Shared by every capture built on a TorchScript trace.  A model whose
    weights fit one protobuf is exported into memory, and only its structure
    is parsed: the weights stay in the exporter's buffer, which the capture
    carries (``onnx_payload.detach_payloads``), so they are never copied
    between the exporter and the saved file.  A larger one goes to the
    request's scratch folder (the exporter writes its weights as external
    data) and is loaded back.  Either way the capture also records which
    parameter each initializer was written from (``exporter_sources``), and
    the exporter looks for ONNX functions to add without parsing the
    weights (``function_scan``).
    """
    register_missing_symbolics(request.opset)
    adapter = CallAdapter(model, request.inputs.args, request.inputs.kwargs,
                          refuse_cache=cache_left_to_model(request.traced, request.inputs))
    adapter.train(request.traced.training)
    in_memory = _state_bytes(model) < IN_MEMORY_LIMIT_BYTES
    path = request.workdir / f"{stem}.onnx"
    target = _BytesSink() if in_memory else str(path)
    with (warnings.catch_warnings(), autograd_off(), traceable_arguments(),
          structure_only_function_scan(), recording_sources(model) as sources):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            adapter,
            tuple(request.inputs.tensors()),
            target,
            dynamo=False,
            opset_version=request.opset,
            input_names=request.input_names,
            output_names=request.output_names,
            dynamic_axes=request.dynamic_axes or None,
            do_constant_folding=request.optimize,
            # the exporter merges initializers of equal value unless they are
            # inputs too: so they are, and stop being inputs below
            keep_initializers_as_inputs=not request.dedupe_weights,
        )
    payloads = None
    if isinstance(target, _BytesSink):
        graph, payloads = detach_payloads(target.take())
    else:
        graph = onnx.load(str(path))
    _drop_initializer_inputs(graph)
    renames = normalise_names(graph, request, adapters=1 + request.adapter_depth)
    return Captured(graph, payloads=payloads,
                    sources={renames.get(name, name): tensor for name, tensor in sources.items()})


def _drop_initializer_inputs(graph: onnx.ModelProto) -> None:
    """Initializers listed as graph inputs too stop being inputs: the user feeds only data."""
    weights = {init.name for init in graph.graph.initializer}
    kept = [value for value in graph.graph.input if value.name not in weights]
    if len(kept) != len(graph.graph.input):
        del graph.graph.input[:]
        graph.graph.input.extend(kept)


@contextlib.contextmanager
def autograd_off() -> Iterator[None]:
    """Autograd off for the trace, with PyTorch's fused attention fast path kept off too.

    A trace under autograd records every op's backward bookkeeping for
    nothing: it made a bert-base export 10 to 30% slower, ResNet-50's 7%.
    But ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` take a
    fused kernel that TorchScript cannot export whenever autograd is off,
    unless ``torch.backends.mha`` says the fast path is disabled, so it is
    disabled for the duration and restored after.
    """
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)


class TorchScriptCapture(Capture):
    """The TorchScript trace of the model (or its adapter), node names carrying scopes."""

    name = "torchscript"
    provides = frozenset({Evidence.SCOPE_NAMES})
    freezes_control_flow = True
    runs_forward_once = True  # the tracer calls forward once; hooks fire (tests/test_probe.py)

    def __call__(self, request: ExportRequest) -> Captured:
        return torchscript_export(request.traced, request, self.name)


class _BytesSink(io.BufferedIOBase):
    """A writable file that keeps the bytes objects it is given instead of copying them.

    The exporter hands its whole serialised model to one ``write``; a
    ``BytesIO`` would copy it, one more model-sized buffer at the export's
    memory peak.
    """

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(data if isinstance(data, bytes) else bytes(data))
        return len(data)

    def take(self) -> bytes:
        """Everything written, handed over (the sink keeps no reference)."""
        chunks, self._chunks = self._chunks, []
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# Weights up to this size are exported into memory: below protobuf's 2 GB,
# with room for the graph and constants that folding adds.
IN_MEMORY_LIMIT_BYTES = 1536 * 1024**2


def _state_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size()
               for t in (*model.parameters(), *model.buffers()))
