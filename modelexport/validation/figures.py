"""The tag-quality figures of a report: coverage and the share of each tag source.

Every figure here can drop: coverage falls when a tag names no module, the
exact share when nodes are only inherited or projected onto a module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from modelexport.hierarchy import ModuleTree
from modelexport.tags import NodeTag, TagSource


@dataclass
class TagFigures:
    """Coverage and the share of each tag source over the top-level nodes."""

    nodes: int
    coverage: float
    exact: float
    inherited: float
    projected: float
    root: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def tag_figures(tags: Sequence[NodeTag | None], tree: ModuleTree) -> TagFigures:
    """Coverage = tags naming an existing module / all nodes; plus source shares."""
    total = len(tags)
    if total == 0:
        return TagFigures(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sources = Counter(t.source for t in tags if t is not None)
    covered = sum(1 for t in tags if t is not None and t.module in tree)
    return TagFigures(
        nodes=total,
        coverage=covered / total,
        exact=sources[TagSource.EXACT] / total,
        inherited=sources[TagSource.INHERITED] / total,
        projected=sources[TagSource.PROJECTED] / total,
        root=sources[TagSource.ROOT] / total,
    )
