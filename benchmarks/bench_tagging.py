"""The tagging pass alone (resolve + project + write) on synthetic graphs."""

from .common import commit_module

synthetic = commit_module("modelexport.benchmarking.synthetic", "modelexport.harness.synthetic")


class TaggingPass:
    params = ([10_000, 100_000],)
    param_names = ["nodes"]
    number, repeat, warmup_time = 1, 5, 0.0

    def setup(self, nodes):
        self.case = synthetic.synthetic_case(nodes)

    def time_tagging(self, nodes):
        synthetic.tag_synthetic(self.case)
