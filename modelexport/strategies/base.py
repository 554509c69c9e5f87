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
from typing import ClassVar

import onnx
import torch

from modelexport.capture.request import ExportRequest, strip_adapter_scopes
from modelexport.errors import ModelExportError, one_line
from modelexport.tagging import Assignment, paused_gc


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
