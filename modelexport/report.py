"""The export report: typed fields, also readable as a nested mapping.

``report.summary.final_strategy`` and ``report['summary']['final_strategy']``
give the same value, so both the typed API and the seed's dictionary style
work.  ``to_dict()`` is what the CLI prints with ``--json``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any


@dataclass
class Attempt:
    """One strategy tried during an export."""

    strategy: str
    success: bool
    seconds: float
    error_type: str = ""
    error: str = ""
    axes: str = ""  # the axis ladder's rung it ran on, when the export climbed down


@dataclass
class Summary:
    model_class: str
    requested_strategy: str
    final_strategy: str | None
    success: bool
    attempts: list[Attempt] = field(default_factory=list)
    total_seconds: float = 0.0


@dataclass
class Outputs:
    onnx: str
    sidecar: str
    external_data: str | None = None
    report: str | None = None
    encoder: str | None = None  # an encoder-decoder's with-past export: the encoder's file

    def files(self) -> list[str]:
        """The files this export wrote (the encoder's are its own report's)."""
        return [f for f in (self.onnx, self.sidecar, self.external_data, self.report) if f]


@dataclass
class ExportReport(Mapping):
    """Everything known about one export."""

    summary: Summary
    outputs: Outputs
    coverage: dict[str, float | int]
    anchored: dict[str, float | int | None]
    timings: dict[str, float]
    memory_peak_mb: dict[str, float]
    settings: dict[str, Any]
    graph: dict[str, int]
    cpu_timings: dict[str, float] = field(default_factory=dict)  # process CPU seconds per phase
    parity: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    check: dict[str, Any] | None = None  # the self-check (see modelexport.validation.self_check)
    warnings: list[str] = field(default_factory=list)  # what the user should know
    encoder: dict[str, Any] | None = None  # an encoder-decoder's with-past export: its report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        """The seed's mapping view, one section at a time (no copy of the whole report).

        Plain sections come back as they are held; the typed ones
        (``summary``, ``outputs``) as dicts.
        """
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        value = getattr(self, key)
        return asdict(value) if is_dataclass(value) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    @property
    def success(self) -> bool:
        return self.summary.success

    @property
    def check_passed(self) -> bool | None:
        return None if self.check is None else bool(self.check["passed"])

    @property
    def parity_passed(self) -> bool | None:
        return None if self.parity is None else bool(self.parity["passed"])
