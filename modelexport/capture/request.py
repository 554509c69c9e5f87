"""What a capture is asked to do (``ExportRequest``), and the adapter names it must undo.

modelexport sometimes calls the user's model through adapters of its own
(keyword arguments rebuilt from flat tensors, one decoding step with its
cache as tensors).  Each holds the model under ``ADAPTER_ATTRIBUTE``, so node
scopes, initializer names and name scopes gain a known prefix; the helpers
here take it off again, so the user sees their own names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch

from modelexport.hierarchy import ModuleTree
from modelexport.inputs import ModelInputs
from modelexport.output.onnx_payload import MemoryPayloads
from modelexport.parameters import Holding, match_initializers

# Adapters hold the user's model under this attribute, so scopes, state-dict
# names and name scopes gain a known prefix that strategies take off again.
ADAPTER_ATTRIBUTE = "wrapped"


@dataclass
class ExportRequest:
    """Everything a strategy needs to capture and tag one model.

    ``model`` is the user's model: tags name its modules.  What is captured
    may be an adapter around it (``capture_model``, one decoding step with
    its cache as tensors), holding it under ``ADAPTER_ATTRIBUTE``
    ``adapter_depth`` levels down; ``output_names`` then names the outputs.
    """

    model: torch.nn.Module
    inputs: ModelInputs
    tree: ModuleTree
    input_names: list[str]
    opset: int
    dynamic_axes: dict[str, dict[int, str]]
    optimize: bool
    workdir: Path
    capture_model: torch.nn.Module | None = None
    adapter_depth: int = 0
    output_names: list[str] | None = None
    # merge initializers of equal content (off: each parameter keeps its own)
    dedupe_weights: bool = False

    _holdings: tuple[onnx.ModelProto, dict[str, Holding]] | None = field(
        default=None, init=False, repr=False)

    def holdings(self, graph: onnx.ModelProto, payloads: MemoryPayloads | None = None,
                 sources: Mapping[str, torch.Tensor] | None = None) -> dict[str, Holding]:
        """What each initializer of ``graph`` holds (:func:`match_initializers`), once per graph.

        A strategy that reads parameter owners (USAGE_BASED) and the tag
        phase after it both need the map; matching renamed weights by content
        reads every weight, so it is not done twice.  ``payloads`` holds the
        graph's in-memory weights, if it has any; ``sources`` what the
        exporter wrote each initializer from, where the capture knows
        (``Captured.sources``).
        """
        if self._holdings is None or self._holdings[0] is not graph:
            self._holdings = (graph, match_initializers(
                graph, self.tree, self.model, payloads, sources,
                deduplicated=self.dedupe_weights))
        return self._holdings[1]

    def state_names(self) -> set[str]:
        """The state-dict names of the captured module's parameters and buffers."""
        return {name for name, _ in (*self.traced.named_parameters(remove_duplicate=False),
                                     *self.traced.named_buffers(remove_duplicate=False))}

    @property
    def traced(self) -> torch.nn.Module:
        """The module that is actually called and captured."""
        return self.capture_model if self.capture_model is not None else self.model

    def call(self) -> object:
        """One forward of the captured module on the example."""
        return self.inputs.call(self.traced)


def strip_adapter_prefix(path: str, depth: int) -> str:
    """``wrapped.model.layers.0`` -> ``model.layers.0`` for ``depth`` 1."""
    prefix = ADAPTER_ATTRIBUTE + "."
    for _ in range(depth):
        if path == ADAPTER_ATTRIBUTE:
            return ""
        if path.startswith(prefix):
            path = path[len(prefix):]
    return path


def strip_adapter_scopes(graph: onnx.ModelProto, depth: int) -> None:
    """``/wrapped/encoder/layer.0/MatMul`` -> ``/encoder/layer.0/MatMul`` on every node name.

    Node names are what users read in Netron, profiles and error messages; the
    adapters modelexport wraps a model in are not theirs.  Runs after the
    strategy has read the scopes.  Names stay unique: if stripping would make
    two nodes share a name, every name is left as it was.
    """
    renamed = [_without_adapter_scopes(node.name, depth) for node in graph.graph.node]
    if len(set(renamed)) == len(renamed):
        for node, name in zip(graph.graph.node, renamed):
            node.name = name


def _without_adapter_scopes(name: str, depth: int) -> str:
    parts = name.split("/")
    if len(parts) < 3 or parts[0] or parts[1] != ADAPTER_ATTRIBUTE:
        return name
    scopes, op = parts[1:-1], parts[-1]
    dropped = 0
    while dropped < depth and dropped < len(scopes) and scopes[dropped] == ADAPTER_ATTRIBUTE:
        dropped += 1
    # a root container's children are scoped ``wrapped.2`` under the adapter
    kept = [strip_adapter_prefix(scope, depth) for scope in scopes[dropped:]]
    return "/" + "/".join([*kept, op])


def rename_graph_values(graph: onnx.ModelProto, renames: dict[str, str]) -> None:
    """Rename tensors (initializers, inputs, outputs) everywhere they are referenced."""
    if not renames:
        return
    for init in graph.graph.initializer:
        init.name = renames.get(init.name, init.name)
    for value in [*graph.graph.input, *graph.graph.output, *graph.graph.value_info]:
        value.name = renames.get(value.name, value.name)
    for node in graph.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]


def normalise_names(graph: onnx.ModelProto, request: ExportRequest, adapters: int,
                    ) -> dict[str, str]:
    """Initializers back to the user's state-dict names; outputs as the request names them.

    ``adapters`` counts the adapter levels the capture added around the user's
    model (the request's own plus any the strategy wrapped it in).  Returns
    the renames (old name -> new), for whatever a capture recorded by name.
    """
    taken = {i.name for i in graph.graph.initializer}
    renames = {}
    for init in graph.graph.initializer:
        plain = strip_adapter_prefix(init.name, adapters)
        if plain != init.name and plain not in taken:
            renames[init.name] = plain
    inputs = [i.name for i in graph.graph.input]
    if len(inputs) == len(request.input_names):  # an exporter that names inputs its own way
        renames.update({old: new for old, new in zip(inputs, request.input_names)
                        if old != new})
    if request.output_names:
        current = [o.name for o in graph.graph.output]
        if len(current) != len(request.output_names):
            raise RuntimeError(f"the graph has {len(current)} outputs, expected "
                               f"{len(request.output_names)} ({', '.join(request.output_names)})")
        renames.update({old: new for old, new in zip(current, request.output_names)
                        if old != new})
    rename_graph_values(graph, renames)
    return renames
