"""Small stand-ins for large recorded tensors, enough to recognise their values.

USAGE_BASED finds each module call's tensors among the graph's by value.
Holding an exact copy of every distinct activation until the graph has run
cost 83 MB on bert-base and 144 MB on ResNet-50, held through the
exporter's own memory peak, which made its peak RSS 1.2x to 1.7x a plain
export's.  A :class:`ValueSketch` keeps about 8 KB of a large float tensor:

- its values at ``SAMPLES`` positions spread over it (pseudo-random, so no
  stride lines up with a channel or head layout);
- the sum and the sum of absolute values of each of ``BLOCKS`` contiguous
  blocks.

:meth:`ValueSketch.admits` asks of a graph tensor what ``np.allclose`` at
the given tolerances implies: the samples are close (``np.allclose`` itself)
and each block's sum is within the summed tolerance, ``m * atol + rtol *
sum|wanted|``.  A tensor close to the recorded one always passes.  One that
is not passes only if it differs nowhere among the samples and by little
enough in every block's sum: two tensors of one shape that differ in a
handful of elements can be confused (docs/contributing.md, "Known limits").

Small tensors, integer and boolean ones, half-precision ones (whose own
rounding exceeds the relative tolerance) and any holding an infinity or NaN
(whose sums say nothing) are kept as exact copies instead: a
:class:`ValueSketch` is only ever made where its test is sound.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SAMPLES = 1024
BLOCKS = 256
# up to this many values a copy is about as small as a sketch, and exact
EXACT_UP_TO = 16384
# numpy's float32 tolerance test rounds: a bound this much looser than the
# exact one never rejects a close tensor
_ROUNDING = 1.001
# float32 pairwise sums of a block err by a few ulps times log2 of its length,
# times its sum of absolute values: well under this (both sides' errors added)
SUM_ROUNDING = 1e-5


@functools.lru_cache(maxsize=64)
def _samples(size: int) -> np.ndarray:
    """Sample positions for a tensor of ``size`` values (the same every time)."""
    return np.sort(np.random.default_rng(size).choice(size, SAMPLES, replace=False))


def block_sums(flat: np.ndarray, absolute: bool = False) -> np.ndarray:
    """Sums of ``BLOCKS`` equal rows of ``flat`` (of its absolute values if ``absolute``).

    A half-precision tensor is summed in float64: its own row sums would
    round, or overflow (a row of 3136 values near 75), past any tolerance.

    The last block also takes the remainder.  Summing rows of a 2-D view
    takes numpy's pairwise summation in the array's own precision, four
    times faster than ``np.add.reduceat`` into float64 (0.2 against 0.8 ms
    for a ResNet-50 activation); its rounding stays far inside the
    tolerance (``SUM_ROUNDING``).
    """
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    width = flat.size // BLOCKS
    rows, tail = flat[:width * BLOCKS].reshape(BLOCKS, width), flat[width * BLOCKS:]
    if absolute:
        rows, tail = np.abs(rows), np.abs(tail)
    sums = rows.sum(axis=1).astype(np.float64)
    sums[-1] += tail.sum(dtype=np.float64)
    return sums


def _block_sizes(size: int) -> np.ndarray:
    sizes = np.full(BLOCKS, size // BLOCKS, dtype=np.float64)
    sizes[-1] += size % BLOCKS
    return sizes


@dataclass(frozen=True, eq=False)
class ValueSketch:
    """What USAGE_BASED keeps of one large recorded float tensor (module doc)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    samples: np.ndarray
    sums: np.ndarray
    abs_sums: np.ndarray
    varies: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def total(self) -> float:
        return float(self.sums.sum())

    @property
    def abs_total(self) -> float:
        return float(self.abs_sums.sum())

    def admits(self, found: np.ndarray, atol: float, rtol: float,
               found_sums: np.ndarray | None = None) -> bool:
        """Whether ``found`` passes every test ``np.allclose(found, recorded)`` implies.

        ``found_sums`` are ``found``'s block sums where the caller has them
        already (``ValueIndex`` sums every candidate once to sort it).
        """
        if found.shape != self.shape or found.dtype.kind != "f":
            return False
        flat = found.reshape(-1)
        if not np.allclose(flat[_samples(self.size)], self.samples, atol=atol, rtol=rtol):
            return False
        if found_sums is None:
            found_sums = block_sums(flat)
        bound = ((_block_sizes(self.size) * atol + rtol * self.abs_sums) * _ROUNDING
                 + SUM_ROUNDING * self.abs_sums)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN or inf in ``found``: not close
            return bool((np.abs(found_sums - self.sums) <= bound).all())


def sketch_or_copy(array: np.ndarray) -> np.ndarray | ValueSketch:
    """A :class:`ValueSketch` of ``array`` where its test is sound, else an exact copy."""
    if array.size <= EXACT_UP_TO or array.dtype not in (np.float32, np.float64):
        return array.copy()
    flat = array.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        abs_sums = block_sums(flat, absolute=True)
    if not np.isfinite(abs_sums).all():
        return array.copy()
    samples = flat[_samples(flat.size)].copy()
    # samples that differ settle it without two more passes over the tensor
    varies = bool(samples.max() > samples.min()) or bool(flat.max() > flat.min())
    return ValueSketch(tuple(array.shape), array.dtype, samples, block_sums(flat), abs_sums,
                       varies=varies)
