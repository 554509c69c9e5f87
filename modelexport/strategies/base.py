"""The strategy protocol, its result type, and the registry.

A strategy does two things: *capture* the model as an ONNX graph, and
*assign* each node to the module that produced it (or leave it ``None`` for
the shared projection pass to place).  Everything after that (projection,
call indices, writing tags, the sidecar, parity) is common code in the API.

Adding a strategy is one file with one ``@register_strategy`` class.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import onnx
import torch

from modelexport.errors import ModelExportError, one_line
from modelexport.hierarchy import ModuleTree
from modelexport.inputs import ModelInputs
from modelexport.parameters import Holding, match_initializers
from modelexport.tagging import Assignment, paused_gc

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

    _holdings: tuple[onnx.ModelProto, dict[str, Holding]] | None = field(
        default=None, init=False, repr=False)

    def holdings(self, graph: onnx.ModelProto) -> dict[str, Holding]:
        """What each initializer of ``graph`` holds (:func:`match_initializers`), once per graph.

        A strategy that reads parameter owners (USAGE_BASED) and the tag
        phase after it both need the map; matching renamed weights by content
        reads every weight, so it is not done twice.
        """
        if self._holdings is None or self._holdings[0] is not graph:
            self._holdings = (graph, match_initializers(graph, self.tree, self.model))
        return self._holdings[1]

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


def normalise_names(graph: onnx.ModelProto, request: ExportRequest, adapters: int) -> None:
    """Initializers back to the user's state-dict names; outputs as the request names them.

    ``adapters`` counts the adapter levels the capture added around the user's
    model (the request's own plus any the strategy wrapped it in).
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


@dataclass
class StrategyResult:
    """Outcome of one strategy attempt: the graph and assignments, or the error."""

    strategy: str
    model: onnx.ModelProto | None = None
    assignments: list[Assignment | None] | None = None
    exception: BaseException | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.exception is None and self.model is not None

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def error_line(self) -> str:
        return "" if self.exception is None else one_line(self.exception)


class Strategy(ABC):
    """One way of producing a tagged ONNX graph from a PyTorch model."""

    name: ClassVar[str]
    summary: ClassVar[str]
    # True for captures that trace one execution: a data-dependent branch is
    # frozen to the side the example took (the report then warns).
    freezes_control_flow: ClassVar[bool] = False

    @abstractmethod
    def capture(self, request: ExportRequest) -> onnx.ModelProto:
        """Export the model; raise on failure (never fall back silently)."""

    @abstractmethod
    def assign(
        self, request: ExportRequest, graph: onnx.ModelProto
    ) -> list[Assignment | None]:
        """The module of each top-level node, or None where the strategy can't tell."""

    def run(self, request: ExportRequest) -> StrategyResult:
        """Capture then assign, timing both and catching any failure into the result.

        Exporter chatter on stdout is swallowed at the file-descriptor level
        (the TorchScript exporter dumps its IR graph from C++ on failure), so
        a CLI's stdout stays clean for ``--json``; failures travel as the
        exception instead.
        """
        result = StrategyResult(strategy=self.name)
        try:
            with _silenced_stdout(), _preserved_modes(request.traced):
                start = time.perf_counter()
                graph = self.capture(request)
                result.seconds["capture"] = time.perf_counter() - start
                start = time.perf_counter()
                with paused_gc():
                    assignments = self.assign(request, graph)
                    strip_adapter_scopes(graph, 1 + request.adapter_depth)
                result.seconds["assign"] = time.perf_counter() - start
            if len(assignments) != len(graph.graph.node):
                raise RuntimeError(
                    f"{self.name} assigned {len(assignments)} of "
                    f"{len(graph.graph.node)} nodes"
                )
            result.model, result.assignments = graph, assignments
        except Exception as exc:
            result.exception = exc
        return result


@contextlib.contextmanager
def _silenced_stdout() -> Iterator[None]:
    """Send whatever is written to stdout, by Python or by C++, to /dev/null."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedded interpreter)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
        return
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def _preserved_modes(model: torch.nn.Module) -> Iterator[None]:
    """Restore every submodule's train/eval flag after an exporter ran.

    The TorchScript exporter restores the mode of the module it was *given*,
    recursively; when that is a fresh wrapper (in training mode) the user's
    model comes back with dropout switched on.
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator that makes a strategy selectable by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> list[str]:
    return list(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name.lower()]()
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise ModelExportError(f"unknown strategy {name!r} (known: {known})") from None
