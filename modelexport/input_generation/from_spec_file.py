"""Inputs described in a JSON file (``--input-specs``): for models whose signature says too little.

Format: ``{"name": {"shape": [1, 8], "dtype": "int64", "low": 0, "high": 100}}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from modelexport.errors import InputMismatchError, one_line

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64,
           "int32": torch.int32, "bool": torch.bool}


def inputs_from_spec_file(path: str | Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Keyword inputs described by a JSON file.

    Format: ``{"name": {"shape": [1, 8], "dtype": "int64", "low": 0, "high": 100}}``;
    floats are standard normal, integers uniform in ``[low, high)``, bools ones.
    """
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputMismatchError(f"cannot read input specs {path}: {one_line(exc)}") from None
    if not isinstance(spec, dict) or not spec:
        raise InputMismatchError(f"input specs {path} must be a non-empty JSON object")
    generator = torch.Generator().manual_seed(seed)
    inputs: dict[str, torch.Tensor] = {}
    for name, entry in spec.items():
        shape, dtype, (low, high) = _checked_spec(name, entry)
        if dtype.is_floating_point:
            inputs[name] = torch.randn(shape, generator=generator).to(dtype)
        elif dtype == torch.bool:
            inputs[name] = torch.ones(shape, dtype=torch.bool)
        else:
            inputs[name] = torch.randint(low, high, shape, generator=generator, dtype=dtype)
    return inputs


def _checked_spec(name: str, entry: Any) -> tuple[list[int], torch.dtype, tuple[int, int]]:
    """Shape, dtype and integer range of one input spec, or a one-line error saying what is off."""
    try:
        shape = [int(d) for d in entry["shape"]]
        dtype = _DTYPES[entry.get("dtype", "float32")]
        low, high = int(entry.get("low", 0)), int(entry.get("high", 2))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputMismatchError(
            f"input spec {name!r} needs a 'shape' list of whole numbers, a dtype among "
            f"{', '.join(_DTYPES)}, and whole-number 'low' and 'high'") from None
    if any(d < 0 for d in shape):
        raise InputMismatchError(f"input spec {name!r}: shape {shape} has a negative dimension")
    if not dtype.is_floating_point and dtype != torch.bool and low >= high:
        raise InputMismatchError(
            f"input spec {name!r}: integers are drawn from [low, high), so low ({low}) must be "
            f"below high ({high})")
    return shape, dtype, (low, high)
