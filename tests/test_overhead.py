"""The overhead benchmark measures the real export against the real plain one."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from benchmarks import bench_overhead
from modelexport.benchmarking import overhead


def test_the_asv_suite_lists_what_the_harness_measures():
    assert bench_overhead.OVERHEAD_MODELS == overhead.MODELS
    assert tuple(overhead.BASELINES) == bench_overhead.OVERHEAD_STRATEGIES


@pytest.mark.parametrize("strategy", list(overhead.BASELINES))
def test_each_strategy_is_measured_against_its_plain_export(strategy):
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    figures = overhead.measure(model.eval(), torch.randn(2, 8), strategy, rounds=2)
    assert figures.baseline == overhead.BASELINES[strategy]
    for samples in (figures.plain, figures.ours):
        assert len(samples.seconds) == len(samples.cpu_seconds) == 2
        assert min(samples.seconds) > 0 and min(samples.cpu_seconds) > 0
    assert figures.wall_ratio > 0 and figures.cpu_ratio > 0 and figures.least_cpu_ratio > 0
    assert figures.least_cpu_ratio == pytest.approx(
        min(figures.ours.cpu_seconds) / min(figures.plain.cpu_seconds))
    first_round = figures.ours.cpu_seconds[0] / figures.plain.cpu_seconds[0]
    assert figures.paired_cpu_ratios[0] == pytest.approx(first_round)
    interval = figures.paired_cpu_interval
    assert interval.low <= figures.paired_cpu_ratio <= interval.high


def test_the_median_interval_is_the_order_statistics_a_binomial_table_gives():
    """Known pairs: 9 values give the 2nd and 8th (96.1%), 15 the 4th and 12th (96.5%)."""
    nine = overhead.median_interval([float(v) for v in range(9, 0, -1)])
    assert (nine.low, nine.high) == (2.0, 8.0)
    assert nine.confidence == pytest.approx(1 - 2 * 10 / 512)
    fifteen = overhead.median_interval([float(v) for v in range(1, 16)])
    assert (fifteen.low, fifteen.high) == (4.0, 12.0)
    assert fifteen.confidence == pytest.approx(1 - 2 * (1 + 15 + 105 + 455) / 2 ** 15)
    three = overhead.median_interval([1.2, 0.9, 1.0])
    assert (three.low, three.high, three.confidence) == (0.9, 1.2, 0.75)
    with pytest.raises(ValueError):
        overhead.median_interval([])


def test_the_median_interval_encloses_the_median_as_often_as_it_claims():
    """Long-tailed draws, like a round that caught a slow spell: coverage at least the claim."""
    rng = np.random.default_rng(7)
    true_median = 1.0  # a lognormal(0, sigma)'s median is e**0
    for n in (6, 9, 15):
        intervals = [overhead.median_interval(list(rng.lognormal(0.0, 0.3, n)))
                     for _ in range(4000)]
        covered = np.mean([i.low <= true_median <= i.high for i in intervals])
        assert covered >= intervals[0].confidence - 0.015
        assert intervals[0].confidence >= 0.95


def test_a_slower_export_raises_the_wall_ratio_and_not_the_cpu_ratio(monkeypatch):
    """Planted: half a second asleep in every export, ten times the export itself."""
    import modelexport.api as api

    exported = api.export_model

    def sleepy(*args, **kwargs):
        time.sleep(0.5)
        return exported(*args, **kwargs)

    model = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    quick = overhead.measure(model, torch.randn(1, 8), "htp", rounds=2)
    monkeypatch.setattr(api, "export_model", sleepy)
    slow = overhead.measure(model, torch.randn(1, 8), "htp", rounds=2)
    assert slow.wall_ratio > quick.wall_ratio + 2
    # In seconds, not as a ratio: on a busy machine a 10 ms export's CPU time
    # varies by more than itself, but never by the half second that was slept.
    assert min(slow.ours.cpu_seconds) - min(quick.ours.cpu_seconds) < 0.25
    assert min(slow.ours.seconds) - min(quick.ours.seconds) > 0.45


def test_bad_arguments_are_one_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        overhead.main(["--strategies", "fx"])
    assert exit_info.value.code == 2
    assert "unknown strategies ['fx']" in capsys.readouterr().err


def test_the_suite_imports_benchmark_support_where_an_older_commit_has_it():
    """bench-history runs this suite on commits from before modelexport.benchmarking existed."""
    from benchmarks.common import commit_module

    assert commit_module("modelexport.no_such_module", "json").__name__ == "json"
    assert commit_module("modelexport.benchmarking.overhead",
                         "modelexport.harness.overhead") is overhead
    with pytest.raises(ModuleNotFoundError):
        commit_module("modelexport.no_such_module", "modelexport.nor_this_one")
