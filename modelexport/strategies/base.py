"""What a strategy is, its result type, and the registry.

A strategy is a named pair: a *capture* (``modelexport.capture``) turns the
model into an ONNX graph, an *attribution* (``modelexport.attribution``)
assigns each node to the module that produced it, or leaves it ``None`` for
the shared projection pass to place.  Everything after that (projection,
call indices, writing tags, the sidecar, parity) is common code in the API.

Strategies are declared as data (``strategies.builtin``), and a new one is
one ``register_strategy(Strategy(...))`` call: an existing capture with a
new attribution, or the other way round.  The registry is the one list of
strategy names the CLI, the selector, the harness and the gate read.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import onnx
import torch

from modelexport.attribution.base import Attribution
from modelexport.attribution.module_calls import recording_calls
from modelexport.capture.base import Capture
from modelexport.capture.request import ExportRequest, strip_adapter_scopes
from modelexport.errors import ModelExportError, one_line
from modelexport.output.onnx_payload import MemoryPayloads
from modelexport.tagging import Assignment, paused_gc


@dataclass
class StrategyResult:
    """Outcome of one strategy attempt: the graph and assignments, or the error."""

    strategy: str
    model: onnx.ModelProto | None = None
    assignments: list[Assignment | None] | None = None
    payloads: MemoryPayloads | None = None  # where ``model``'s in-memory weights are
    sources: Mapping[str, torch.Tensor] = field(default_factory=dict)  # Captured.sources
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


@dataclass(frozen=True)
class Strategy:
    """A capture and an attribution under one name; refuses a pairing that cannot work."""

    name: str
    summary: str
    capture: Capture
    attribution: Attribution

    def __post_init__(self) -> None:
        missing = self.attribution.requires - self.capture.provides
        if missing:
            needed = ", ".join(sorted(e.value for e in missing))
            raise ValueError(
                f"strategy {self.name!r}: attribution {self.attribution.name!r} reads "
                f"{needed}, which capture {self.capture.name!r} does not record"
            )

    @property
    def freezes_control_flow(self) -> bool:
        return self.capture.freezes_control_flow

    @property
    def counts_calls(self) -> bool:
        """Whether ``run(..., count_calls=True)`` can stand in for a separate probe forward."""
        return self.capture.runs_forward_once

    def run(self, request: ExportRequest, count_calls: bool = False) -> StrategyResult:
        """Capture then attribute, timing both and catching any failure into the result.

        With ``count_calls`` (only for a capture that ``counts_calls``), the
        module tree counts calls during the capture's own forward, which
        saves the export its probe forward (``api``).  An attribution that
        reads module calls gets them recorded during that same forward, which
        saves USAGE_BASED a forward of its own.  Exporter chatter on
        stdout is swallowed at the file-descriptor level (the TorchScript
        exporter dumps its IR graph from C++ on failure), so a CLI's stdout
        stays clean for ``--json``; failures travel as the exception instead.
        """
        if count_calls and not self.counts_calls:
            raise ValueError(f"capture {self.capture.name!r} does not run the forward once")
        result = StrategyResult(strategy=self.name)
        counting = request.tree.recording_calls() if count_calls else contextlib.nullcontext()
        recording = (recording_calls(request.model, keep=self.attribution.keeps_calls_as)
                     if self.attribution.reads_calls and self.capture.runs_forward_once
                     else contextlib.nullcontext(None))
        try:
            with _silenced_stdout(), _preserved_modes(request.traced):
                start = time.perf_counter()
                with counting, recording as calls:
                    captured = self.capture(request)
                if calls is not None:
                    captured.calls = calls
                result.seconds["capture"] = time.perf_counter() - start
                start = time.perf_counter()
                with paused_gc():
                    assignments = self.attribution(request, captured)
                    strip_adapter_scopes(captured.graph, 1 + request.adapter_depth)
                result.seconds["assign"] = time.perf_counter() - start
            graph = captured.graph
            if len(assignments) != len(graph.graph.node):
                raise RuntimeError(
                    f"{self.name} assigned {len(assignments)} of "
                    f"{len(graph.graph.node)} nodes"
                )
            result.model, result.assignments = graph, assignments
            result.payloads, result.sources = captured.payloads, captured.sources
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


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    """Make ``strategy`` selectable by its name (registering the same one again is a no-op)."""
    known = _REGISTRY.get(strategy.name)
    if known is not None and known != strategy:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    _REGISTRY[strategy.name] = strategy
    return strategy


def strategy_names() -> list[str]:
    return list(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise ModelExportError(f"unknown strategy {name!r} (known: {known})") from None
