"""The file tools' structural passes (analyze, validate) on synthetic tagged graphs."""

from modelexport.benchmarking.synthetic import synthetic_case, tag_synthetic
from modelexport.tools.analyze import analyze
from modelexport.tools.module_view import module_view
from modelexport.tools.validate import validate_structure


class FileTools:
    params = ([10_000, 100_000],)
    param_names = ["nodes"]
    number, repeat, warmup_time = 1, 3, 0.0

    def setup(self, nodes):
        case = synthetic_case(nodes)
        tag_synthetic(case)
        self.view = module_view(case.graph)

    def time_analyze(self, nodes):
        analyze(self.view)

    def time_validate(self, nodes):
        validate_structure(self.view)
