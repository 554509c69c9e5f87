"""Per-phase wall time and peak memory of an export.

Peak memory is the process's resident set size: tensors allocated by
torch's C++ allocator are invisible to ``tracemalloc``, so RSS is the figure
that reflects what an export costs.  Where Linux lets a process reset its
own high-water mark, the peak is read from the kernel; elsewhere a
background thread samples it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    """Resident set size now; falls back to the lifetime peak off Linux."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE_SIZE
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
# the kernel's high-water mark is one per process: samplers open at once share it
_open_samplers: set[PeakSampler] = set()
_high_water_lock = threading.Lock()


def _high_water_bytes() -> int | None:
    """The kernel's peak RSS of this process since its last reset (``VmHWM``), if it keeps one."""
    try:
        with open(_STATUS) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_high_water() -> bool:
    """Sets the high-water mark to the current RSS (Linux 4.0 on); False where that is refused."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class PeakSampler:
    """The peak RSS while the block runs, in ``peak`` after it.

    Where the kernel's high-water mark can be reset (``/proc/self/clear_refs``),
    it is reset on entry and read on exit: exact, and free.  A sampling
    thread is neither: waking every few milliseconds it takes the GIL from the
    code being measured, which costs Python-heavy code more than an export
    whose time is mostly in C++ (the overhead benchmark compares exactly
    those two), and it misses a spike shorter than its interval.
    Before a reset, every other open sampler takes the mark so far, so nested
    and concurrent samplers each still see their own peak.  Elsewhere, a
    thread samples every ``interval`` seconds.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = current_rss_bytes()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss_bytes())

    def __enter__(self) -> PeakSampler:
        with _high_water_lock:
            mark = _high_water_bytes()
            if mark is not None:
                for other in _open_samplers:
                    other.peak = max(other.peak, mark)
                if _reset_high_water():
                    _open_samplers.add(self)
                    return self
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            with _high_water_lock:
                _open_samplers.discard(self)
                self.peak = max(self.peak, _high_water_bytes() or 0)
        self.peak = max(self.peak, current_rss_bytes())


@dataclass
class PhaseMonitor:
    """Records how long each named phase took, and its peak RSS when enabled.

    ``log`` (the ``verbose`` option) receives a line as each phase starts, so
    a user watching a long export sees what it is doing, and one as it ends,
    with its time.

    Each phase's process CPU time is kept beside its wall time: with torch on
    one thread it does not move when another process competes for the CPU,
    so the benchmark gate and the speed objective judge it (docs/harness.md, "Timing").
    """

    track_memory: bool = False
    log: Callable[[str], None] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.log is not None:
            self.log(f"{name} ...")
        start, cpu_start = time.perf_counter(), time.process_time()
        sampler = PeakSampler() if self.track_memory else None
        with sampler if sampler is not None else contextlib.nullcontext():
            try:
                yield
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
                cpu = time.process_time() - cpu_start
                self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + cpu
        if sampler is not None:
            peak = sampler.peak / 2**20
            self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), peak)
        if self.log is not None:
            extra = f", peak RSS {self.peak_rss_mb[name]:.0f} MB" if sampler else ""
            self.log(f"{name}: {elapsed:.2f}s{extra}")
