"""Argument parsing that refuses nonsense in one line, before any work starts.

A type below raising ``ArgumentTypeError`` becomes ``error: argument --atol:
must be 0 or more, not -1`` and exit code 2, so a negative tolerance or
batch size never reaches code that would accept it silently or fail with a
traceback.  :class:`OneLineParser` keeps every argument error to that one
line (argparse would print the whole usage first).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

# The CLI's exit codes: done; a verdict against the file (parity, self-check, a check
# that failed); a user error (bad input, unknown model, unwritable path).
EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 2


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line and exit code 2, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class NameList(argparse.Action):
    """Names given either way a user types them: ``a b``, ``a,b`` or ``a, b``.

    ``--strategies htp,usage_based`` used to be refused as one unknown name;
    the comma is how most tools spell a list, so it is read as one here.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: list[str], option_string: str | None = None) -> None:
        # nargs="+" hands over a list of strings, each possibly holding commas
        names = [name.strip() for item in values for name in item.split(",")]
        names = [name for name in names if name]
        if not names:
            parser.error(f"argument {option_string}: expected at least one name")
        setattr(namespace, self.dest, names)


def positive_int(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive_float(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _parsed(text: str, kind: type, what: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None


def shard(text: str):
    """``K/N`` for ``zoo run --shard`` (a ``sharding.Shard``)."""
    from modelexport.harness.sharding import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
