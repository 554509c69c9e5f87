"""Which axes an export leaves open, widest first, when a model's code fixes some.

A default export asks for every batch and sequence axis open: users' files
take any batch and any prompt length.  Some models cannot give that.  A
Python loop over the sequence (a reference selective scan, an RNN written
step by step) unrolls in a trace and specialises under torch.export; a split
by the batch size bakes the size into the graph.  Such a file fails at the
second shape, or torch.export refuses the dynamic dimension outright.

Rather than fail the export, an export whose axes were left to their
defaults steps down this ladder: every asked axis open, then the sequence
axes closed (batch still open), then every axis closed.  It steps down only
on evidence that the open axes were the trouble (``shape_bound``); the
report names the axes that were closed and why.  Axes the user asked for by
name (``dynamic_batch=True``, ``dynamic_sequence=True``) are never closed:
that export fails instead, saying why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# error_type of an attempt whose file matched PyTorch at the example's shape
# and not at the second one
SECOND_SHAPE_FAILED = "SecondShapeFailed"
# What torch.export says when the model's code fixes a dimension that was
# marked dynamic (torch.export's constraint-violation messages).
_SPECIALISED = ("specialized it to be a constant", "Constraints violated",
                "conflicts between user-specified ranges")


@dataclass(frozen=True)
class AxisChoice:
    """One rung: whether batch axes and sequence axes are asked open."""

    batch: bool
    sequence: bool


def axes_label(dynamic_axes: dict[str, dict[int, str]]) -> str:
    """The axes an export asked open, by symbol: ``batch, sequence open`` or ``static``."""
    symbols = sorted({axis for dims in dynamic_axes.values() for axis in dims.values()})
    return ", ".join(symbols) + " open" if symbols else "static"


def axis_ladder(batch: bool, sequence: bool, *, batch_chosen: bool, sequence_chosen: bool,
                with_past: bool = False) -> list[AxisChoice]:
    """The rungs to try, widest first.

    ``*_chosen`` says the user set that axis kind by name; those stay as set.
    A with-past export keeps its rung: its cache axes are what it is for.
    """
    rungs = [AxisChoice(batch, sequence)]
    if with_past:
        return rungs
    if sequence and not sequence_chosen:
        rungs.append(AxisChoice(batch, False))
    last = rungs[-1]
    if last.batch and not batch_chosen:
        rungs.append(AxisChoice(False, last.sequence))
    return rungs


def shape_bound(error_types: Iterable[str], errors: Iterable[str]) -> bool:
    """Whether a round of failed attempts points at the open axes.

    A file that matched PyTorch at the example's shape and not at the
    second, or torch.export refusing a dimension the model's code fixes, is
    such evidence; an operator no exporter knows is not (closing axes would
    only repeat the failure).
    """
    if SECOND_SHAPE_FAILED in error_types:
        return True
    return any(phrase in error for error in errors for phrase in _SPECIALISED)


def closed_axes(asked: dict[str, dict[int, str]],
                left_open: dict[str, dict[int, str]]) -> dict[str, list[str]]:
    """Per input, the axes asked open that the file fixes (by the ladder or the exporter)."""
    closed = {}
    for name, dims in asked.items():
        fixed = [axis for dim, axis in dims.items() if dim not in left_open.get(name, {})]
        if fixed:
            closed[name] = fixed
    return closed
