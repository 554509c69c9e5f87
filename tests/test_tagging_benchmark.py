"""pytest-benchmark of the tagging pass (resolve + project + write) on synthetic graphs.

In the default test run benchmarks are disabled and each case runs once as a
test; `make bench-micro` enables them and compares with the committed
baseline in benchmarks/pytest-baseline, failing on a median 25% slower.
"""

from __future__ import annotations

import pytest

from modelexport.benchmarking.synthetic import synthetic_case, tag_synthetic
from modelexport.tags import TagSource, read_tags


@pytest.mark.parametrize("nodes", [10_000, 100_000])
def test_tagging_pass(benchmark, nodes):
    case = synthetic_case(nodes)
    tagged = benchmark.pedantic(tag_synthetic, args=(case,), rounds=3, iterations=1)
    assert tagged == len(case.graph.graph.node) == nodes + nodes // 10
    sources = [t.source for t in read_tags(case.graph).values()]
    assert sources.count(TagSource.PROJECTED) == nodes // 10
    assert TagSource.ROOT not in sources
