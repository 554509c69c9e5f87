"""What a capture hands to an attribution, and what it promises that hand-over holds.

A strategy pairs one capture with one attribution.  The pairing is only
sound when the capture records what the attribution reads: HTP's scope
resolution reads node names that a TorchScript trace wrote, and the name
scopes of torch.export mean nothing on a TorchScript graph.  Each capture
therefore declares the ``Evidence`` it leaves on the graph, each attribution
the evidence it requires, and the registry refuses a pairing that does not
fit, when it is registered rather than at the first export.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import onnx

from modelexport.capture.request import ExportRequest
from modelexport.output.onnx_payload import MemoryPayloads


class Evidence(str, Enum):
    """A record of module membership that a capture leaves on the graph."""

    # Node names carry the module scopes the TorchScript tracer saw
    # (``/encoder/layer.0/attention/self/query/MatMul``).
    SCOPE_NAMES = "scope-names"
    # Nodes carry torch.export's ``pkg.torch.onnx.name_scopes`` metadata.
    NAME_SCOPES = "name-scopes"
    # ``Captured.op_paths`` maps a node's first scope segment to a module path.
    OP_PATHS = "op-paths"


@dataclass
class Captured:
    """One captured graph, with whatever the capture learnt about it on the way.

    ``op_paths`` is filled by captures that rename ops to scopes of their own
    (FX wraps every op in ``fxop_N``): the scope's module path in the user's
    model.  Keeping it here, rather than on the capture object, keeps captures
    stateless, so one registered instance serves every export.

    ``payloads`` holds the buffer that the graph's in-memory weights point
    into (``onnx_payload.MemoryPayloads``), for a capture that left them in
    the exporter's buffer; whatever reads or writes those weights needs it.

    ``sources`` maps initializer names to the tensor the exporter wrote each
    from, for those it wrote from a view of a parameter
    (``exporter_sources``); matching initializers to parameters then need
    not compare their values.

    ``calls`` holds the module calls (``attribution.module_calls.ModuleCall``)
    recorded during the capture's own forward, when the strategy's
    attribution reads them and the capture runs the forward once
    (``Strategy.run``); None otherwise.
    """

    graph: onnx.ModelProto
    op_paths: Mapping[str, str] = field(default_factory=dict)
    calls: list[Any] | None = None
    payloads: MemoryPayloads | None = None
    sources: Mapping[str, Any] = field(default_factory=dict)


class Capture(ABC):
    """One way of turning a model into an ONNX graph."""

    name: ClassVar[str]
    provides: ClassVar[frozenset[Evidence]]
    # True for captures that trace one execution: a data-dependent branch is
    # frozen to the side the example took (the report then warns).
    freezes_control_flow: ClassVar[bool] = False
    # True for captures that run the model's own forward exactly once, module
    # hooks firing: the call counts the export needs can be taken during the
    # capture instead of in a separate forward (``Strategy.run``).
    runs_forward_once: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, request: ExportRequest) -> Captured:
        """Export the model; raise on failure (never fall back silently)."""
