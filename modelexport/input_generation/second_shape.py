"""Inputs at a second shape: another batch and sequence than the example's.

A file exported with dynamic axes must run at shapes it was not traced at;
one checked only at the example's shape can hide a size baked into a
``Reshape`` or a ``Tile``.  The new sizes follow the file's own symbols, so
every input sharing ``batch`` gets the same new batch: the batch grows by
two, and every other open axis (sequence, frames, past length) shrinks by
one, which stays within a model's position limit, or grows by one where it
is already short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils import _pytree as pytree

from modelexport.input_generation.like_example import redrawn
from modelexport.inputs import ModelInputs

BATCH_AXIS = "batch"
PAST_SEQUENCE = "past_sequence"  # a with-past file's cache length (capture.with_past)


def new_size(symbol: str, size: int, longer: bool = False) -> int:
    """The second shape's size of an axis of ``size`` named ``symbol`` (module doc)."""
    if symbol == BATCH_AXIS:
        return size + 2
    return size + 1 if longer or size <= 2 else size - 1


def at_second_shape(example: ModelInputs, input_names: list[str],
                    open_dims: Mapping[str, Mapping[int, str]], seed: int = 4321,
                    longer: bool = False, preset: Mapping[str, int] | None = None,
                    ) -> tuple[ModelInputs, dict[str, int]] | None:
    """``example`` with every open axis resized (fresh values), and the sizes by symbol.

    ``open_dims`` is the file's graph input -> dim -> symbol
    (``axis_names.dynamic_dims``); None when the file leaves no axis open.
    ``longer`` grows the non-batch axes instead of shrinking them, for a
    model that refuses the shorter shape.  A symbol that is a sum of others
    (``past_sequence + sequence``: a mask over the past and the new tokens)
    gets the sum of their new sizes, so the inputs stay consistent.
    ``preset`` fixes some symbols' sizes (a past of length zero).
    """
    tensors = [leaf for leaf in pytree.tree_leaves((example.args, example.kwargs))
               if isinstance(leaf, torch.Tensor)]
    wanted = [(open_dims.get(name, {}), tensor) for name, tensor in zip(input_names, tensors)]
    sizes: dict[str, int] = dict(preset or {})
    for dims, tensor in wanted:  # plain symbols first, then the sums of them
        for dim, symbol in dims.items():
            if dim < tensor.dim() and SUM not in symbol:
                sizes.setdefault(symbol, new_size(symbol, int(tensor.shape[dim]), longer))
    for dims, tensor in wanted:
        for dim, symbol in dims.items():
            if dim < tensor.dim() and SUM in symbol:
                parts = [part.strip() for part in symbol.split(SUM)]
                total = _sum(parts, sizes)
                sizes.setdefault(symbol, total if total is not None
                                 else new_size(symbol, int(tensor.shape[dim]), longer))
    if not sizes:
        return None
    generator = torch.Generator().manual_seed(seed)
    names = iter(input_names)

    def resize(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        dims = open_dims.get(next(names, ""), {})
        shape = list(value.shape)
        for dim, symbol in dims.items():
            if dim < len(shape):
                shape[dim] = sizes[symbol]
        return value if shape == list(value.shape) else redrawn(value, generator, shape)

    args, kwargs = pytree.tree_map(resize, (example.args, example.kwargs))
    return ModelInputs(args=tuple(args), kwargs=dict(kwargs)), sizes


SUM = "+"


def _sum(parts: list[str], sizes: Mapping[str, int]) -> int | None:
    """The sum of ``parts`` (symbols or integers), None if one is not known."""
    total = 0
    for part in parts:
        if part.isdigit():
            total += int(part)
        elif part in sizes:
            total += sizes[part]
        else:
            return None
    return total
