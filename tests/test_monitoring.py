"""Peak RSS: the kernel's high-water mark, shared fairly by nested samplers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modelexport import monitoring
from modelexport.monitoring import PeakSampler, current_rss_bytes

MB = 2**20


def _touch_and_free(megabytes: int, hold_seconds: float = 0.0) -> None:
    """Allocates and writes ``megabytes`` (so the pages are resident), then frees them."""
    block = np.ones(megabytes * MB // 8)
    time.sleep(hold_seconds)
    del block


@pytest.fixture
def kernel_mark():
    if monitoring._high_water_bytes() is None or not monitoring._reset_high_water():
        pytest.skip("this kernel does not let a process reset its high-water mark")


def test_a_freed_allocation_is_seen_however_short_it_lived(kernel_mark):
    start = current_rss_bytes()
    with PeakSampler() as sampler:
        _touch_and_free(200)
    assert sampler.peak - start >= 190 * MB
    assert sampler._thread is None  # read from the kernel, no sampling thread ran


def test_an_inner_sampler_does_not_erase_what_the_outer_one_saw(kernel_mark):
    """The inner one resets the process's mark; the outer must keep the spike before it."""
    start = current_rss_bytes()
    with PeakSampler() as outer:
        _touch_and_free(200)
        with PeakSampler() as inner:
            _touch_and_free(20)
    assert outer.peak - start >= 190 * MB
    assert inner.peak - start < 150 * MB


def test_without_the_kernel_mark_a_thread_samples(monkeypatch, tmp_path):
    monkeypatch.setattr(monitoring, "_CLEAR_REFS", str(tmp_path / "missing" / "clear_refs"))
    start = current_rss_bytes()
    with PeakSampler(interval=0.005) as sampler:
        _touch_and_free(200, hold_seconds=0.2)
    assert sampler._thread is not None
    assert sampler.peak - start >= 190 * MB
