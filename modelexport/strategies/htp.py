"""HTP (hierarchical trace-and-project): TorchScript trace, scopes resolved on the tree.

``torch.onnx.export(dynamo=False)`` names nodes after the module scopes the
tracer saw: ``/encoder/layer.0/attention/self/query/MatMul``.  Parsing those
strings alone is fragile (containers that never ran vanish, repeated calls
get ``_N`` suffixes, some segments are qualified relative to a grandparent,
export passes add nodes with no scope), so each scope is *resolved* step by
step against the real module tree: a segment is accepted only if it names an
existing module inside the current one.  Scope-less nodes are left to the
shared projection pass.

Hugging Face models take keyword arguments, and positional tracing of them
fails, so the model is traced through a small adapter that rebuilds the
original call from a flat tuple of tensors.
"""

from __future__ import annotations

import io
import re
import warnings

import onnx
import torch
from torch.utils import _pytree as pytree

from modelexport.hierarchy import ROOT, ModuleTree, ancestors, is_within
from modelexport.strategies.base import (
    ADAPTER_ATTRIBUTE,
    ExportRequest,
    Strategy,
    normalise_names,
    register_strategy,
)
from modelexport.strategies.torchscript_ops import register_missing_symbolics
from modelexport.tagging import Assignment
from modelexport.tags import TagSource

_REPEAT_SUFFIX = re.compile(r"^(.*)_(\d+)$")


class _CallAdapter(torch.nn.Module):
    """Calls the wrapped model with the original args/kwargs, from flat tensors."""

    def __init__(self, model: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.wrapped = model
        leaves, self._spec = pytree.tree_flatten((args, kwargs))
        self._is_tensor = [isinstance(leaf, torch.Tensor) for leaf in leaves]
        self._constants = leaves

    def forward(self, *tensors: torch.Tensor) -> object:
        supplied = iter(tensors)
        leaves = [
            next(supplied) if is_tensor else constant
            for is_tensor, constant in zip(self._is_tensor, self._constants)
        ]
        args, kwargs = pytree.tree_unflatten(leaves, self._spec)
        return self.wrapped(*args, **kwargs)


def _segment_candidates(segment: str) -> list[tuple[str, bool]]:
    """The segment itself, then without a ``_N`` repeat suffix (flagged True)."""
    candidates = [(segment, False)]
    match = _REPEAT_SUFFIX.match(segment)
    if match:
        candidates.append((match.group(1), True))
    return candidates


def _unique_descendant(segment: str, current: str, tree: ModuleTree) -> str | None:
    """The one module inside ``current`` whose local name is ``segment``, if unique.

    TorchScript names a scope by the module's own attribute name, so a module
    called directly as ``self.block.fc(x)`` shows up as ``fc`` with ``block``
    missing.  Two candidates (``a.fc`` and ``b.fc``) are ambiguous: no guess.
    """
    for candidate, _suffixed in _segment_candidates(segment):
        found = [p for p in tree.with_local_name(candidate)
                 if p != current and is_within(p, current)]
        if len(found) == 1:
            return found[0]
        if found:
            return None
    return None


def resolve_scope(segments: list[str], tree: ModuleTree) -> tuple[str, bool]:
    """Walk scope segments down the module tree.

    Returns the deepest module reached and whether every segment resolved.
    A segment may name a child, a deeper descendant through containers that
    never ran (``layer.0``), be qualified relative to an ancestor
    (``seq/seq.0``), or name the only descendant with that local name; it is
    never allowed to leave the current module.  A submodule registered
    under two parents is reached through either path and reported by its
    own (first) name.
    """
    current = ROOT
    for segment in segments:
        step = None
        for candidate, _suffixed in _segment_candidates(segment):
            for base in ancestors(current):
                full = f"{base}.{candidate}" if base else candidate
                if tree.resolve(full) is not None and is_within(full, current):
                    step = full
                    break
            if step is not None:
                break
        if step is None:
            step = _unique_descendant(segment, current, tree)
        if step is None:
            return _canonical(current, tree), False
        current = step
    return _canonical(current, tree), True


def _canonical(path: str, tree: ModuleTree) -> str:
    """A walked path, which may pass through an alias, as the module's own name."""
    resolved = tree.resolve(path)
    return resolved if resolved is not None else tree.deepest_known(path)


def scope_segments(node_name: str, adapters: int = 1) -> list[str] | None:
    """``/wrapped/encoder/layer.0/MatMul`` -> ``['encoder', 'layer.0']``; None if scope-less.

    ``/wrapped/wrapped.2/wrapped.2.0/Gemm`` (a root container) -> ``['2', '2.0']``.
    """
    if not node_name.startswith("/"):
        return None
    parts = node_name.strip("/").split("/")[:-1]
    for _ in range(adapters):  # our own call adapter, and any adapter of the request
        if parts and parts[0] == ADAPTER_ATTRIBUTE:
            parts = parts[1:]
    # TorchScript qualifies the children of a container by its attribute name:
    # a root ``nn.Sequential`` under the adapter yields ``wrapped.0``.
    prefix = ADAPTER_ATTRIBUTE + "."
    return [part[len(prefix):] if part.startswith(prefix) else part for part in parts]


def torchscript_export(model: torch.nn.Module, request: ExportRequest, stem: str,
                       ) -> onnx.ModelProto:
    """``torch.onnx.export(dynamo=False)`` of ``model`` called like the user's model.

    Shared by every strategy built on a TorchScript trace.  A model whose
    weights fit one protobuf is exported into memory and parsed from there;
    a larger one goes to the request's scratch folder (the exporter writes
    its weights as external data) and is loaded back.
    """
    register_missing_symbolics(request.opset)
    adapter = _CallAdapter(model, request.inputs.args, request.inputs.kwargs)
    adapter.train(request.traced.training)
    in_memory = _state_bytes(model) < IN_MEMORY_LIMIT_BYTES
    path = request.workdir / f"{stem}.onnx"
    target = _BytesSink() if in_memory else str(path)
    with warnings.catch_warnings():
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
        )
    if isinstance(target, _BytesSink):
        graph = onnx.ModelProto()
        graph.ParseFromString(target.take())
    else:
        graph = onnx.load(str(path))
    normalise_names(graph, request, adapters=1 + request.adapter_depth)
    return graph


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


@register_strategy
class HTPStrategy(Strategy):
    name = "htp"
    freezes_control_flow = True
    summary = "TorchScript trace; node scopes resolved against the module tree, rest projected"

    def capture(self, request: ExportRequest) -> onnx.ModelProto:
        return torchscript_export(request.traced, request, "htp")

    def assign(
        self, request: ExportRequest, graph: onnx.ModelProto
    ) -> list[Assignment | None]:
        assignments: list[Assignment | None] = []
        for node in graph.graph.node:
            segments = scope_segments(node.name, adapters=1 + request.adapter_depth)
            if segments is None:
                assignments.append(None)
                continue
            module, complete = resolve_scope(segments, request.tree)
            source = TagSource.EXACT if complete else TagSource.INHERITED
            assignments.append(Assignment(module, source))
        return assignments
