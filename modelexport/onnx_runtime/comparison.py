"""How an ONNX Runtime output is compared with PyTorch's: one tolerance, everywhere.

Parity, the per-module comparison and ``extract``'s check of a cut-out
layer all judge an output by its largest elementwise error against
``atol + rtol * scale``, where the scale is the reference's largest
magnitude; they share these two functions so the rule cannot drift.
"""

from __future__ import annotations

import numpy as np


def output_scale(reference: np.ndarray) -> float:
    """Largest magnitude of a reference output (1.0 when all zero): the tolerance's scale."""
    return float(np.max(np.abs(reference))) or 1.0


def max_abs_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest elementwise ``|got - expected|``, in float64; 0.0 for empty arrays."""
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
