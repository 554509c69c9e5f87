"""The names users pass around: strategies and selection objectives.

Both are ``str``-valued enums so that a member compares equal to its name
(``ExportStrategy.HTP == "htp"``) and prints as it (``f"{pick}"`` is
``htp``): code and JSON written against plain strings keep working.  They
live here, below the API and the selector, so either can use them.
"""

from __future__ import annotations

from enum import Enum


class _Named(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class ExportStrategy(_Named):
    """Strategies selectable by name; AUTO tries them in order until one works."""

    AUTO = "auto"
    DYNAMO = "dynamo"
    HTP = "htp"
    USAGE_BASED = "usage_based"
    FX = "fx"


class Objective(_Named):
    """What the selector optimises (docs/strategies.md, "Selector and AUTO": each best set)."""

    SPEED = "speed"  # fastest export whose file and tags pass
    QUALITY = "quality"  # best tags: anchored accuracy, then exact + inherited share
    RUNTIME = "runtime"  # fastest ONNX Runtime inference among files whose tags pass

    @classmethod
    def resolve(cls, objective: Objective | str | None, prioritize_speed: bool = True,
                ) -> Objective:
        """``objective`` if given, else the seed's ``prioritize_speed`` switch."""
        if objective is None:
            return cls.SPEED if prioritize_speed else cls.QUALITY
        try:
            return cls(str(objective).lower())
        except ValueError:
            known = ", ".join(o.value for o in cls)
            raise ValueError(f"unknown objective {objective!r} (known: {known})") from None
