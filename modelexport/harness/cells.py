"""One cell of the matrix: one zoo model exported with one strategy, measured.

This runs inside a worker process (see ``workers.py``).  It only uses the
public API and ``validation``, exactly as a user would: build the zoo model, export
it ``repeat`` times (the first with validation), and record the verdict and
the figures.  Every outcome, including an exception, becomes a plain dict so
it can cross a process boundary.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from modelexport.analysis.analyzer import ModelAnalyzer
from modelexport.api import export_model
from modelexport.errors import InputMismatchError, StrategyFailedError, one_line
from modelexport.harness.latency import ort_latency, runtime_fingerprint
from modelexport.inputs import ModelInputs, in_signature_order
from modelexport.monitoring import PeakSampler, current_rss_bytes
from modelexport.names import Objective
from modelexport.report import ExportReport
from modelexport.selection.selector import recommend_strategy
from modelexport.tags import TagSource, read_node_tag, read_tags

OK, EXPORT_FAILED, CHECK_FAILED, PARITY_FAILED, TIMEOUT, CRASHED, NOT_RUNNABLE = (
    "ok", "export-failed", "check-failed", "parity-failed", "timeout", "crashed",
    "not-runnable")
STATUSES = (OK, EXPORT_FAILED, CHECK_FAILED, PARITY_FAILED, TIMEOUT, CRASHED, NOT_RUNNABLE)
# The pseudo-strategy that lets the exporter choose, as a user's default call does.
AUTO = "auto"


@dataclass(frozen=True)
class CellSpec:
    model: str
    strategy: str
    tier: str = "tiny"
    repeat: int = 1
    keep_dir: str | None = None  # where to keep the ONNX files; None = discard

    @property
    def key(self) -> str:
        return f"{self.model}/{self.strategy}"


@dataclass
class CellResult:
    model: str
    strategy: str
    status: str
    error: str = ""
    seconds: float | None = None  # wall time: what a user waits
    seconds_all: list[float] = field(default_factory=list)
    # process CPU time: what the gate and the speed objective judge (README, "Timing")
    cpu_seconds: float | None = None
    cpu_seconds_all: list[float] = field(default_factory=list)
    peak_mem_mb: float | None = None
    nodes: int | None = None
    file_bytes: int | None = None
    coverage: float | None = None
    exact: float | None = None
    inherited: float | None = None
    projected: float | None = None
    root: float | None = None
    # exact + inherited among operator nodes (data nodes left out: see operator_known_share)
    operator_known: float | None = None
    anchored_accuracy: float | None = None
    anchored_nodes: int | None = None
    parity_max_abs: float | None = None
    parity_max_rel: float | None = None
    parity_atol: float | None = None
    parity_rtol: float | None = None
    module_ops: dict[str, dict[str, int]] = field(default_factory=dict)
    recommendation: dict[str, str] = field(default_factory=dict)
    # the analyzer's features of the model (the selector's fit reads them)
    features: dict[str, bool | float] = field(default_factory=dict)
    cell_seconds: float | None = None  # the whole cell, build to latency: its cost to run
    ort_latency_ms: float | None = None  # warm median, fixed session options (latency.py)
    ort_latency_runs: int | None = None
    runtime_fingerprint: str | None = None  # equal: the same graph to run (latency.py)
    reference_agreement: float | None = None
    final_strategy: str | None = None  # which strategy wrote the file (differs under auto)
    category: str = ""  # the entry's scoreboard family
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.strategy}"

    @property
    def judged_seconds(self) -> float | None:
        """The export time the speed objective and the gate judge: process CPU time.

        Results written before CPU time was recorded have only wall time.
        """
        return self.cpu_seconds if self.cpu_seconds is not None else self.seconds

    @property
    def quality(self) -> float | None:
        """exact + inherited share: how much the strategy itself knew."""
        if self.exact is None or self.inherited is None:
            return None
        return self.exact + self.inherited

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def holds_data_only(node: onnx.NodeProto, initializers: set[str]) -> bool:
    """A node that computes nothing: a ``Constant``, or an ``Identity`` of an initializer.

    Whether a constant is a node or an initializer is the exporter's choice:
    torch's dynamo exporter writes constants as initializers, its TorchScript
    exporter as ``Constant`` nodes (and deduplicated weights as ``Identity``
    nodes), most of them without a scope.
    """
    return node.op_type == "Constant" or (node.op_type == "Identity"
                                          and node.input[0] in initializers)


def operator_known_share(graph: onnx.ModelProto) -> float | None:
    """Share of operator nodes whose tag is exact or inherited (data-only nodes left out).

    The share over *all* nodes ranks file layouts as much as tags: on a
    tiny LongT5, HTP's file has 554 ``Constant`` nodes, 65 of them placed by
    projection, and DYNAMO's has none, since it keeps them as initializers;
    over operator nodes both are fully known.  None for a graph with no
    operator node.
    """
    initializers = {i.name for i in graph.graph.initializer}
    operators = [n for n in graph.graph.node if not holds_data_only(n, initializers)]
    if not operators:
        return None
    known = sum(1 for n in operators if (tag := read_node_tag(n)) is not None
                and tag.source in (TagSource.EXACT, TagSource.INHERITED))
    return known / len(operators)


def module_op_counts(graph: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """Per module, how many nodes of each op type it holds (for reference agreement)."""
    tags = read_tags(graph)
    counts: dict[str, Counter] = {}
    for node in graph.graph.node:
        tag = tags[node.name]
        module = tag.module if tag is not None else ""
        counts.setdefault(module, Counter())[node.op_type] += 1
    return {module: dict(c) for module, c in counts.items()}


def run_cell(spec: CellSpec) -> CellResult:
    """Build, export, validate and measure one cell; never raises."""
    started = time.perf_counter()
    result = _measured_cell(spec)
    result.cell_seconds = time.perf_counter() - started
    return result


def _measured_cell(spec: CellSpec) -> CellResult:
    from model_zoo import get_entry

    result = CellResult(model=spec.model, strategy=spec.strategy, status=NOT_RUNNABLE)
    try:
        entry = get_entry(spec.model)
        result.category = entry.group
        model = entry.build(spec.tier)
        if entry.categorize is not None:
            result.category = entry.categorize(model)
        inputs = entry.inputs(model, spec.tier)
    except Exception as exc:
        result.error = f"build: {type(exc).__name__}: {one_line(exc)}"
        return result
    result.status = EXPORT_FAILED
    try:
        traits = ModelAnalyzer.analyze_model(model, inputs)  # once, for every objective
    except Exception as exc:  # recorded, so a probe that breaks a model shows in the run
        result.warnings.append(f"execution evidence not recorded: {type(exc).__name__}: "
                               f"{one_line(exc)}")
        traits = ModelAnalyzer.analyze_model(model)
    result.features = traits.features()
    result.recommendation = {
        objective.value: recommend_strategy(model, objective=objective,
                                            characteristics=traits).strategy.value
        for objective in Objective
    }
    with tempfile.TemporaryDirectory(prefix="zoo-cell-") as scratch:
        folder = Path(spec.keep_dir) if spec.keep_dir else Path(scratch)
        path = folder / f"{spec.model}-{spec.strategy}.onnx"
        times: list[float] = []
        cpu_times: list[float] = []
        cell_start = time.perf_counter()
        try:
            baseline = current_rss_bytes()
            with PeakSampler() as sampler:
                # The validated export gives the figures and is not timed: the
                # first export of a model in a process also pays one-time costs
                # (0.1 to 0.2 s on small wide models), which would land on
                # whichever strategy this worker happened to run first.
                first = export_model(model, inputs, path, strategy=spec.strategy,
                                     validate=True, atol=entry.atol, rtol=entry.rtol)
                timed = Path(scratch) / "timed" / path.name  # the kept file stays the validated one
                for _ in range(max(1, spec.repeat)):
                    gc.collect()  # no earlier attempt's garbage collected on this one's clock
                    start, cpu_start = time.perf_counter(), time.process_time()
                    export_model(model, inputs, timed, strategy=spec.strategy, validate=False)
                    times.append(time.perf_counter() - start)
                    cpu_times.append(time.process_time() - cpu_start)
            result.peak_mem_mb = max(0.0, (sampler.peak - baseline) / 2**20)
        except (StrategyFailedError, InputMismatchError) as exc:
            result.error = one_line(exc)
            result.seconds = time.perf_counter() - cell_start
            return result
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {one_line(exc)}"
            result.seconds = time.perf_counter() - cell_start
            return result
        result.seconds_all, result.cpu_seconds_all = times, cpu_times
        result.seconds = statistics.median(times)
        result.cpu_seconds = statistics.median(cpu_times)
        graph = onnx.load(str(path), load_external_data=False)  # read once, for both
        _record_figures(result, first, path, graph)
        if result.status == OK:
            _record_latency(result, model, inputs, first, path, graph)
    return result


def _record_latency(result: CellResult, model: Any, inputs: Any, report: ExportReport,
                    path: Path, graph: onnx.ModelProto) -> None:
    """ONNX Runtime latency of the file on the export's own inputs, fed by name."""
    example = in_signature_order(model, ModelInputs.from_user(inputs))
    try:
        latency = ort_latency(path, example, report.settings["input_names"])
    except Exception as exc:  # an ok file that cannot be timed is a finding, not a crash
        result.warnings.append(f"latency not measured: {type(exc).__name__}: {one_line(exc)}")
        return
    result.ort_latency_ms, result.ort_latency_runs = latency.median_ms, latency.runs
    result.runtime_fingerprint = runtime_fingerprint(graph)


def _record_figures(result: CellResult, report: ExportReport, path: Path,
                    graph: onnx.ModelProto) -> None:
    """Figures of the first (validated) export, and its verdict.

    ``ok`` needs all of: the self-check (file loads, inputs bound by name,
    parameter-reading nodes on their owners), full coverage, and parity.
    """
    coverage = report.coverage
    result.final_strategy = report.summary.final_strategy
    result.warnings += list(report.warnings)
    result.nodes = report.graph["nodes"]
    result.file_bytes = path.stat().st_size
    for key in ("coverage", "exact", "inherited", "projected", "root"):
        setattr(result, key, coverage[key])
    result.operator_known = operator_known_share(graph)
    result.anchored_accuracy = report.anchored["accuracy"]
    result.anchored_nodes = report.anchored["anchored_nodes"]
    parity = report.parity
    result.parity_max_abs, result.parity_max_rel = parity["max_abs"], parity["max_rel"]
    result.parity_atol, result.parity_rtol = parity["atol"], parity["rtol"]
    result.module_ops = module_op_counts(graph)
    check = report.check
    if not check["passed"]:
        result.status = CHECK_FAILED
        result.error = "self-check: " + "; ".join(check["failures"])
    elif coverage["coverage"] < 1.0:
        result.status = CHECK_FAILED
        result.error = f"coverage {coverage['coverage']:.3f} < 1"
    elif not parity["passed"]:
        result.status = PARITY_FAILED
        result.error = f"parity: {parity['detail']} (max abs {parity['max_abs']:.2e})"
    else:
        result.status = OK
