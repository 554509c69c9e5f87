"""New inputs like an example: what parity and per-module checks run on.

A file is checked on an input it was not exported with, so a graph that
froze the example's values (a branch taken, a shape baked in) shows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree

from modelexport.inputs import ModelInputs


def fresh_like(inputs: ModelInputs, seed: int = 1234) -> ModelInputs:
    """Same structure, shapes and dtypes, new seeded values (drawn as :func:`redrawn` draws)."""
    generator = torch.Generator().manual_seed(seed)
    args, kwargs = pytree.tree_map(lambda value: redrawn(value, generator),
                                   (inputs.args, inputs.kwargs))
    return ModelInputs(args=tuple(args), kwargs=dict(kwargs))


def redrawn(value: Any, generator: torch.Generator, shape: list[int] | None = None) -> Any:
    """New seeded values like ``value``'s, at its shape or at ``shape``.

    Floats are redrawn from a normal with the example's mean and spread;
    integers uniformly from the example's own value range (so token ids stay
    in the vocabulary and an all-ones mask stays all ones); booleans are kept
    (at a new shape: all true if the example's were, else all false).
    Anything but a non-empty tensor is returned as it is.
    """
    if not isinstance(value, torch.Tensor):
        return value
    size = list(value.shape) if shape is None else shape
    if value.numel() == 0:  # an empty cache: empty again, or zeros at the new size
        return value if shape is None else torch.zeros(size, dtype=value.dtype)
    if value.dtype.is_floating_point:
        spread = value.float().std().item() if value.numel() > 1 else 1.0
        spread = spread if spread > 0 else 1.0
        mean = value.float().mean().item()
        noise = torch.randn(size, generator=generator)
        return (noise * spread + mean).to(value.dtype)
    if value.dtype == torch.bool:
        return value.clone() if shape is None else torch.full(size, bool(value.all()))
    low, high = int(value.min()), int(value.max())
    return torch.randint(low, high + 1, size, generator=generator, dtype=value.dtype)
