"""The public API: ``export_model`` and ``UnifiedExporter``.

One export runs these phases, each timed (and memory-sampled with
monitoring on):

``probe``     one eager forward with hooks: checks the inputs fit and records
              which module instances ran and how often;
``export``    strategies in order until one succeeds (AUTO tries several);
``tag``       projection of scope-less nodes, call indices, tags written;
``figures``   coverage and source shares (and, with validation, anchored
              accuracy: it hashes every weight, about 1.5 s on bert-base);
``save``      ONNX, external data and sidecar written atomically;
``validate``  (optional) ONNX checker and ONNX Runtime parity on a fresh input.
"""

from __future__ import annotations

import os
import time
from enum import Enum
from typing import Any

import torch

from modelexport import __version__
from modelexport.errors import StrategyFailedError
from modelexport.hierarchy import ModuleTree
from modelexport.inputs import ModelInputs, dynamic_axes_for, graph_input_names, run_checked
from modelexport.markdown_report import render_markdown
from modelexport.monitoring import PhaseMonitor
from modelexport.outputs import (
    PROTOBUF_LIMIT_BYTES,
    StagedOutput,
    external_data_path_for,
    model_bytes,
    report_path_for,
    sidecar_path_for,
)
from modelexport.report import Attempt, ExportReport, Outputs, Summary
from modelexport.selection import recommend_strategy
from modelexport.sidecar import build_sidecar
from modelexport.strategies import ExportRequest, StrategyResult, get_strategy
from modelexport.tagging import complete_tags, paused_gc
from modelexport.tags import strip_tags, write_namespaces, write_tags
from modelexport.verify import anchored_accuracy, check_model_file, check_parity, tag_figures

DEFAULT_OPSET = 18


class ExportStrategy(str, Enum):
    """Strategies selectable by name; AUTO tries them in order until one works."""

    AUTO = "auto"
    DYNAMO = "dynamo"
    HTP = "htp"
    USAGE_BASED = "usage_based"
    FX = "fx"


def _strategy_name(strategy: ExportStrategy | str) -> str:
    name = strategy.value if isinstance(strategy, ExportStrategy) else str(strategy).lower()
    if name != ExportStrategy.AUTO.value:
        get_strategy(name)  # raises a clear error for unknown names
    return name


class UnifiedExporter:
    """Exports a model with a chosen strategy (or AUTO) and reports how it went.

    ``enable_optimizations`` turns on the exporters' own graph optimisation
    (the onnxscript optimizer for DYNAMO, constant folding for the TorchScript
    based strategies): fewer nodes, at some export-time cost.
    ``model_explorer`` also writes each node's ``namespace`` (module path and
    class per level), which Google's Model Explorer draws as nested layers.
    ``enable_monitoring`` samples peak RSS per phase; ``verbose`` prints one
    line per phase and attempt.  With AUTO, ``recommend_strategy`` picks the
    first strategy (``prioritize_speed`` chooses its objective) and the rest
    follow in the rule table's fallback order.
    """

    def __init__(
        self,
        strategy: ExportStrategy | str = ExportStrategy.AUTO,
        enable_optimizations: bool = True,
        enable_monitoring: bool = False,
        verbose: bool = False,
        *,
        opset: int = DEFAULT_OPSET,
        dynamic_batch: bool = False,
        dynamic_sequence: bool = False,
        external_data: bool | None = None,
        external_data_threshold: int = PROTOBUF_LIMIT_BYTES,
        clean: bool = False,
        model_explorer: bool = False,
        validate: bool = False,
        atol: float = 1e-4,
        rtol: float = 1e-3,
        markdown_report: bool = False,
        prioritize_speed: bool = True,
        log: Any = None,
    ) -> None:
        self.strategy = strategy
        self.strategy_name = _strategy_name(strategy)
        self.prioritize_speed = prioritize_speed
        self.enable_optimizations = enable_optimizations
        self.enable_monitoring = enable_monitoring
        self.verbose = verbose
        self.opset = opset
        self.dynamic_batch = dynamic_batch
        self.dynamic_sequence = dynamic_sequence
        self.external_data = external_data
        self.external_data_threshold = external_data_threshold
        self.clean = clean
        self.model_explorer = model_explorer
        self.validate = validate
        self.atol = atol
        self.rtol = rtol
        self.markdown_report = markdown_report
        self._log = log if log is not None else (print if verbose else None)

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(f"[modelexport] {line}")

    def export(self, model: torch.nn.Module, inputs: Any, output_path: str | os.PathLike,
               ) -> ExportReport:
        """Export ``model`` called on ``inputs`` to ``output_path``; see module doc."""
        started = time.perf_counter()
        monitor = PhaseMonitor(track_memory=self.enable_monitoring, log=self._log and self._say)
        example = ModelInputs.from_user(inputs)
        staging = StagedOutput.open(output_path)
        try:
            return self._export(model, example, staging, monitor, started)
        finally:
            staging.close()

    def _export(self, model: torch.nn.Module, example: ModelInputs, staging: StagedOutput,
                monitor: PhaseMonitor, started: float) -> ExportReport:
        model.eval()
        tree = ModuleTree(model)
        with monitor.phase("probe"), tree.recording_calls():
            run_checked(model, example)
        names = graph_input_names(model, example)
        request = ExportRequest(
            model=model,
            inputs=example,
            tree=tree,
            input_names=names,
            opset=self.opset,
            dynamic_axes=dynamic_axes_for(names, example.tensors(), self.dynamic_batch,
                                          self.dynamic_sequence),
            optimize=self.enable_optimizations,
            workdir=staging.staging,
        )
        selection = None
        order = [self.strategy_name]
        if self.strategy_name == ExportStrategy.AUTO.value:
            with monitor.phase("select"):
                pick = recommend_strategy(model, prioritize_speed=self.prioritize_speed)
            order = pick.fallback_order
            selection = {"strategy": pick.strategy, "confidence": pick.confidence,
                         "rule": pick.rule, "reasons": pick.reasons}
            self._say(f"recommended {pick.strategy} ({pick.confidence:.2f}): {pick.reasons[0]}")
        attempts, result = self._run_strategies(request, order, monitor)
        graph = result.model
        assert graph is not None and result.assignments is not None

        with monitor.phase("tag"), paused_gc():
            tags = complete_tags(graph.graph.node, result.assignments, tree)
            for index, node in enumerate(graph.graph.node):
                if not node.name:
                    node.name = f"{node.op_type}_{index}"
            if self.clean:
                strip_tags(graph)
            else:
                write_tags(graph, tags, result.strategy, __version__)
                if self.model_explorer:
                    write_namespaces(graph, tags, tree.class_names())
        with monitor.phase("figures"):
            figures = tag_figures(tags, tree).as_dict()
            anchors = anchored_accuracy(graph, tags, tree, model) if self.validate else None
        external = self.external_data
        if external is None:
            external = model_bytes(graph) > self.external_data_threshold
        target = staging.target
        settings = {
            "opset": self.opset,
            "dynamic_axes": request.dynamic_axes,
            "optimizations": self.enable_optimizations,
            "clean": self.clean,
            "model_explorer": self.model_explorer and not self.clean,
            "external_data": external,
            "input_names": names,
        }
        outputs = Outputs(
            onnx=str(target),
            sidecar=str(sidecar_path_for(target)),
            external_data=str(external_data_path_for(target)) if external else None,
            report=str(report_path_for(target)) if self.markdown_report else None,
        )
        with monitor.phase("save"):
            staged_onnx = staging.write_onnx(graph, external)
        parity = None
        if self.validate:
            with monitor.phase("validate"):
                check_model_file(staged_onnx)
                parity = check_parity(staged_onnx, model, example, names,
                                      atol=self.atol, rtol=self.rtol).as_dict()
        anchored = {"anchored_nodes": anchors.anchored_nodes if anchors else None,
                    "correct": anchors.correct if anchors else None,
                    "accuracy": anchors.accuracy if anchors else None}
        report = ExportReport(
            summary=Summary(
                model_class=type(model).__name__,
                requested_strategy=self.strategy_name,
                final_strategy=result.strategy,
                success=True,
                attempts=attempts,
            ),
            outputs=outputs,
            coverage=figures,
            anchored=anchored,
            timings=monitor.seconds,
            memory_peak_mb=monitor.peak_rss_mb,
            settings=settings,
            graph={"nodes": len(graph.graph.node), "initializers": len(graph.graph.initializer),
                   "inputs": len(graph.graph.input), "outputs": len(graph.graph.output)},
            parity=parity,
            selection=selection,
        )
        with monitor.phase("sidecar"):
            sidecar = build_sidecar(
                graph=graph, tags=tags, tree=tree, strategy=result.strategy,
                version=__version__, figures={**figures, "anchored": anchored},
                timings=monitor.seconds, settings=settings,
            )
            staging.write_json(sidecar_path_for(target), sidecar)
            if self.markdown_report:
                staging.write_text(report_path_for(target),
                                   render_markdown(report, sidecar["modules"]))
        finals = [target, sidecar_path_for(target)]
        if external:
            finals.append(external_data_path_for(target))
        if self.markdown_report:
            finals.append(report_path_for(target))
        staging.commit(finals)
        report.summary.total_seconds = time.perf_counter() - started
        return report

    def _run_strategies(self, request: ExportRequest, order: list[str],
                        monitor: PhaseMonitor) -> tuple[list[Attempt], StrategyResult]:
        attempts: list[Attempt] = []
        for name in order:
            with monitor.phase(f"export:{name}"):
                result = get_strategy(name).run(request)
            exc = result.exception
            attempts.append(Attempt(
                strategy=name,
                success=result.success,
                seconds=result.total_seconds,
                error_type=type(exc).__name__ if exc is not None else "",
                error=result.error_line(),
            ))
            if result.success:
                self._say(f"{name}: exported {len(result.model.graph.node)} nodes")
                return attempts, result
            self._say(f"{name}: failed ({type(exc).__name__}: {result.error_line()})")
        causes = "; ".join(f"{a.strategy}: {a.error_type}: {a.error}" for a in attempts)
        raise StrategyFailedError(f"every strategy failed ({causes})", attempts)


def export_model(model: torch.nn.Module, inputs: Any, output_path: str | os.PathLike,
                 strategy: ExportStrategy | str = ExportStrategy.AUTO,
                 **options: Any) -> ExportReport:
    """One call: export ``model`` on example ``inputs`` to a tagged ONNX file.

    ``inputs`` is a tensor, a tuple of tensors or a dict of keyword arguments.
    ``options`` are those of :class:`UnifiedExporter`.
    """
    return UnifiedExporter(strategy=strategy, **options).export(model, inputs, output_path)
