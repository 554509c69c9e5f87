"""Export time and memory per zoo model x strategy (the user-facing call)."""

from modelexport.harness.bench import ExportCase

from .common import models, strategies, tier


class Export:
    params = (models(), strategies())
    param_names = ["model", "strategy"]
    number, repeat, rounds, warmup_time = 1, 3, 1, 0.0
    timeout = 1800

    def setup(self, model, strategy):
        self.case = ExportCase.prepare(model, strategy, tier())

    def teardown(self, model, strategy):
        case = getattr(self, "case", None)  # absent when setup skipped the cell
        if case is not None:
            case.close()

    def time_export(self, model, strategy):
        self.case.run()

    def peakmem_export(self, model, strategy):
        self.case.run()
