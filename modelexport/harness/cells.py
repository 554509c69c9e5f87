"""The matrix's cells: one zoo model exported with one strategy, measured.

A worker process (``workers.py``, or Dask's) runs one *model* at a time,
all of its cells (``run_model``): the model is built and analysed once, and
its strategies are timed turn about in one process, so their timings compare.
It only uses the public API and ``validation``, exactly as a user would, and
every outcome, including an exception, becomes a plain dict so it can cross
a process boundary.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from modelexport.analysis.analyzer import ModelAnalyzer
from modelexport.api import export_model
from modelexport.errors import InputMismatchError, StrategyFailedError, one_line
from modelexport.harness.latency import interleaved_latencies, runtime_fingerprint
from modelexport.inputs import ModelInputs, in_signature_order
from modelexport.monitoring import PeakSampler, current_rss_bytes
from modelexport.names import Objective
from modelexport.report import ExportReport
from modelexport.selection.selector import recommend_strategy
from modelexport.tags import TagSource, read_node_tag, read_tags

# A cell is ok only if each holds (docs: what "ok" means): the file passes the
# checker and loads in ONNX Runtime, runs, matches PyTorch at the example's
# shape and at a second one, and its tags cover every node and put each
# parameter-reading node on the parameter's owner.
# Entries exported with their cache add ``decode``: a greedy decode in ONNX
# Runtime alone gives PyTorch's tokens (``decoding``).
CONDITIONS = ("loads", "runs", "parity", "second_shape", "tags", "decode")
# Shown beside them, not required for ok: the file keeps every axis the export
# asked open (an axis the model's code fixes is closed, and the report says so).
AXES_KEPT = "axes_kept"
OK, EXPORT_FAILED, CHECK_FAILED, PARITY_FAILED, DECODE_FAILED, TIMEOUT, CRASHED = (
    "ok", "export-failed", "check-failed", "parity-failed", "decode-failed", "timeout",
    "crashed")
NOT_RUNNABLE = "not-runnable"
STATUSES = (OK, EXPORT_FAILED, CHECK_FAILED, PARITY_FAILED, DECODE_FAILED, TIMEOUT, CRASHED,
            NOT_RUNNABLE)
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


@dataclass(frozen=True)
class ModelSpec:
    """One model's cells: what a worker runs as a unit (see ``run_model``)."""

    model: str
    strategies: tuple[str, ...]
    tier: str = "tiny"
    repeat: int = 1
    keep_dir: str | None = None

    def without(self, strategies: set[str]) -> ModelSpec | None:
        """The same job for the strategies not in ``strategies``; None if none is left."""
        left = tuple(s for s in self.strategies if s not in strategies)
        return replace(self, strategies=left) if left else None


# Told which strategy's step starts next (None: a step all of the model's cells share).
StepListener = Callable[[str | None], None]


@dataclass
class CellResult:
    model: str
    strategy: str
    status: str
    error: str = ""
    seconds: float | None = None  # wall time: what a user waits
    seconds_all: list[float] = field(default_factory=list)
    # process CPU time: what the gate and the speed objective judge (docs/harness.md, "Timing")
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
    # what "ok" is made of, each on its own (CONDITIONS): True, False, or None
    # where it was not reached or does not apply (a static file has no second shape)
    conditions: dict[str, bool | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.strategy}"

    @property
    def judged_seconds(self) -> float | None:
        """The export time the speed objective judges: the least CPU time of the timed exports.

        The least, not the median: noise only adds CPU time, and on two busy
        cores one export in three read 40% over its neighbours (wide run of
        875ccf8: hf-flint's USAGE_BASED exports 0.60, 0.30, 0.32 s), which
        a median of 3 still lets through.  Results written before CPU time
        was recorded have only wall time.
        """
        if self.cpu_seconds_all:
            return min(self.cpu_seconds_all)
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
    return run_model(ModelSpec(spec.model, (spec.strategy,), spec.tier, spec.repeat,
                               spec.keep_dir))[0]


def run_model(spec: ModelSpec, on_step: StepListener | None = None) -> list[CellResult]:
    """Every cell of one model, in ``spec.strategies`` order; never raises.

    The model is built and analysed once (its features are the model's, not
    a cell's).  Each strategy's validated export gives the cell's file,
    figures and verdict, untimed.  The timed exports then run in rounds, one
    per strategy per round with the order rotated each round, and ONNX
    Runtime times the ``ok`` files turn about (``latency.interleaved_latencies``):
    a model's strategies are timed in one process, minutes apart at most,
    each beside the same mix of whatever else runs on the machine.  Timed
    one cell at a time on two workers, HTP's export usually ran beside the
    same model's dynamo export and read 40% slower than USAGE_BASED on
    hf-vit, though alone the two are even (docs/harness.md, "Timing").

    ``on_step(strategy)`` is called before each step (None: a step shared by
    the model's cells), so a supervisor can tell which cell hung or crashed.
    """
    step = on_step or (lambda strategy: None)
    shared_start = time.perf_counter()
    results = {s: CellResult(model=spec.model, strategy=s, status=NOT_RUNNABLE)
               for s in spec.strategies}
    step(None)
    built = _build(spec, results)
    if built is None:
        return list(results.values())
    entry, model, inputs = built
    _analyse(model, inputs, results)
    own = dict.fromkeys(spec.strategies, 0.0)
    shared = time.perf_counter() - shared_start
    with tempfile.TemporaryDirectory(prefix="zoo-model-") as scratch:
        folder = Path(spec.keep_dir) if spec.keep_dir else Path(scratch)
        exported: dict[str, tuple[ExportReport, Path]] = {}
        for strategy in spec.strategies:
            step(strategy)
            began = time.perf_counter()
            path = folder / f"{spec.model}-{strategy}.onnx"
            report = _validated_export(results[strategy], entry, model, inputs, path)
            if report is not None:
                exported[strategy] = (report, path)
            own[strategy] += time.perf_counter() - began
        for strategy, seconds in _timed_rounds(results, list(exported), model, inputs,
                                               Path(scratch) / "timed", spec.repeat,
                                               step, entry.export_options).items():
            own[strategy] += seconds
        began = time.perf_counter()
        step(None)
        if not entry.task:  # a with-past file's latency would need a cache to feed
            _record_latencies(results, model, inputs, {
                s: exported[s] for s in exported if results[s].status == OK})
        shared += time.perf_counter() - began
    for strategy, result in results.items():
        result.cell_seconds = own[strategy] + shared / len(results)
    return list(results.values())


def _build(spec: ModelSpec, results: dict[str, CellResult]) -> tuple[Any, Any, Any] | None:
    """The zoo entry, its model and inputs; None (every cell told why) when they fail."""
    from model_zoo import get_entry

    try:
        entry = get_entry(spec.model)
        category = entry.group
        model = entry.build(spec.tier)
        if entry.categorize is not None:
            category = entry.categorize(model)
        inputs = entry.inputs(model, spec.tier)
    except Exception as exc:
        for result in results.values():
            result.error = f"build: {type(exc).__name__}: {one_line(exc)}"
        return None
    for result in results.values():
        result.category, result.status = category, EXPORT_FAILED
    return entry, model, inputs


def _analyse(model: Any, inputs: Any, results: dict[str, CellResult]) -> None:
    """The analyzer's features and the selector's pick per objective, on every cell."""
    warnings: list[str] = []
    try:
        traits = ModelAnalyzer.analyze_model(model, inputs)  # once, for every objective
    except Exception as exc:  # recorded, so a probe that breaks a model shows in the run
        warnings.append(f"execution evidence not recorded: {type(exc).__name__}: "
                        f"{one_line(exc)}")
        traits = ModelAnalyzer.analyze_model(model)
    features = traits.features()
    recommendation = {
        objective.value: recommend_strategy(model, objective=objective,
                                            characteristics=traits).strategy.value
        for objective in Objective
    }
    for result in results.values():
        result.features, result.recommendation = dict(features), dict(recommendation)
        result.warnings += warnings


def _validated_export(result: CellResult, entry: Any, model: Any, inputs: Any,
                      path: Path) -> ExportReport | None:
    """The cell's file, figures and verdict from one validated export (untimed).

    Untimed because the first export of a model in a process also pays
    one-time costs (0.1 to 0.2 s on small wide models), which would land on
    whichever strategy ran first.  None when the export raised.
    """
    began = time.perf_counter()
    try:
        baseline = current_rss_bytes()
        with PeakSampler() as sampler:
            report = export_model(model, inputs, path, strategy=result.strategy,
                                  validate=True, atol=entry.atol, rtol=entry.rtol,
                                  **entry.export_options)
        result.peak_mem_mb = max(0.0, (sampler.peak - baseline) / 2**20)
    except (StrategyFailedError, InputMismatchError) as exc:
        result.error = one_line(exc)
        result.seconds = time.perf_counter() - began
        return None
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {one_line(exc)}"
        result.seconds = time.perf_counter() - began
        return None
    graph = onnx.load(str(path), load_external_data=False)  # read once, for both
    _record_figures(result, report, path, graph)
    if entry.task and result.status == OK:
        _record_decode(result, model, path, entry)
    if result.status == OK:  # the file whose latency is measured (latency.py)
        result.runtime_fingerprint = runtime_fingerprint(graph)
    return report


def cell_conditions(report: ExportReport) -> dict[str, bool | None]:
    """Each of ``CONDITIONS`` for one validated export (None: not reached, or not applicable)."""
    check, parity = report.check, report.parity or {}
    ran = bool(parity) and not parity.get("detail", "").startswith("ONNX Runtime failed")
    second = parity.get("second_shape")
    ownership_ok = not any("parameter-reading nodes" in f for f in check["failures"])
    return {
        "loads": check["loads"],
        "runs": ran if check["loads"] else None,
        "parity": (parity.get("passed", False) or second is not None) if ran else None,
        "second_shape": None if second is None else second["passed"],
        "tags": ownership_ok and report.coverage["coverage"] >= 1.0,
        AXES_KEPT: (not report.settings.get("closed_axes")
                    if report.settings.get("dynamic_axes") or report.settings.get("closed_axes")
                    else None),
    }


def _record_decode(result: CellResult, model: Any, path: Path, entry: Any) -> None:
    """The decode condition of a with-past cell: ONNX Runtime generates PyTorch's tokens."""
    from modelexport.harness.decoding import decode_check

    try:
        decoded = decode_check(model, path, entry.atol, entry.rtol)
    except Exception as exc:
        result.conditions["decode"] = False
        result.status, result.error = DECODE_FAILED, f"decode: {type(exc).__name__}: " \
            f"{one_line(exc)}"
        return
    result.conditions["decode"] = decoded.passed
    if decoded.detail:
        result.warnings.append(f"decode: {decoded.detail}")
    if not decoded.passed:
        result.status, result.error = DECODE_FAILED, f"decode: {decoded.detail}"


def _timed_rounds(results: dict[str, CellResult], strategies: list[str], model: Any,
                  inputs: Any, folder: Path, repeat: int,
                  step: StepListener, options: dict[str, Any]) -> dict[str, float]:
    """``repeat`` rounds of plain exports, one per strategy, the order rotated each round.

    Records each cell's median wall and CPU time; returns each strategy's
    seconds spent.  A plain export that raises after the validated one
    passed makes the cell ``export-failed``: the user's plain call failed.
    """
    spent = dict.fromkeys(strategies, 0.0)
    live = list(strategies)
    for index in range(max(1, repeat)):
        shift = index % len(live) if live else 0
        for strategy in live[shift:] + live[:shift]:
            step(strategy)
            result = results[strategy]
            gc.collect()  # no earlier export's garbage collected on this one's clock
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                export_model(model, inputs, folder / f"{strategy}.onnx", strategy=strategy,
                             validate=False, **options)
            except Exception as exc:
                result.status = EXPORT_FAILED
                result.error = f"timed export failed: {type(exc).__name__}: {one_line(exc)}"
                live.remove(strategy)
                continue
            finally:
                spent[strategy] += time.perf_counter() - start
            result.seconds_all.append(time.perf_counter() - start)
            result.cpu_seconds_all.append(time.process_time() - cpu_start)
    for strategy in live:
        result = results[strategy]
        result.seconds = statistics.median(result.seconds_all)
        result.cpu_seconds = statistics.median(result.cpu_seconds_all)
    return spent


def _record_latencies(results: dict[str, CellResult], model: Any, inputs: Any,
                      files: dict[str, tuple[ExportReport, Path]]) -> None:
    """ONNX Runtime latency of each ``ok`` file, timed turn about, fed by name."""
    if not files:
        return
    example = in_signature_order(model, ModelInputs.from_user(inputs))
    measured = interleaved_latencies({
        strategy: (path, example, report.settings["input_names"])
        for strategy, (report, path) in files.items()})
    for strategy, latency in measured.items():
        result = results[strategy]
        if isinstance(latency, Exception):  # an ok file that cannot be timed is a finding
            result.warnings.append(f"latency not measured: {type(latency).__name__}: "
                                   f"{one_line(latency)}")
            continue
        result.ort_latency_ms, result.ort_latency_runs = latency.median_ms, latency.runs


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
    result.conditions = cell_conditions(report)
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
