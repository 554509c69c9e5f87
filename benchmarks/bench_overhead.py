"""modelexport's export over the plain ``torch.onnx.export`` it wraps, as ratios.

Each figure is measured in one process, the plain export and modelexport's
interleaved round by round (``modelexport.benchmarking.overhead``), so the
ratio holds on a noisy machine where an absolute time would not.  The
``tiny`` size shows the fixed cost per export; ``full`` (bert-base at
sequence 128, ResNet-50 at 224x224) is the size a user exports.
``MODELEXPORT_BENCH_OVERHEAD_TIERS`` (comma-separated, ``tiny`` unless set)
picks the sizes: the full size adds about 10 minutes to a record
(``make bench OVERHEAD_TIERS=tiny,full``).
"""

import math
import os

from .common import commit_module

# modelexport.benchmarking.overhead's MODELS and BASELINES, spelled out here because
# importing the package imports torch in every asv process (tests check they agree)
OVERHEAD_MODELS = ("bert", "resnet")
OVERHEAD_STRATEGIES = ("dynamo", "htp", "usage_based")

TIERS = [t for t in os.environ.get("MODELEXPORT_BENCH_OVERHEAD_TIERS", "tiny").split(",")
         if t]
# 9 paired rounds put the median's 96% interval between the 2nd and 8th ratio
ROUNDS = 9


class Overhead:
    params = (TIERS, list(OVERHEAD_MODELS), list(OVERHEAD_STRATEGIES))
    param_names = ["size", "model", "strategy"]
    timeout = 3600

    def setup_cache(self):
        overhead_table = commit_module("modelexport.benchmarking.overhead",
                                       "modelexport.harness.overhead").overhead_table
        table = overhead_table(tuple(TIERS), OVERHEAD_MODELS, OVERHEAD_STRATEGIES, ROUNDS)
        return {(o.tier, o.model, o.strategy): o.as_dict() for o in table}

    @staticmethod
    def _ratio(cache, size, model, strategy, figure):
        # .get: a commit from before a figure existed has none (bench-history)
        value = cache[(size, model, strategy)].get(figure)
        return math.nan if value is None else float(value)

    def track_overhead_wall(self, cache, size, model, strategy):
        return self._ratio(cache, size, model, strategy, "wall_ratio")

    track_overhead_wall.unit = "x plain torch.onnx.export (wall, median of rounds)"

    def track_overhead_cpu(self, cache, size, model, strategy):
        return self._ratio(cache, size, model, strategy, "cpu_ratio")

    track_overhead_cpu.unit = "x plain torch.onnx.export (process CPU)"

    def track_overhead_least_cpu(self, cache, size, model, strategy):
        return self._ratio(cache, size, model, strategy, "least_cpu_ratio")

    track_overhead_least_cpu.unit = "x plain torch.onnx.export (least process CPU of rounds)"

    def track_overhead_paired_cpu(self, cache, size, model, strategy):
        return self._ratio(cache, size, model, strategy, "paired_cpu_ratio")

    track_overhead_paired_cpu.unit = "x plain torch.onnx.export (median of per-round CPU ratios)"

    def track_overhead_paired_cpu_high(self, cache, size, model, strategy):
        """The interval's upper end: a limit holds where this is under it (median_interval)."""
        return self._ratio(cache, size, model, strategy, "paired_cpu_high")

    track_overhead_paired_cpu_high.unit = "x plain torch.onnx.export (upper confidence bound)"

    def track_overhead_peak_rss(self, cache, size, model, strategy):
        return self._ratio(cache, size, model, strategy, "peak_ratio")

    track_overhead_peak_rss.unit = "x plain torch.onnx.export (peak RSS above start)"
