"""Per-module figures of an ONNX file: nodes, op types and parameter bytes.

Parameter bytes come from initializer shapes and types, so a file whose
weights live in external data is analysed without loading them.  An
initializer used by several modules (tied embeddings) is counted once, on the
common ancestor of its users: it is that module's weight in the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field

import onnx

from modelexport.hierarchy import ROOT, ancestors, common_ancestor
from modelexport.tools.module_view import ModuleView


@dataclass
class ModuleStats:
    """Figures of one module: its own nodes and those of its whole subtree."""

    path: str
    cls: str
    nodes_self: int = 0
    nodes_total: int = 0
    ops_self: Counter = field(default_factory=Counter)
    ops_total: Counter = field(default_factory=Counter)
    param_bytes_self: int = 0
    param_bytes_total: int = 0

    @property
    def depth(self) -> int:
        return 0 if self.path == ROOT else self.path.count(".") + 1

    def as_dict(self) -> dict:
        return {
            "path": self.path, "class": self.cls, "depth": self.depth,
            "nodes_self": self.nodes_self, "nodes_total": self.nodes_total,
            "param_bytes_self": self.param_bytes_self,
            "param_bytes_total": self.param_bytes_total,
            "ops_self": dict(self.ops_self.most_common()),
            "ops_total": dict(self.ops_total.most_common()),
        }


@dataclass
class Analysis:
    """The module table of one file, in tree order, plus file-level counts."""

    origin: str
    nodes: int
    untagged: int
    modules: list[ModuleStats]

    def as_dict(self) -> dict:
        return {"origin": self.origin, "nodes": self.nodes, "untagged": self.untagged,
                "modules": [m.as_dict() for m in self.modules]}


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Size from dims and element type; valid for inline and external data alike."""
    count = 1
    for dim in tensor.dims:
        count *= dim
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 0
    return count * itemsize


def initializer_modules(view: ModuleView) -> dict[str, str]:
    """Initializer name -> the common ancestor of the modules that consume it."""
    names = {init.name for init in view.model.graph.initializer}
    users: dict[str, list[str]] = {}
    for node, info in zip(view.model.graph.node, view.nodes):
        for name in node.input:
            if name in names and info.module is not None:
                users.setdefault(name, []).append(info.module)
    return {name: common_ancestor(paths) for name, paths in users.items()}


def analyze(view: ModuleView) -> Analysis:
    """Roll node counts, op types and parameter bytes up the module tree."""
    stats = {path: ModuleStats(path, view.classes.get(path, "")) for path in view.tree()}
    for node, info in zip(view.model.graph.node, view.nodes):
        if info.module is None:
            continue
        own = stats[info.module]
        own.nodes_self += 1
        own.ops_self[node.op_type] += 1
        for path in ancestors(info.module):
            stats[path].nodes_total += 1
            stats[path].ops_total[node.op_type] += 1
    owners = initializer_modules(view)
    for init in view.model.graph.initializer:
        owner = owners.get(init.name)
        if owner is None:
            continue
        size = tensor_bytes(init)
        stats[owner].param_bytes_self += size
        for path in ancestors(owner):
            stats[path].param_bytes_total += size
    untagged = sum(1 for info in view.nodes if info.module is None)
    return Analysis(view.origin, len(view.nodes), untagged, list(stats.values()))


def select(analysis: Analysis, text: str | None = None, depth: int | None = None,
           ) -> list[ModuleStats]:
    """Rows whose path or class contains ``text`` (any case), down to ``depth``."""
    needle = text.lower() if text else None
    return [
        m for m in analysis.modules
        if (depth is None or m.depth <= depth)
        and (needle is None or needle in m.path.lower() or needle in m.cls.lower())
    ]


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable: the loop returns at GiB")


def render_summary(analysis: Analysis, rows: list[ModuleStats], top_ops: int = 3,
                   full_paths: bool = False) -> str:
    """A table for the terminal: an indented tree, or full paths for a filtered subset."""
    lines = [f"{analysis.nodes} nodes, module information from {analysis.origin}"
             + (f", {analysis.untagged} untagged" if analysis.untagged else "")]
    header = f"{'module':<48} {'class':<28} {'self':>5} {'total':>6} {'params':>10}  top ops"
    lines += [header, "-" * len(header)]
    for m in rows:
        leaf = m.path if full_paths else "  " * m.depth + m.path.rsplit(".", 1)[-1]
        name = (leaf if m.path else "(root)")[-48:]
        cls = m.cls.rsplit(".", 1)[-1][:28]
        ops = ", ".join(f"{op} {n}" for op, n in m.ops_total.most_common(top_ops))
        lines.append(f"{name:<48} {cls:<28} {m.nodes_self:>5} {m.nodes_total:>6} "
                     f"{human_bytes(m.param_bytes_total):>10}  {ops}")
    return "\n".join(lines)


def render_json(analysis: Analysis, rows: list[ModuleStats]) -> str:
    payload = analysis.as_dict()
    payload["modules"] = [m.as_dict() for m in rows]
    return json.dumps(payload, indent=2)


def render_csv(rows: list[ModuleStats]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "class", "depth", "nodes_self", "nodes_total",
                     "param_bytes_self", "param_bytes_total", "ops_self"])
    for m in rows:
        writer.writerow([m.path, m.cls, m.depth, m.nodes_self, m.nodes_total,
                         m.param_bytes_self, m.param_bytes_total,
                         ";".join(f"{op}:{n}" for op, n in m.ops_self.most_common())])
    return out.getvalue()
