"""The attribution protocol: read a captured graph, name each node's module.

An attribution returns one entry per top-level node: an ``Assignment`` where
it can tell, ``None`` where it cannot (the shared projection pass places
those).  It declares the capture evidence it reads (``requires``), so the
registry can refuse a strategy whose capture does not record it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from modelexport.attribution.module_calls import exact_copy
from modelexport.capture.base import Captured, Evidence
from modelexport.capture.request import ExportRequest
from modelexport.tagging import Assignment


class Attribution(ABC):
    """One way of saying which module each captured node belongs to."""

    name: ClassVar[str]
    requires: ClassVar[frozenset[Evidence]] = frozenset()
    # Reads each module call's tensors (``Captured.calls``): recorded during
    # the capture's own forward where it runs one, else by a forward of its own.
    reads_calls: ClassVar[bool] = False
    # What is held of each recorded tensor (``module_calls.recording_calls``'s ``keep``)
    keeps_calls_as: ClassVar[Callable[[np.ndarray], Any]] = staticmethod(exact_copy)

    @abstractmethod
    def __call__(self, request: ExportRequest, captured: Captured) -> list[Assignment | None]:
        """The module of each top-level node, or None where this attribution can't tell."""
