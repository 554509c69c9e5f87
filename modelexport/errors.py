"""User-facing errors.

Every failure a user can cause (a bad model id, inputs that don't fit, an
unwritable path) is raised as a :class:`ModelExportError` subclass whose
message is one readable line.  The CLI prints exactly that line and exits
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ModelExportError(Exception):
    """Base class for errors whose message is meant for the user."""


class ModelLoadError(ModelExportError):
    """The model could not be found, built or loaded."""


class InputMismatchError(ModelExportError):
    """The example inputs do not fit the model's forward."""


class OutputPathError(ModelExportError):
    """The output path cannot be written."""


class StrategyFailedError(ModelExportError):
    """Every strategy that was tried failed; the message names each cause."""

    def __init__(self, message: str, attempts: list | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []


class InvalidOnnxError(ModelExportError):
    """A file that should be ONNX is missing, truncated or not ONNX at all."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """Condense an exception to a single line of at most ``limit`` characters.

    Exporter internals often raise multi-paragraph messages; a report row or a
    CLI error needs the first meaningful line only.
    """
    text = str(exc).strip() or type(exc).__name__
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    return first
