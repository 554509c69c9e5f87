"""Switching a model to implementations that export, for the duration of an export.

Some libraries let a model choose between several implementations of the
same computation.  The fastest for eager execution is not always one an
exporter can trace: transformers' default mixture-of-experts kernel counts
tokens per expert with ``torch.histc`` and a grouped matmul, which neither
TorchScript nor torch.onnx lower, while its ``batched_mm`` kernel gathers
each token's expert weights and runs plain batched matmuls.  The results are
the same, which the export's parity check (against the model as the user
left it) confirms.

``PREFERRED`` is the declared table: a setter a model may have, and the
implementation to ask it for.  The previous choice is restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# (setter method, config attribute that holds the current choice, preferred value)
PREFERRED: tuple[tuple[str, str, str], ...] = (
    ("set_experts_implementation", "_experts_implementation", "batched_mm"),
)


@contextlib.contextmanager
def export_friendly(model: torch.nn.Module) -> Iterator[list[str]]:
    """Inside the block, the model uses the ``PREFERRED`` implementations it offers.

    Yields what was switched (``"_experts_implementation: grouped_mm -> batched_mm"``),
    for the report.  A model that refuses a switch keeps its own choice.
    """
    config = getattr(model, "config", None)
    restore: list[tuple[str, object]] = []
    switched: list[str] = []
    for setter_name, attribute, preferred in PREFERRED:
        setter = getattr(model, setter_name, None)
        current = getattr(config, attribute, None)
        if setter is None or current is None or current == preferred:
            continue
        try:
            setter(preferred)
        except Exception:  # this model or transformers version does not offer it
            continue
        restore.append((setter_name, current))
        switched.append(f"{attribute}: {current} -> {preferred}")
    try:
        yield switched
    finally:
        for setter_name, previous in reversed(restore):
            getattr(model, setter_name)(previous)
