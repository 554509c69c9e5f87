"""The tagging pass alone (resolve + project + write) on synthetic graphs."""

from modelexport.benchmarking.synthetic import synthetic_case, tag_synthetic


class TaggingPass:
    params = ([10_000, 100_000],)
    param_names = ["nodes"]
    number, repeat, warmup_time = 1, 5, 0.0

    def setup(self, nodes):
        self.case = synthetic_case(nodes)

    def time_tagging(self, nodes):
        tag_synthetic(self.case)
