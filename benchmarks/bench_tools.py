"""The file tools' structural passes (analyze, validate) on synthetic tagged graphs."""

from modelexport.tools.analyze import analyze
from modelexport.tools.module_view import module_view

from .common import commit_module

synthetic = commit_module("modelexport.benchmarking.synthetic", "modelexport.harness.synthetic")
structure = commit_module("modelexport.validation.structure", "modelexport.tools.validate")


class FileTools:
    params = ([10_000, 100_000],)
    param_names = ["nodes"]
    number, repeat, warmup_time = 1, 3, 0.0

    def setup(self, nodes):
        case = synthetic.synthetic_case(nodes)
        synthetic.tag_synthetic(case)
        self.view = module_view(case.graph)

    def time_analyze(self, nodes):
        analyze(self.view)

    def time_validate(self, nodes):
        structure.validate_structure(self.view)
