"""Recorded module calls: one copy per distinct tensor, never a stale one."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelexport.attribution.module_calls import record_calls


class _ReluInPlace(nn.Module):
    """fc's output is fed to relu, which overwrites it in place and returns it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.fc(x))


def test_a_tensor_seen_twice_is_copied_once_and_an_overwritten_one_again() -> None:
    torch.manual_seed(0)
    model = _ReluInPlace()
    x = torch.randn(3, 4)
    calls = {c.path: c for c in record_calls(model, lambda: model(x))}
    fc_out, relu_in, relu_out = calls["fc"].outputs[0], calls["relu"].inputs[0], \
        calls["relu"].outputs[0]
    expected = model.fc(x).detach().numpy()
    assert (expected < 0).any()  # the in-place ReLU really changes something
    # fc's hook copied its output before ReLU overwrote it
    assert np.array_equal(fc_out, expected)
    # the same tensor object, bumped in place by the time relu's hook runs: a new
    # copy with the new values, not the stale one
    assert relu_in is not fc_out and np.array_equal(relu_in, np.maximum(expected, 0))
    # relu's output is that tensor, unchanged since: one copy serves both sightings
    assert relu_out is relu_in
    # and the root returns it unchanged: shared again
    assert calls[""].outputs[0] is relu_out
    assert np.array_equal(calls[""].inputs[0], x.numpy())


def test_inference_mode_tensors_have_no_version_and_are_copied_each_time() -> None:
    model = nn.Sequential(nn.Identity(), nn.Identity())
    with torch.inference_mode():
        x = torch.randn(2, 3)
    calls = {c.path: c for c in record_calls(model, lambda: model(x))}
    assert np.array_equal(calls["0"].outputs[0], x.numpy())
    assert calls["1"].inputs[0] is not calls["0"].outputs[0]  # nothing to prove it unchanged
