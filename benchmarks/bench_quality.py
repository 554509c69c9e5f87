"""Tag quality, size and parity per cell, and the selector over the tier."""

from modelexport.harness.bench import cell_figure, matrix_figures, selector_accuracy

from .common import models, strategies, tier


class Quality:
    params = (models(), strategies())
    param_names = ["model", "strategy"]
    timeout = 3600

    def setup_cache(self):
        return matrix_figures(tier(), models(), strategies())

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


class Selector:
    params = (["speed", "quality"],)
    param_names = ["objective"]
    timeout = 3600

    def setup_cache(self):
        return matrix_figures(tier(), models(), strategies())

    def track_selector_accuracy(self, cache, objective):
        return selector_accuracy(cache, objective)

    track_selector_accuracy.unit = "share of models"
