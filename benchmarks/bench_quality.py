"""Tag quality, size and parity per cell, and the selector over the tier (one cached run)."""

from .common import MatrixCache, cell_figure, models, selector_accuracy, selector_regret, strategies


class Quality(MatrixCache):
    params = (models(), strategies())
    param_names = ["model", "strategy"]

    def track_nodes(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "nodes")

    track_nodes.unit = "nodes"

    def track_file_size(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "file_bytes")

    track_file_size.unit = "bytes"

    def track_root_share(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "root")

    track_root_share.unit = "share of nodes"

    def track_anchored_accuracy(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "anchored_accuracy")

    track_anchored_accuracy.unit = "share of parameter nodes"

    def track_parity_max_abs(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "parity_max_abs")

    track_parity_max_abs.unit = "max abs error"

    def track_ort_latency(self, cache, model, strategy):
        return cell_figure(cache, model, strategy, "ort_latency_ms")

    track_ort_latency.unit = "ms (ONNX Runtime, warm median)"


class Selector(MatrixCache):
    params = (["speed", "quality", "runtime"], ["in-sample", "cross-validated"])
    param_names = ["objective", "validation"]

    def track_selector_accuracy(self, cache, objective, validation):
        return selector_accuracy(cache, objective, validation)

    track_selector_accuracy.unit = "share of models"

    def track_selector_regret(self, cache, objective, validation):
        return selector_regret(cache, objective, validation)

    track_selector_regret.unit = "s (speed), quality points, or latency share (runtime)"
