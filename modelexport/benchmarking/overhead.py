"""What an export through modelexport costs over the plain ``torch.onnx.export`` it wraps.

A user weighing modelexport against the exporter they would otherwise call
sees one figure: how much longer (and how much more memory) the same export
takes.  Each strategy is compared with the plain export it is built on:

``dynamo``       ``torch.onnx.export(dynamo=True, optimize=True)`` then ``save``;
``htp``,
``usage_based``  ``torch.onnx.export(dynamo=False)`` of the model called with
                 its keyword inputs (the few-line wrapper every user writes for
                 a Hugging Face model, whose forward TorchScript cannot trace
                 from positional inputs alone).

Both plain exports write modelexport's default opset and leave open the
axes modelexport's default leaves open (batch, and sequence for token
inputs: ``dynamic_shapes`` for DYNAMO, ``dynamic_axes`` for TorchScript), so
both sides write the same kind of file and neither pays for a conversion or
a symbolic shape the other skips; they run with autograd off, their fastest
(7% on ResNet-50's TorchScript export, 10 to 30% on bert-base's), as
modelexport's captures do too.

Both run in one process, interleaved round by round (which one goes first
alternates), after one warm-up export each, so drift and one-time costs
(imports, registrations) fall on neither side.  Files go to a RAM-backed
folder where there is one (``/dev/shm``): both sides write the same bytes,
and a disk's write-back throttling otherwise moves the plain export's time
by half from one round to the next.  The ratio is the median of
modelexport's times over the median of the plain ones; wall time, process
CPU time and peak RSS above the call's starting RSS are all kept, and the
least CPU time over the least (``least_cpu_ratio``).  Since the rounds are
paired, each round's own CPU ratio is kept too: their median
(``paired_cpu_ratio``) comes with a distribution-free confidence interval
(``paired_cpu_interval``), the figure to hold a limit against, because on a
shared VM a single median moves by more than the 10% a limit allows.  modelexport
runs with its defaults, so its self-check (checker, ONNX Runtime load, tag
ownership) and its validation (the file run against PyTorch at two shapes)
are part of what is measured: that is the export a user gets.

``python -m modelexport.benchmarking.overhead`` prints the table; the asv suite
tracks the ratios (``benchmarks/bench_overhead.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import inspect
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# the strategies issue 13 holds to a limit, with the plain export each wraps
BASELINES = {"dynamo": "dynamo", "htp": "torchscript", "usage_based": "torchscript"}
MODELS = ("bert", "resnet")
TIERS = ("tiny", "full")
# below this, a peak RSS increment is allocator noise, not the export's footprint
MIN_PEAK_MB = 16.0


@dataclass
class Samples:
    """One variant's measurements, one entry per round."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)


@dataclass
class Overhead:
    """modelexport against the plain export, for one model and strategy."""

    model: str
    tier: str
    strategy: str
    baseline: str
    plain: Samples
    ours: Samples

    @staticmethod
    def _ratio(ours: list[float], plain: list[float]) -> float:
        return statistics.median(ours) / statistics.median(plain)

    @property
    def wall_ratio(self) -> float:
        return self._ratio(self.ours.seconds, self.plain.seconds)

    @property
    def cpu_ratio(self) -> float:
        return self._ratio(self.ours.cpu_seconds, self.plain.cpu_seconds)

    @property
    def least_cpu_ratio(self) -> float:
        """The least CPU time of modelexport's rounds over the least of the plain ones.

        Noise on a shared machine only ever adds CPU time, so the least of
        the rounds is the steadiest estimate of what each export costs (the
        matrix judges export speed the same way).  On this 2-core VM the
        median ratio of the same code moved by up to 0.4 between runs of 3
        rounds (HTP on ResNet-50: 0.93x and 1.34x).
        """
        return min(self.ours.cpu_seconds) / min(self.plain.cpu_seconds)

    @property
    def peak_ratio(self) -> float:
        """NaN where the plain export's peak is too small to compare (a tiny model)."""
        if statistics.median(self.plain.peak_mb) < MIN_PEAK_MB:
            return math.nan
        return self._ratio(self.ours.peak_mb, self.plain.peak_mb)

    @property
    def paired_cpu_ratios(self) -> list[float]:
        """Each round's modelexport CPU time over the plain export's in the same round."""
        return [ours / plain for ours, plain in zip(self.ours.cpu_seconds,
                                                    self.plain.cpu_seconds, strict=True)]

    @property
    def paired_cpu_ratio(self) -> float:
        """The median of the per-round ratios.

        Both exports of a round run back to back, so a slow spell of the
        machine (on this 2-core VM the plain bert-base export's CPU time moves
        from 3.2 to 4.9 s between rounds; the slow rounds are those where the
        kernel zeroes the most fresh pages) tends to fall on both and divide
        out.
        """
        return statistics.median(self.paired_cpu_ratios)

    @property
    def paired_cpu_interval(self) -> MedianInterval:
        """Where the true median of the per-round ratios lies, at about 95% confidence."""
        return median_interval(self.paired_cpu_ratios)

    def as_dict(self) -> dict[str, Any]:
        interval = self.paired_cpu_interval
        return {**asdict(self), "wall_ratio": self.wall_ratio, "cpu_ratio": self.cpu_ratio,
                "least_cpu_ratio": self.least_cpu_ratio, "peak_ratio": self.peak_ratio,
                "paired_cpu_ratio": self.paired_cpu_ratio,
                "paired_cpu_low": interval.low, "paired_cpu_high": interval.high,
                "paired_cpu_confidence": interval.confidence}


@dataclass(frozen=True)
class MedianInterval:
    """Bounds on a median and the probability that they enclose it."""

    low: float
    high: float
    confidence: float


def median_interval(values: list[float], level: float = 0.95) -> MedianInterval:
    """The order-statistic confidence interval for the median of ``values``' distribution.

    It assumes nothing about the distribution (a round's ratio has a long
    tail when one export catches a slow spell): each value falls below the
    true median with probability one half, so the k-th smallest and k-th
    largest of n values enclose it unless k or more fall on one side, with
    probability ``1 - 2 P(Binomial(n, 1/2) < k)``.  The narrowest such pair
    reaching ``level`` is returned; with too few values for ``level`` (fewer
    than 6 for 95%), the whole range and the confidence it has.
    """
    if not values:
        raise ValueError("a median interval needs at least one value")
    ordered = sorted(values)
    n = len(ordered)
    below = 0.0  # P(Binomial(n, 1/2) < k), grown one k at a time
    chosen = MedianInterval(ordered[0], ordered[-1], 1 - 2 * 0.5 ** n)
    for k in range(1, (n + 1) // 2 + 1):
        below += math.comb(n, k - 1) / 2 ** n
        confidence = 1 - 2 * below
        if confidence < level:
            break
        chosen = MedianInterval(ordered[k - 1], ordered[n - k], confidence)
    return chosen


def _scratch() -> str | None:
    """A RAM-backed folder when the machine has one (module doc), else the default."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _plain_export(baseline: str, model: Any, inputs: Any, path: Path) -> None:
    """The export a user would write without modelexport (module doc)."""
    import torch

    from modelexport.api import DEFAULT_OPSET
    from modelexport.inputs import ModelInputs, dynamic_axes_for

    example = ModelInputs.from_user(inputs)
    positional_names = [f"input_{i}" for i in range(len(example.args))]
    names = list(example.kwargs)
    axes = dynamic_axes_for([*positional_names, *names],
                            [*example.args, *example.kwargs.values()], True, True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if baseline == "dynamo":
            def spec(name: str) -> dict | None:
                return {dim: torch.export.Dim.DYNAMIC for dim in axes.get(name, {})} or None

            # torch.export keys the spec by forward's parameter names
            parameters = list(inspect.signature(model.forward).parameters)
            shapes = {parameters[i]: spec(name) for i, name in enumerate(positional_names)}
            shapes.update({name: spec(name) for name in names})
            program = torch.onnx.export(model, example.args, kwargs=example.kwargs,
                                        dynamo=True, optimize=True, verbose=False,
                                        opset_version=DEFAULT_OPSET, dynamic_shapes=shapes)
            program.save(str(path))
            return

        class KeywordCall(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: Any) -> Any:
                positional = tensors[:len(example.args)]
                return self.model(*positional, **dict(zip(names, tensors[len(positional):])))

        torch.onnx.export(KeywordCall(), (*example.args, *example.kwargs.values()), str(path),
                          dynamo=False, opset_version=DEFAULT_OPSET,
                          input_names=[*positional_names, *names], dynamic_axes=axes)


def _ours(strategy: str, model: Any, inputs: Any, path: Path) -> None:
    from modelexport.api import export_model

    export_model(model, inputs, path, strategy=strategy)


def _release_free_memory() -> None:
    """Hand memory freed by earlier rounds back to the OS, so a peak above the start is real.

    Without it, glibc keeps freed blocks and the next export reuses them: its
    RSS barely grows, and the footprint reads as zero.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def _measured(into: Samples) -> Iterator[None]:
    from modelexport.monitoring import PeakSampler, current_rss_bytes

    _release_free_memory()
    start_rss = current_rss_bytes()
    start, cpu_start = time.perf_counter(), time.process_time()
    with PeakSampler() as sampler:
        yield
    into.seconds.append(time.perf_counter() - start)
    into.cpu_seconds.append(time.process_time() - cpu_start)
    into.peak_mb.append(max(sampler.peak - start_rss, 0) / 2**20)


def measure(model: Any, inputs: Any, strategy: str, rounds: int = 3, *, name: str = "",
            tier: str = "") -> Overhead:
    """Interleaved plain and modelexport exports of ``model`` (module doc)."""
    baseline = BASELINES[strategy]
    result = Overhead(name, tier, strategy, baseline, Samples(), Samples())
    with tempfile.TemporaryDirectory(prefix="modelexport-overhead-", dir=_scratch()) as folder:
        plain_path, ours_path = Path(folder) / "plain.onnx", Path(folder) / "ours.onnx"
        variants: list[tuple[Callable[[], None], Samples]] = [
            (lambda: _plain_export(baseline, model, inputs, plain_path), result.plain),
            (lambda: _ours(strategy, model, inputs, ours_path), result.ours),
        ]
        for run, _ in variants:  # warm-up, not counted
            run()
        for index in range(rounds):
            for run, samples in variants if index % 2 == 0 else variants[::-1]:
                with _measured(samples):
                    run()
    return result


def overhead_table(tiers: tuple[str, ...] = TIERS, models: tuple[str, ...] = MODELS,
                   strategies: tuple[str, ...] = tuple(BASELINES), rounds: int = 3,
                   log: Callable[[str], None] | None = None) -> list[Overhead]:
    """Every (tier, zoo model, strategy) measured, torch on one thread as in the matrix."""
    from model_zoo.registry import get_entry
    from modelexport.harness.workers import prepare_for_cells

    prepare_for_cells([])
    logging.disable(logging.WARNING)  # torch's registration chatter, once per export
    table = []
    for tier in tiers:
        for model_name in models:
            entry = get_entry(model_name)
            model = entry.build(tier).eval()
            inputs = entry.inputs(model, tier)
            for strategy in strategies:
                figures = measure(model, inputs, strategy, rounds, name=model_name, tier=tier)
                if log is not None:
                    log(_row(figures))
                table.append(figures)
    return table


def _row(figures: Overhead) -> str:
    plain, ours = figures.plain, figures.ours
    interval = figures.paired_cpu_interval
    return (f"{figures.tier:5} {figures.model:8} {figures.strategy:12} "
            f"plain {statistics.median(plain.seconds):7.2f}s  "
            f"ours {statistics.median(ours.seconds):7.2f}s  "
            f"wall {figures.wall_ratio:5.2f}x  cpu {figures.cpu_ratio:5.2f}x  "
            f"least cpu {figures.least_cpu_ratio:5.2f}x  "
            f"paired cpu {figures.paired_cpu_ratio:5.2f}x "
            f"[{interval.low:.2f}, {interval.high:.2f} @{interval.confidence:.0%}]  "
            f"peak RSS {statistics.median(plain.peak_mb):6.0f} -> "
            f"{statistics.median(ours.peak_mb):6.0f} MB ({figures.peak_ratio:4.2f}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelexport.benchmarking.overhead",
        description="modelexport's export time and memory over plain torch.onnx.export")
    parser.add_argument("--tiers", default=",".join(TIERS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--strategies", default=",".join(BASELINES))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    strategies = tuple(args.strategies.split(","))
    unknown = sorted(set(strategies) - set(BASELINES))
    if unknown or args.rounds < 1:
        parser.error(f"unknown strategies {unknown} (known: {', '.join(BASELINES)})"
                     if unknown else "--rounds must be at least 1")
    overhead_table(tuple(args.tiers.split(",")), tuple(args.models.split(",")), strategies,
                   args.rounds, log=print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
