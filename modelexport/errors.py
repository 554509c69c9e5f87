"""User-facing errors.

Every failure a user can cause (a bad model id, inputs that don't fit, an
unwritable path) is raised as a :class:`ModelExportError` subclass whose
message is one readable line.  The CLI prints exactly that line and exits
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re


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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def _chained(exc: BaseException) -> BaseException | None:
    """The exception ``exc`` wraps, honouring ``raise ... from None``."""
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def one_line(exc: BaseException, limit: int = 300) -> str:
    """Condense an exception to a single line of at most ``limit`` characters.

    Exporter internals raise multi-paragraph messages and wrap the real cause
    (torch.onnx's ``TorchExportError`` says only which step failed), so the
    innermost chained cause is appended: that is the line a user can act on.
    """
    line = _first_line(exc)
    cause, seen = _chained(exc), {id(exc)}
    innermost = None
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        innermost = cause
        cause = _chained(cause)
    if innermost is not None and _first_line(innermost) not in line:
        line = f"{line} <- {type(innermost).__name__}: {_first_line(innermost)}"
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return line
