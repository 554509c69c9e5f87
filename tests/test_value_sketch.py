"""Sketches of recorded tensors: never reject a close tensor, and tell different ones apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modelexport.attribution.module_calls import record_calls
from modelexport.attribution.usage import _ATOL, _RTOL, ValueIndex
from modelexport.attribution.value_sketch import EXACT_UP_TO, ValueSketch, sketch_or_copy

_RNG = np.random.default_rng(7)
_WANTED = _RNG.standard_normal((1, 32, 40, 40)).astype(np.float32)  # 51200 values: sketched


def _sketch() -> ValueSketch:
    sketch = sketch_or_copy(_WANTED)
    assert isinstance(sketch, ValueSketch)
    return sketch


def _at_the_bound(sign: np.ndarray) -> np.ndarray:
    """``_WANTED`` moved by just under allclose's tolerance at every value, in the given signs."""
    step = (0.999 * (_ATOL + _RTOL * np.abs(_WANTED))).astype(np.float32)
    return (_WANTED + sign * step).astype(np.float32)


@pytest.mark.parametrize("found", [
    _WANTED.copy(),
    _at_the_bound(np.ones_like(_WANTED)),  # every difference in one direction: the largest sums
    _at_the_bound(-np.ones_like(_WANTED)),
    _at_the_bound(np.sign(_RNG.standard_normal(_WANTED.shape)).astype(np.float32)),
    _WANTED.astype(np.float64),
], ids=["itself", "all-up", "all-down", "mixed", "float64"])
def test_a_close_tensor_is_always_admitted(found: np.ndarray) -> None:
    assert np.allclose(found, _WANTED, atol=_ATOL, rtol=_RTOL)
    assert _sketch().admits(found, _ATOL, _RTOL)


def test_a_close_half_precision_tensor_is_admitted() -> None:
    """Its block sums are taken in float64: in float16 a row of 3136 values near 75 overflows."""
    wanted = _RNG.uniform(50, 100, (1, 64, 56, 56)).astype(np.float16).astype(np.float32)
    found = wanted.astype(np.float16)
    assert np.allclose(found, wanted, atol=_ATOL, rtol=_RTOL)
    assert sketch_or_copy(wanted).admits(found, _ATOL, _RTOL)
    assert ValueIndex({"found": found}).matches(sketch_or_copy(wanted)) == ["found"]


def _one_value_changed() -> np.ndarray:
    found = _WANTED.copy()
    found[0, 5, 17, 23] += 0.5
    return found


def _one_row_changed() -> np.ndarray:
    found = _WANTED.copy()
    found[0, 9, 3] = 0.0
    return found


def _with_nan() -> np.ndarray:
    found = _WANTED.copy()
    found[0, 0, 0, 1] = np.nan
    return found


@pytest.mark.parametrize("found", [
    np.maximum(_WANTED, 0),  # an in-place ReLU's before and after
    _WANTED.transpose(0, 1, 3, 2).copy(),  # same shape, values moved
    _WANTED + np.float32(1e-3),  # shifted beyond the tolerance everywhere
    _one_value_changed(),
    _one_row_changed(),
    _with_nan(),
    _WANTED.reshape(1, 32, 1600),
    _WANTED.astype(np.int32),
], ids=["relu", "transposed", "shifted", "one-value", "one-row", "nan", "reshaped", "integer"])
def test_a_different_tensor_is_refused(found: np.ndarray) -> None:
    assert not _sketch().admits(found, _ATOL, _RTOL)


@pytest.mark.parametrize("array", [
    np.ones(EXACT_UP_TO, dtype=np.float32),  # small: a copy is no bigger
    np.arange(EXACT_UP_TO * 4, dtype=np.int64),  # indices: compared exactly
    np.ones(EXACT_UP_TO * 4, dtype=np.float16),  # its rounding exceeds the tolerance
    np.concatenate([np.ones(EXACT_UP_TO * 4, np.float32), [-np.inf]]).astype(np.float32),
    np.concatenate([np.ones(EXACT_UP_TO * 4, np.float32), [np.nan]]).astype(np.float32),
], ids=["small", "int64", "float16", "inf", "nan"])
def test_only_sound_sketches_are_made(array: np.ndarray) -> None:
    kept = sketch_or_copy(array)
    assert isinstance(kept, np.ndarray) and kept is not array
    assert np.array_equal(kept, array, equal_nan=True)


def test_a_constant_tensor_is_marked_as_not_varying() -> None:
    constant = sketch_or_copy(np.full(EXACT_UP_TO * 2, 3.0, dtype=np.float32))
    assert isinstance(constant, ValueSketch) and not constant.varies
    assert _sketch().varies


def test_the_index_finds_the_same_tensors_from_a_sketch_as_from_a_copy() -> None:
    graph_values = {
        "relu_before": _WANTED.copy(),
        "relu_after": np.maximum(_WANTED, 0),
        "close": _at_the_bound(np.ones_like(_WANTED)),
        "other": _RNG.standard_normal(_WANTED.shape).astype(np.float32),
    }
    for recorded in (_WANTED, np.maximum(_WANTED, 0)):
        exact = ValueIndex(graph_values).matches(recorded.copy())
        sketched = ValueIndex(graph_values).matches(sketch_or_copy(recorded))
        assert sorted(exact) == sorted(sketched) and exact


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def test_recording_keeps_large_activations_as_shared_sketches() -> None:
    torch.manual_seed(0)
    model, x = _Block(), torch.randn(1, 3, 48, 48)
    calls = {c.path: c for c in record_calls(model, lambda: model(x), keep=sketch_or_copy)}
    conv_out = calls["conv"].outputs[0]
    assert isinstance(conv_out, ValueSketch)  # 36864 values
    expected = model.conv(x).detach().numpy()
    assert conv_out.admits(expected, _ATOL, _RTOL)  # sketched before ReLU overwrote it
    relu_in = calls["relu"].inputs[0]
    assert relu_in is not conv_out and relu_in.admits(np.maximum(expected, 0), _ATOL, _RTOL)
    assert calls["relu"].outputs[0] is relu_in and calls[""].outputs[0] is relu_in
    assert isinstance(calls["conv"].inputs[0], np.ndarray)  # 6912 values: an exact copy


def test_the_index_keeps_tensors_whose_sum_is_not_finite_apart() -> None:
    with_inf = _WANTED.copy()
    with_inf[0, 3, 5, 7] = np.inf
    graph_values = {"inf": with_inf}
    for shift in (-3, 3, -2, 2, -1, 1):  # finite sums on both sides of the wanted one's
        graph_values[f"nan_{shift}"] = _with_nan()  # a NaN sum sorts nowhere
        graph_values[f"other_{shift}"] = _WANTED + np.float32(shift)
    graph_values["wanted"] = _WANTED.copy()
    index = ValueIndex(graph_values)
    assert index.matches(sketch_or_copy(_WANTED)) == ["wanted"]
    assert index.matches(_WANTED.copy()) == ["wanted"]
    kept_with_inf = sketch_or_copy(with_inf)
    assert isinstance(kept_with_inf, np.ndarray)  # an infinity is kept exactly
    assert index.matches(kept_with_inf) == ["inf"]
