"""Module-by-module differences between two exports of one model.

Two files made by different strategies, opsets or commits should describe
the same modules; where they don't, the difference is worth a look: a module
only one file has, or a module whose node count or op types changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from modelexport.tools.analyze import Analysis, ModuleStats

_LISTED_OPS = 6


@dataclass
class ModuleDifference:
    """One module whose figures differ between A and B."""

    path: str
    kind: str  # "only-a", "only-b", "changed"
    nodes_a: int
    nodes_b: int
    ops_delta: dict[str, int] = field(default_factory=dict)  # B minus A, nonzero only


@dataclass
class Comparison:
    nodes_a: int
    nodes_b: int
    modules_a: int
    modules_b: int
    same: int
    differences: list[ModuleDifference]

    @property
    def identical(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict:
        payload = asdict(self)
        payload["identical"] = self.identical
        return payload


def _ops_delta(a: Counter, b: Counter) -> dict[str, int]:
    return {op: b[op] - a[op] for op in sorted(set(a) | set(b)) if b[op] != a[op]}


def compare(a: Analysis, b: Analysis, depth: int | None = None) -> Comparison:
    """Compare per-module subtree figures; modules without nodes in both are ignored."""
    def rows(analysis: Analysis) -> dict[str, ModuleStats]:
        return {m.path: m for m in analysis.modules
                if m.nodes_total and (depth is None or m.depth <= depth)}

    left, right = rows(a), rows(b)
    differences, same = [], 0
    for path in list(left) + [p for p in right if p not in left]:
        if path not in right:
            differences.append(ModuleDifference(path, "only-a", left[path].nodes_total, 0))
        elif path not in left:
            differences.append(ModuleDifference(path, "only-b", 0, right[path].nodes_total))
        else:
            delta = _ops_delta(left[path].ops_total, right[path].ops_total)
            if delta:
                differences.append(ModuleDifference(path, "changed", left[path].nodes_total,
                                                    right[path].nodes_total, delta))
            else:
                same += 1
    return Comparison(a.nodes, b.nodes, len(left), len(right), same, differences)


def render_comparison(result: Comparison, name_a: str, name_b: str) -> str:
    lines = [f"A: {name_a} ({result.nodes_a} nodes, {result.modules_a} modules)",
             f"B: {name_b} ({result.nodes_b} nodes, {result.modules_b} modules)",
             f"{result.same} modules identical, {len(result.differences)} differ"]
    if result.differences:
        lines.append(f"{'module':<50} {'kind':<8} {'A':>6} {'B':>6}  op types (B - A)")
    for d in result.differences:
        ops = ", ".join(f"{op} {n:+d}" for op, n in list(d.ops_delta.items())[:_LISTED_OPS])
        more = " ..." if len(d.ops_delta) > _LISTED_OPS else ""
        lines.append(f"{(d.path or '(root)')[:50]:<50} {d.kind:<8} {d.nodes_a:>6} "
                     f"{d.nodes_b:>6}  {ops}{more}")
    return "\n".join(lines)
