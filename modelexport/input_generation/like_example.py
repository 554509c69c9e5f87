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
    """Same structure, shapes and dtypes, new seeded values.

    Floats are redrawn from a normal with the example's mean and spread;
    integers uniformly from the example's own value range (so token ids stay
    in the vocabulary and an all-ones mask stays all ones); booleans are kept.
    """
    generator = torch.Generator().manual_seed(seed)

    def redraw(value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.numel() == 0:
            return value
        if value.dtype.is_floating_point:
            spread = value.float().std().item() if value.numel() > 1 else 1.0
            spread = spread if spread > 0 else 1.0
            mean = value.float().mean().item()
            noise = torch.randn(value.shape, generator=generator)
            return (noise * spread + mean).to(value.dtype)
        if value.dtype == torch.bool:
            return value.clone()
        low, high = int(value.min()), int(value.max())
        return torch.randint(low, high + 1, value.shape, generator=generator,
                             dtype=value.dtype)

    args, kwargs = pytree.tree_map(redraw, (inputs.args, inputs.kwargs))
    return ModelInputs(args=tuple(args), kwargs=dict(kwargs))
