"""Export time and memory per zoo model x strategy (the user-facing call).

The figures come from the matrix run in ``MatrixCache.setup_cache``: each
cell is ``export_model`` called ``bench.REPEAT`` times in a worker with torch on
one thread (``modelexport.harness.cells``), so a benchmark process here
reads a number and never imports torch.
"""

from .common import MatrixCache, cell_figure, models, strategies


class Export(MatrixCache):
    params = (models(), strategies())
    param_names = ["model", "strategy"]

    def track_export_cpu_seconds(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "cpu_seconds")

    track_export_cpu_seconds.unit = "s (process CPU, median of repeats)"

    def track_export_seconds(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "seconds")

    track_export_seconds.unit = "s (wall, median of repeats)"

    def track_peakmem_export(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "peak_mem_mb")

    track_peakmem_export.unit = "MB above the worker's baseline"
