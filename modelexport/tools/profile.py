"""Where ONNX Runtime spends its time, rolled up the module tree.

ONNX Runtime profiles the graph it actually runs: after its own optimisation,
where a fused node stands for several original ones.  The session also saves
that optimised graph, which is re-tagged from the original
(:mod:`modelexport.tools.retag`): a fused node lands on the common ancestor
of the nodes it replaced.  Kernel times of the measured runs (warm-up runs
excluded) are then summed per module: *self* for the module's own nodes,
*total* for its subtree.

Kernels are only part of a run: on a small model the sequential executor's
work between kernels (binding inputs, allocating outputs) is as large as the
kernels themselves.  Each node's *wall* time is therefore counted from the end
of the kernel before it (the run's start for the first), so the executor's
time lands on the node it prepared and the wall times of a depth's modules add
up to the mean ``model_run`` time, less only what follows the last kernel
(handing the outputs back).  *share* is a module's wall time over the run's.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data

from modelexport.hierarchy import ROOT, ancestors
from modelexport.onnx_runtime.sessions import ORT_LEVELS, open_session, ort_call, session_options
from modelexport.tools.module_functions import inline_module_functions
from modelexport.tools.module_view import ModuleView, module_view
from modelexport.tools.retag import RetagResult, retag

LEVELS = ORT_LEVELS
_KERNEL_SUFFIX = "_kernel_time"


@dataclass
class ModuleTime:
    path: str
    cls: str
    self_ms: float = 0.0
    total_ms: float = 0.0
    self_wall_ms: float = 0.0
    total_wall_ms: float = 0.0
    kernels: int = 0

    @property
    def depth(self) -> int:
        return 0 if self.path == ROOT else self.path.count(".") + 1


@dataclass
class Profile:
    """Mean per-run times of one profiled session."""

    runs: int
    run_ms: float
    kernel_ms: float
    optimized_nodes: int
    original_nodes: int
    level: str
    modules: list[ModuleTime] = field(default_factory=list)
    retag: RetagResult | None = None

    def as_dict(self) -> dict:
        return {
            "runs": self.runs, "run_ms": self.run_ms, "kernel_ms": self.kernel_ms,
            "optimized_nodes": self.optimized_nodes, "original_nodes": self.original_nodes,
            "level": self.level, "retag": self.retag.as_dict() if self.retag else None,
            "modules": [{"path": m.path, "class": m.cls, "self_ms": m.self_ms,
                         "total_ms": m.total_ms, "self_wall_ms": m.self_wall_ms,
                         "total_wall_ms": m.total_wall_ms, "share": self.share(m),
                         "kernels": m.kernels}
                        for m in self.modules],
        }

    def share(self, module: ModuleTime) -> float:
        return module.total_wall_ms / self.run_ms if self.run_ms else 0.0

    def at_depth(self, depth: int) -> list[tuple[str, ModuleTime, float]]:
        """The run cut into disjoint parts at ``depth``: each module at that depth with its
        subtree's wall time, and each shallower module with its own nodes' wall time.

        The parts' times add up to every kernel's wall time, so their sum against
        ``run_ms`` says how much of the run the profile accounts for."""
        parts = []
        for m in self.modules:
            if m.depth == depth and m.total_wall_ms > 0:
                parts.append((m.path or "(root)", m, m.total_wall_ms))
            elif m.depth < depth and m.self_wall_ms > 0:
                label = f"{m.path or '(root)'} (own nodes)" if m.total_wall_ms > m.self_wall_ms \
                    else m.path or "(root)"
                parts.append((label, m, m.self_wall_ms))
        return parts

    def accounted_ms(self, depth: int) -> float:
        return sum(ms for _, _, ms in self.at_depth(depth))


def _measured_events(events: list[dict], runs: int) -> tuple[list[dict], list[float]]:
    """Kernel events inside the last ``runs`` model_run windows, each with its ``wall``
    µs (from the previous kernel's end in its run), and those runs' µs."""
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[-runs:]
    if not windows:
        return [], []
    kernels = sorted((e for e in events if e.get("cat") == "Node"
                      and e.get("name", "").endswith(_KERNEL_SUFFIX)
                      and e["ts"] >= windows[0][0]), key=lambda e: e["ts"])
    measured = []
    for begin, end in windows:
        previous_end = begin
        for event in kernels:
            if begin <= event["ts"] <= end:
                finish = event["ts"] + event["dur"]
                measured.append({**event, "wall": max(finish - previous_end, event["dur"])})
                previous_end = max(previous_end, finish)
    return measured, [end - begin for begin, end in windows]


def profile_model(view: ModuleView, model_path: Path, feeds: dict[str, np.ndarray],
                  warmup: int = 3, repeats: int = 20, level: str = "all",
                  threads: int = 0) -> Profile:
    """Profile ``model_path`` (the file of ``view``) and attribute kernel time to modules.

    A file with module functions is profiled inlined as the view reads it (ONNX
    Runtime inlines them anyway), so that each kernel's node name is one the view
    knows; ONNX Runtime's own inlined names do not say which call a node came from."""
    source: Path | bytes = model_path
    if view.inlined:  # the view's graph holds its weights unless they live beside the file
        external = any(uses_external_data(t) for t in view.model.graph.initializer)
        flat = inline_module_functions(onnx.load(str(model_path))) if external else view.model
        source = flat.SerializeToString()
    with tempfile.TemporaryDirectory(prefix="modelexport-profile-") as scratch:
        options = session_options(level=level, threads=threads, spinning=True,
                                  profile_prefix=Path(scratch) / "profile",
                                  optimized_path=Path(scratch) / "optimized.onnx")
        session = ort_call("load the model", lambda: open_session(source, options))
        for _ in range(warmup + repeats):
            ort_call("run the model on generated inputs (set symbolic sizes with --dim)",
                     lambda: session.run(None, feeds))
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
        optimized = onnx.load(str(Path(scratch) / "optimized.onnx"), load_external_data=False)
    retagged = retag(optimized, view)
    module_of = {node.name: info.module for node, info in
                 zip(optimized.graph.node, module_view(optimized).nodes)}
    kernels, run_us = _measured_events(events, repeats)
    tree = view.tree()
    times = {path: ModuleTime(path, view.classes.get(path, "")) for path in tree}
    for event in kernels:
        module = module_of.get(event["name"][:-len(_KERNEL_SUFFIX)]) or ROOT
        if module not in times:
            times[module] = ModuleTime(module, "")
        ms = event["dur"] / 1000.0 / repeats
        wall = event["wall"] / 1000.0 / repeats
        times[module].self_ms += ms
        times[module].self_wall_ms += wall
        times[module].kernels += 1
        for path in ancestors(module):
            time = times.setdefault(path, ModuleTime(path, ""))
            time.total_ms += ms
            time.total_wall_ms += wall
    for time in times.values():
        time.kernels = round(time.kernels / repeats)
    known = set(tree)
    ordered = [times[p] for p in tree] + [t for p, t in times.items() if p not in known]
    return Profile(
        runs=len(run_us), run_ms=float(np.mean(run_us)) / 1000.0 if run_us else 0.0,
        kernel_ms=sum(e["dur"] for e in kernels) / 1000.0 / max(repeats, 1),
        optimized_nodes=len(optimized.graph.node), original_nodes=len(view.nodes),
        level=level, modules=ordered, retag=retagged)


def select_rows(result: Profile, depth: int | None, top: int | None) -> list[ModuleTime]:
    rows = [m for m in result.modules if m.total_ms > 0 and (depth is None or m.depth <= depth)]
    if top:
        keep = {id(m) for m in sorted(rows, key=lambda m: -m.total_ms)[:top]}
        rows = [m for m in rows if id(m) in keep]
    return rows


def render_table(result: Profile, rows: list[ModuleTime], depth: int | None = None) -> str:
    lines = [f"{result.runs} runs (level {result.level}): mean run {result.run_ms:.3f} ms, "
             f"kernels {result.kernel_ms:.3f} ms; {result.original_nodes} nodes -> "
             f"{result.optimized_nodes} after ONNX Runtime's optimisation"]
    header = (f"{'module':<46} {'class':<22} {'self ms':>8} {'total ms':>8} {'wall ms':>8} "
              f"{'share':>6}")
    lines += [header, "-" * len(header)]
    for m in rows:
        name = ("  " * m.depth + (m.path.rsplit(".", 1)[-1] if m.path else "(root)"))[:46]
        lines.append(f"{name:<46} {m.cls.rsplit('.', 1)[-1][:22]:<22} {m.self_ms:>8.3f} "
                     f"{m.total_ms:>8.3f} {m.total_wall_ms:>8.3f} {result.share(m):>6.1%}")
    cut = 1 if depth is None else depth
    accounted = result.accounted_ms(cut)
    share = accounted / result.run_ms if result.run_ms else 0.0
    lines.append(f"the {len(result.at_depth(cut))} disjoint parts at depth {cut} hold "
                 f"{accounted:.3f} ms of the mean run's {result.run_ms:.3f} ms ({share:.1%}); "
                 "wall ms counts each kernel with the executor's time before it")
    return "\n".join(lines)


def render_json(result: Profile, rows: list[ModuleTime], depth: int | None = None) -> str:
    payload = result.as_dict()
    keep = {m.path for m in rows}
    payload["modules"] = [m for m in payload["modules"] if m["path"] in keep]
    cut = 1 if depth is None else depth
    payload["parts"] = {"depth": cut, "accounted_ms": result.accounted_ms(cut),
                        "rows": [{"label": label, "path": m.path, "wall_ms": ms}
                                 for label, m, ms in result.at_depth(cut)]}
    return json.dumps(payload, indent=2)


def render_csv(result: Profile, rows: list[ModuleTime], depth: int | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "class", "depth", "self_ms", "total_ms", "self_wall_ms",
                     "total_wall_ms", "share", "kernels"])
    for m in rows:
        writer.writerow([m.path, m.cls, m.depth, f"{m.self_ms:.6f}", f"{m.total_ms:.6f}",
                         f"{m.self_wall_ms:.6f}", f"{m.total_wall_ms:.6f}",
                         f"{result.share(m):.6f}", m.kernels])
    return out.getvalue()
