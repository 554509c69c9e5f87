"""The public API: ``export_model`` and ``UnifiedExporter``.

One export runs these phases, each timed (and memory-sampled with
monitoring on):

``probe``     one eager forward with hooks: checks the inputs fit and records
              which module instances ran and how often.  Skipped when the
              first strategy's capture runs the forward itself (a
              TorchScript trace): the calls are counted during that
              capture, which stops as soon as the forward returns a KV cache
              nobody asked for and runs again without it; the probe runs
              only if that strategy fails (then it tells inputs that don't
              fit from an exporter that can't);
``export``    strategies in order until one succeeds (AUTO tries several);
``tag``       projection of scope-less nodes, call indices;
``save``      the tagged graph serialised once and written to the staging
              folder (external data beside it when large): what is checked
              is the file the user gets;
``check``     the self-check of that file (checker, ONNX Runtime load,
              inputs bound by name, parameter-reading nodes on their
              owners): AUTO moves on from a strategy that fails it;
``validate``  (on by default) ONNX Runtime parity on a fresh input, at the
              example's shape and a second one, inside the loop, so a file
              that disagrees with PyTorch makes AUTO move on too;
``figures``   coverage and source shares;
``sidecar``   the sidecar (and markdown report), then every file moved into
              place atomically.

Before any of it the example is put in the order of ``forward``'s
signature (graph inputs are named after it, whatever order a dict came in),
and a model that would return a KV cache nobody asked for is called with
``use_cache=False``; the report's ``warnings`` say so.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from modelexport.analysis.analyzer import ModelAnalyzer, control_flow_sites
from modelexport.analysis.execution_evidence import ExecutionEvidence, observing
from modelexport.axis_ladder import (
    SECOND_SHAPE_FAILED,
    AxisChoice,
    axes_label,
    axis_ladder,
    closed_axes,
    shape_bound,
)
from modelexport.capture.axis_names import dynamic_dims, name_dynamic_axes
from modelexport.capture.export_friendly import export_friendly
from modelexport.capture.seq2seq_past import (
    decoder_step,
    encoder_part,
    encoder_path_for,
    is_encoder_decoder,
)
from modelexport.capture.with_past import DecodingExport, decoding_step
from modelexport.errors import InputMismatchError, StrategyFailedError
from modelexport.folding import fold_staged, recheck_ownership, wanted_classes
from modelexport.hierarchy import ModuleTree
from modelexport.inputs import (
    ModelInputs,
    UnrequestedCacheError,
    dynamic_axes_for,
    graph_input_names,
    in_signature_order,
    run_checked,
    without_cache,
    without_unrequested_cache,
)
from modelexport.monitoring import PhaseMonitor
from modelexport.names import ExportStrategy, Objective
from modelexport.output.files import (
    PROTOBUF_LIMIT_BYTES,
    StagedOutput,
    external_data_path_for,
    report_path_for,
    sidecar_path_for,
)
from modelexport.output.markdown_report import render_markdown
from modelexport.output.onnx_payload import model_bytes
from modelexport.output.sidecar import build_sidecar
from modelexport.parameters import merged_parameters
from modelexport.report import Attempt, ExportReport, Outputs, Summary
from modelexport.selection.selector import needs_execution, recommend_strategy
from modelexport.strategies import ExportRequest, StrategyResult, get_strategy
from modelexport.tagging import complete_tags, paused_gc
from modelexport.tags import NodeTag, strip_tags, write_namespaces, write_tags
from modelexport.validation.figures import tag_figures
from modelexport.validation.parity import ParityResult, check_parity
from modelexport.validation.self_check import SelfCheck, self_check
from modelexport.version import __version__

DEFAULT_OPSET = 18
# What builds a part's adapter and example (a decoding step, an encoder).
Part = Callable[[torch.nn.Module, ModelInputs], DecodingExport]
# TorchScript's exporter starts at opset 7; nothing can write past onnx's newest.
OLDEST_OPSET = 7


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
    line per phase and attempt.

    The defaults are what a user means by a file that is ok: batch and
    sequence axes dynamic and named (``static=True`` fixes every input at the
    example's shape; ``dynamic_batch``/``dynamic_sequence`` choose one by
    one), the file run in ONNX Runtime against PyTorch at the example's
    shape and at a second one (``validate=False`` skips that, and the report
    says so), and every parameter in an initializer of its own, named by its
    state-dict key (``dedupe_weights=True`` lets the exporters merge equal
    tensors; the report lists what was merged).

    With AUTO, ``recommend_strategy`` picks the first strategy for
    ``objective`` (speed, quality or runtime; without it ``prioritize_speed``
    chooses between the first two) and the rest follow in that objective's
    fitted fallback order.
    """

    def __init__(
        self,
        strategy: ExportStrategy | str = ExportStrategy.AUTO,
        enable_optimizations: bool = True,
        enable_monitoring: bool = False,
        verbose: bool = False,
        *,
        opset: int = DEFAULT_OPSET,
        static: bool = False,
        dynamic_batch: bool | None = None,
        dynamic_sequence: bool | None = None,
        dedupe_weights: bool = False,
        external_data: bool | None = None,
        external_data_threshold: int = PROTOBUF_LIMIT_BYTES,
        clean: bool = False,
        model_explorer: bool = False,
        validate: bool = True,
        atol: float = 1e-4,
        rtol: float = 1e-3,
        markdown_report: bool = False,
        prioritize_speed: bool = True,
        with_past: bool = False,
        log: Any = None,
        objective: Objective | str | None = None,
        modules_as_functions: Sequence[str] = (),
    ) -> None:
        self.strategy = strategy
        self.strategy_name = _strategy_name(strategy)
        self.prioritize_speed = prioritize_speed
        self.objective = Objective.resolve(objective, prioritize_speed)
        self.enable_optimizations = enable_optimizations
        self.enable_monitoring = enable_monitoring
        self.verbose = verbose
        self.opset = opset
        self.dynamic_batch = not static if dynamic_batch is None else dynamic_batch
        self.dynamic_sequence = not static if dynamic_sequence is None else dynamic_sequence
        # axes set by name are kept as set; defaulted ones may close (axis_ladder)
        self._axes_chosen = (dynamic_batch is not None, dynamic_sequence is not None)
        self.dedupe_weights = dedupe_weights
        self.external_data = external_data
        self.external_data_threshold = external_data_threshold
        self.clean = clean
        self.model_explorer = model_explorer
        self.validate = validate
        self.atol = atol
        self.rtol = rtol
        self.markdown_report = markdown_report
        self.with_past = with_past
        if modules_as_functions and clean:
            raise InputMismatchError("modules_as_functions keeps each node's module in the "
                                     "function bodies; it cannot be combined with clean")
        self.modules_as_functions = tuple(modules_as_functions)
        self._log = log if log is not None else (print if verbose else None)

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(f"[modelexport] {line}")

    def export(self, model: torch.nn.Module, inputs: Any, output_path: str | os.PathLike,
               ) -> ExportReport:
        """Export ``model`` called on ``inputs`` to ``output_path``; see module doc."""
        started = time.perf_counter()
        _check_opset(self.opset)
        if not isinstance(model, torch.nn.Module):
            raise InputMismatchError(
                f"model must be a torch.nn.Module, not {type(model).__name__}")
        monitor = PhaseMonitor(track_memory=self.enable_monitoring, log=self._log and self._say)
        example = ModelInputs.from_user(inputs)
        if self.with_past and is_encoder_decoder(model):
            return self._export_seq2seq(model, example, Path(output_path), monitor, started)
        part = decoding_step if self.with_past else None
        return self._export_to(model, example, Path(output_path), monitor, started, part)

    def _export_to(self, model: torch.nn.Module, example: ModelInputs, output_path: Path,
                   monitor: PhaseMonitor, started: float, part: Part | None) -> ExportReport:
        staging = StagedOutput.open(output_path)
        try:
            return self._export(model, example, staging, monitor, started, part)
        finally:
            staging.close()

    def _export_seq2seq(self, model: torch.nn.Module, example: ModelInputs, output_path: Path,
                        monitor: PhaseMonitor, started: float) -> ExportReport:
        """The decoder with its past at ``output_path``, the encoder beside it.

        The decoder goes first (it is the likelier to fail); if the
        encoder's export then raises, the decoder's files are removed, so
        that no half of a pair is left behind.  ``success`` holds only when
        both files pass; the encoder's report is ``report.encoder``.
        """
        report = self._export_to(model, example, output_path, monitor, started, decoder_step)
        encoder_path = encoder_path_for(Path(report.outputs.onnx))
        try:
            encoder = self._export_to(model, example, encoder_path, monitor, started,
                                      encoder_part)
        except Exception:
            for written in report.outputs.files():
                Path(written).unlink(missing_ok=True)
            raise
        report.encoder = encoder.to_dict()
        report.outputs.encoder = encoder.outputs.onnx
        report.summary.success = report.summary.success and encoder.summary.success
        report.warnings += [f"encoder: {note}" for note in encoder.warnings]
        report.summary.total_seconds = time.perf_counter() - started
        return report

    def _export(self, model: torch.nn.Module, example: ModelInputs, staging: StagedOutput,
                monitor: PhaseMonitor, started: float, part: Part | None) -> ExportReport:
        model.eval()
        notes: list[str] = []
        example = in_signature_order(model, example)
        step = None
        if part is not None:
            with monitor.phase(part.__name__.replace("_", "-")):
                step = part(model, example)
            example = step.inputs
        traced = step.adapter if step is not None else model
        tree = ModuleTree(model)
        wanted = wanted_classes(tree, self.modules_as_functions)
        auto = self.strategy_name == ExportStrategy.AUTO.value
        # AUTO's selector reads what the probe saw run (no second forward),
        # when its rules test any of it: then the probe comes first.
        watch = auto and needs_execution(self.objective)
        execution, dropped_cache = None, False
        if watch:
            example, dropped_cache, execution = _probe(model, traced, example, tree, monitor,
                                                       watch=True)
        order, selection, traits = self._order(model, execution, monitor)
        # The probe forward is skipped where the first capture runs the
        # forward itself and counts the calls there.  A model that returns a
        # KV cache nobody asked for stops that capture the moment its forward
        # returns (UnrequestedCacheError): the capture runs again with the
        # cache turned off.  The probe runs after all if the capture fails for
        # any other reason, to tell inputs that don't fit from an exporter
        # that can't, and to catch a cache hidden from the capture.
        deferred = not watch and step is None and get_strategy(order[0]).counts_calls
        if not watch and not deferred:
            example, dropped_cache, _ = _probe(model, traced, example, tree, monitor)
        request = self._request(model, traced, example, tree, step, staging)
        with export_friendly(model) as switched:
            first = None
            if deferred:
                counting = get_strategy(order[0])
                with monitor.phase(f"export:{order[0]}"):
                    first = counting.run(request, count_calls=True)
                if isinstance(first.exception, UnrequestedCacheError):
                    example, dropped_cache = without_cache(example), True
                    request = self._request(model, traced, example, tree, step, staging)
                    with monitor.phase(f"export:{order[0]}"):
                        first = counting.run(request, count_calls=True)
                if not first.success:
                    example, dropped_late, _ = _probe(model, traced, example, tree, monitor)
                    if dropped_late:  # the capture failed on the cache: start over without it
                        dropped_cache = True
                        request = self._request(model, traced, example, tree, step, staging)
                        first = None
            asked = request.dynamic_axes
            attempts, chosen, request = self._climb_down(
                lambda choice: self._request(model, traced, example, tree, step, staging, choice),
                request, order, monitor, staging, first)
        if dropped_cache:
            notes.append("use_cache=False: the model returns a KV cache the inputs did not "
                         "ask for, so the graph has no past key/values (pass use_cache=True "
                         "in the inputs, or with_past=True, to export them)")
        result, tags, check = chosen.result, chosen.tags, chosen.check
        graph = result.model
        assert graph is not None

        with monitor.phase("figures"):
            figures = tag_figures(tags, tree).as_dict()
        external = chosen.external
        target = staging.target
        staging.promote(chosen.folder)
        notes += _export_warnings(request, result, check, traits)
        parity = chosen.parity
        folded, flat, flat_tags = None, graph, tags
        if wanted:
            with monitor.phase("functions"):
                folded, flat, flat_tags = fold_staged(staging, external, tree, wanted,
                                                      set(model.state_dict()))
                recheck_ownership(check, flat, flat_tags, request)
            parity = None  # the file changed: what is validated is the folded one
            notes += [f"modules_as_functions: {path} stays inline: {why}"
                      for path, why in folded.skipped.items()]
        if self.validate and parity is None:
            with monitor.phase("validate"):
                parity = self._parity(staging.staged(target), request)
        open_axes = dynamic_dims(graph)
        closed = closed_axes(asked, open_axes)
        notes += _validation_warnings(parity, self.validate, request, closed, chosen.merged)
        settings = {
            "opset": self.opset,
            "dynamic_axes": request.dynamic_axes,
            "optimizations": self.enable_optimizations,
            "clean": self.clean,
            "model_explorer": self.model_explorer and not self.clean,
            "external_data": external,
            "input_names": request.input_names,
            "use_cache_dropped": dropped_cache,
            "validated": parity is not None,
            "dedupe_weights": self.dedupe_weights,
            "merged_weights": chosen.merged,
            "open_axes": open_axes,
            "closed_axes": closed,
            "with_past": self.with_past,
            **(step.settings if step is not None else {}),
            "implementations": switched,
            "functions": folded.as_dict() if folded is not None else None,
        }
        outputs = Outputs(
            onnx=str(target),
            sidecar=str(sidecar_path_for(target)),
            external_data=str(external_data_path_for(target)) if external else None,
            report=str(report_path_for(target)) if self.markdown_report else None,
        )
        owned = check.ownership
        anchored = {"anchored_nodes": owned.anchored_nodes, "correct": owned.correct,
                    "accuracy": owned.accuracy}
        report = ExportReport(
            summary=Summary(
                model_class=type(model).__name__,
                requested_strategy=self.strategy_name,
                final_strategy=result.strategy,
                # False: the best failed file, kept for inspection
                success=check.passed and (parity is None or parity.passed),
                attempts=attempts,
            ),
            outputs=outputs,
            coverage=figures,
            anchored=anchored,
            timings=monitor.seconds,
            cpu_timings=monitor.cpu_seconds,
            memory_peak_mb=monitor.peak_rss_mb,
            settings=settings,
            graph={"nodes": len(graph.graph.node), "initializers": len(graph.graph.initializer),
                   "inputs": len(graph.graph.input), "outputs": len(graph.graph.output)},
            parity=parity.as_dict() if parity is not None else None,
            selection=selection,
            check=check.as_dict(),
            warnings=notes,
        )
        for note in notes:
            self._say(f"warning: {note}")
        with monitor.phase("sidecar"):
            sidecar = build_sidecar(
                graph=flat, tags=flat_tags, tree=tree, strategy=result.strategy,
                version=__version__, figures={**figures, "anchored": anchored},
                timings=monitor.seconds, settings=settings,
            )
            staging.write_json(sidecar_path_for(target), sidecar)
            if self.markdown_report:
                # the time so far: the report is written before the files are moved in
                report.summary.total_seconds = time.perf_counter() - started
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

    def _order(self, model: torch.nn.Module, execution: ExecutionEvidence | None,
               monitor: PhaseMonitor) -> tuple[list[str], dict[str, Any] | None, Any]:
        """The strategies to try, AUTO's selection for the report, and the traits it read."""
        if self.strategy_name != ExportStrategy.AUTO.value:
            return [self.strategy_name], None, None
        with monitor.phase("select"):
            traits = ModelAnalyzer.analyze_model(model, execution=execution)
            pick = recommend_strategy(model, objective=self.objective, characteristics=traits)
        selection = {"strategy": str(pick.strategy), "objective": str(pick.objective),
                     "confidence": pick.confidence, "rule": pick.rule, "reasons": pick.reasons}
        self._say(f"recommended {pick.strategy} ({pick.confidence:.2f}): {pick.reasons[0]}")
        return [str(s) for s in pick.fallback_order], selection, traits

    def _ladder(self) -> list[AxisChoice]:
        return axis_ladder(self.dynamic_batch, self.dynamic_sequence,
                           batch_chosen=self._axes_chosen[0],
                           sequence_chosen=self._axes_chosen[1], with_past=self.with_past)

    def _request(self, model: torch.nn.Module, traced: torch.nn.Module, example: ModelInputs,
                 tree: ModuleTree, step: Any, staging: StagedOutput,
                 choice: AxisChoice | None = None) -> ExportRequest:
        """What every strategy is asked to export: inputs named, axes open as ``choice`` says.

        Without ``choice``, the axes asked for (the ladder's first rung).
        """
        choice = choice or self._ladder()[0]
        names = step.input_names if step is not None else graph_input_names(traced, example)
        axes = dynamic_axes_for(names, example.tensors(), choice.batch, choice.sequence)
        if step is not None:
            for name, dims in step.dynamic_axes.items():
                axes.setdefault(name, {}).update(dims)
        return ExportRequest(
            model=model,
            inputs=example,
            tree=tree,
            input_names=names,
            opset=self.opset,
            dynamic_axes=axes,
            optimize=self.enable_optimizations,
            workdir=staging.staging,
            capture_model=traced if step is not None else None,
            adapter_depth=1 if step is not None else 0,
            output_names=step.output_names if step is not None else None,
            dedupe_weights=self.dedupe_weights,
        )

    def _climb_down(self, make_request: Any, request: ExportRequest, order: list[str],
                    monitor: PhaseMonitor, staging: StagedOutput, first: StrategyResult | None,
                    ) -> tuple[list[Attempt], _Candidate, ExportRequest]:
        """Run ``order`` on each rung of the axis ladder until a file passes.

        A rung is left only when its failures point at the open axes
        (``axis_ladder.shape_bound``).  When no rung passes, the best failed
        candidate of any rung is kept, the widest on a tie.
        """
        ladder = self._ladder()
        attempts: list[Attempt] = []
        best: tuple[_Candidate, ExportRequest] | None = None
        for rung, choice in enumerate(ladder):
            if rung:
                wider = request.dynamic_axes
                request = make_request(choice)
                if request.dynamic_axes == wider:  # no input has an axis of the closed kind
                    continue
                self._say(f"axes: every export with {axes_label(wider)} failed on the "
                          f"open axes; trying {axes_label(request.dynamic_axes)}")
            try:
                tried, candidate = self._run_strategies(
                    request, order, monitor, staging, first if rung == 0 else None,
                    folder_suffix=f"-{rung}" if rung else "")
            except StrategyFailedError as exc:
                tried, candidate = exc.attempts, None
            for attempt in tried:
                attempt.axes = axes_label(request.dynamic_axes)
            attempts += tried
            if candidate is not None and (best is None or candidate.passed
                                          or candidate.rank() > best[0].rank()):
                best = (candidate, request)
            if candidate is not None and candidate.passed:
                break
            if not shape_bound([a.error_type for a in tried], [a.error for a in tried]):
                break
        if len({attempt.axes for attempt in attempts}) == 1:  # one rung: nothing to tell
            for attempt in attempts:
                attempt.axes = ""
        if best is None:
            causes = "; ".join(f"{a.strategy}{f' [{a.axes}]' if a.axes else ''}: "
                               f"{a.error_type}: {a.error}" for a in attempts)
            raise StrategyFailedError(f"every strategy failed ({causes})", attempts)
        return attempts, best[0], best[1]

    def _run_strategies(self, request: ExportRequest, order: list[str],
                        monitor: PhaseMonitor, staging: StagedOutput,
                        first: StrategyResult | None = None, folder_suffix: str = "",
                        ) -> tuple[list[Attempt], _Candidate]:
        """Try ``order`` until an export passes its self-check.

        ``first`` is the first strategy's result when it already ran (it
        counted the calls for a skipped probe).  A strategy that exports but
        fails the check counts as failed under AUTO, which moves on; if none
        passes, the best failed candidate is kept (one ONNX Runtime can load,
        then the most parameter-reading nodes on their owners) and its report
        says what failed.
        """
        attempts: list[Attempt] = []
        best: _Candidate | None = None
        for index, name in enumerate(order):
            if index == 0 and first is not None:
                result = first
            else:
                with monitor.phase(f"export:{name}"):
                    result = get_strategy(name).run(request)
            exc = result.exception
            attempt = Attempt(strategy=name, success=result.success,
                              seconds=result.total_seconds,
                              error_type=type(exc).__name__ if exc is not None else "",
                              error=result.error_line())
            attempts.append(attempt)
            if not result.success:
                self._say(f"{name}: failed ({type(exc).__name__}: {result.error_line()})")
                continue
            candidate = self._checked(request, result, monitor, staging, folder_suffix)
            if candidate.passed:
                self._say(f"{name}: exported {len(result.model.graph.node)} nodes, "
                          "self-check passed")
                return attempts, candidate
            attempt.success = False
            if candidate.check.passed:
                second = candidate.parity.second_shape if candidate.parity else None
                attempt.error_type = ("ParityFailed" if second is None or second.passed
                                      else SECOND_SHAPE_FAILED)
                attempt.error = candidate.parity.detail if candidate.parity else ""
            else:
                attempt.error_type = "SelfCheckFailed"
                attempt.error = "; ".join(candidate.check.failures)
            self._say(f"{name}: {attempt.error_type} ({attempt.error})")
            if best is None or candidate.rank() > best.rank():
                best = candidate
        if best is not None:
            return attempts, best
        causes = "; ".join(f"{a.strategy}: {a.error_type}: {a.error}" for a in attempts)
        raise StrategyFailedError(f"every strategy failed ({causes})", attempts)

    def _checked(self, request: ExportRequest, result: StrategyResult,
                 monitor: PhaseMonitor, staging: StagedOutput, folder_suffix: str = "",
                 ) -> _Candidate:
        graph = result.model
        assert graph is not None and result.assignments is not None
        with monitor.phase("tag"), paused_gc():
            name_dynamic_axes(graph, request.dynamic_axes)
            held = request.holdings(graph, result.payloads, result.sources)
            owners = {name: holding.owners for name, holding in held.items()}
            tags = complete_tags(graph.graph.node, result.assignments, request.tree, owners)
            for index, node in enumerate(graph.graph.node):
                if not node.name:
                    node.name = f"{node.op_type}_{index}"
            if self.clean:
                strip_tags(graph)
            else:
                write_tags(graph, tags, result.strategy, __version__)
                if self.model_explorer:
                    write_namespaces(graph, tags, request.tree.class_names())
        external = self.external_data
        if external is None:
            external = model_bytes(graph) > self.external_data_threshold
        with monitor.phase("save"):
            folder = result.strategy + folder_suffix
            saved = staging.write_onnx(graph, external, folder=folder,
                                       payloads=result.payloads)
        with monitor.phase("check"):
            check = self_check(graph, saved, tags, request.tree, request.model,
                               request.input_names, held=held, keep_session=self.validate)
        loaded = check.take_session()  # the check's session: parity runs on it, then it goes
        parity = None
        if self.validate and check.passed:
            # Inside the loop, so that AUTO can move on from a file that
            # disagrees with PyTorch.
            with monitor.phase("validate"):
                parity = self._parity(saved, request, loaded)
        del loaded
        # Only a deduplicated file merges: elsewhere an initializer matched to several
        # tensors is a renamed one whose content several parameters share.
        merged = merged_parameters(held, request.traced) if self.dedupe_weights else {}
        return _Candidate(result, tags, check, parity, external, merged, folder)

    def _parity(self, source: Path | bytes, request: ExportRequest,
                session: Any = None) -> ParityResult:
        return check_parity(source, request.traced, request.inputs, request.input_names,
                            atol=self.atol, rtol=self.rtol, session=session)


class _Candidate:
    """One strategy's export with its tags, self-check and parity, while AUTO decides."""

    def __init__(self, result: StrategyResult, tags: list[NodeTag], check: SelfCheck,
                 parity: ParityResult | None, external: bool,
                 merged: dict[str, list[str]], folder: str) -> None:
        self.result, self.tags, self.check, self.parity = result, tags, check, parity
        self.external = external  # its weights were saved beside it
        self.merged = merged  # initializer -> the distinct parameters it stands for
        self.folder = folder  # the staging sub-folder its file was saved in

    @property
    def passed(self) -> bool:
        return self.check.passed and (self.parity is None or self.parity.passed)

    def rank(self) -> tuple[bool, bool, float]:
        accuracy = self.check.ownership.accuracy
        return (self.check.loads, self.check.passed,
                1.0 if accuracy is None else accuracy)


def _probe(model: torch.nn.Module, traced: torch.nn.Module, example: ModelInputs,
           tree: ModuleTree, monitor: PhaseMonitor, watch: bool = False,
           ) -> tuple[ModelInputs, bool, ExecutionEvidence | None]:
    """One eager forward with hooks (module doc): the inputs checked, calls counted.

    Returns the inputs to export with (``use_cache=False`` added when the
    model returned a cache nobody asked for), whether that happened, and,
    when ``watch``, what ran for AUTO's selector.
    """
    with monitor.phase("probe"), tree.recording_calls(), \
            (observing(model) if watch else contextlib.nullcontext()) as ops:
        probed = run_checked(traced, example)
    execution = ExecutionEvidence.from_run(ops, tree.call_counts()) if watch else None
    example, dropped_cache = without_unrequested_cache(traced, example, probed)
    return example, dropped_cache, execution


def _check_opset(opset: int) -> None:
    """Refuse an opset no exporter can write, before any work is done."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not OLDEST_OPSET <= opset <= newest:
        raise InputMismatchError(
            f"opset {opset} is not available: the installed onnx {onnx.__version__} "
            f"writes opsets {OLDEST_OPSET} to {newest}")


def file_opset(graph: Any) -> int | None:
    """The default-domain opset a graph was written for."""
    return next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)


def _export_warnings(request: ExportRequest, result: StrategyResult, check: SelfCheck,
                     traits: Any) -> list[str]:
    """What the user should know about a file that exported: nothing is silent."""
    notes: list[str] = []
    written = file_opset(result.model)
    if written is not None and written != request.opset:
        notes.append(f"opset {request.opset} was requested; {result.strategy} wrote opset "
                     f"{written}")
    if get_strategy(result.strategy).freezes_control_flow:
        branches = (traits.control_flow_evidence if traits is not None else
                    [str(site) for site in control_flow_sites(request.model)
                     if site.kind == "data"])
        for where in branches[:3]:
            notes.append(f"data-dependent branch at {where}: the {result.strategy} trace "
                         "kept the branch the example input took; inputs that take the other "
                         "branch get wrong results (check parity with --validate)")
    notes += [f"self-check failed: {failure}" for failure in check.failures]
    return notes


def _validation_warnings(parity: ParityResult | None, validated: bool, request: ExportRequest,
                         closed: dict[str, list[str]],
                         merged: dict[str, list[str]]) -> list[str]:
    """What the user should know about how far the file was checked, and its weights."""
    notes: list[str] = []
    if not validated:
        notes.append("not validated (validate=False): the file was loaded, never run")
    elif parity is not None and parity.passed and parity.second_shape is None:
        notes.append("validated at the example's shape only: "
                     + (parity.second_shape_skipped or "the file has no dynamic axis"))
    for name, fixed in closed.items():
        kept_asking = set(request.dynamic_axes.get(name, {}).values())
        why = ("the exporter fixed it (the model's code specialises it)"
               if kept_asking.issuperset(fixed) else
               "every export with it open failed on the open axes (summary.attempts)")
        notes.append(f"input {name!r}: axis {', '.join(fixed)} was asked to be dynamic and "
                     f"is fixed at the example's size: {why}")
    if merged:
        count = sum(len(names) for names in merged.values())
        notes.append(f"dedupe_weights: {count} parameters of equal content share "
                     f"{len(merged)} initializers (settings.merged_weights lists them)")
    return notes


def export_model(model: torch.nn.Module, inputs: Any, output_path: str | os.PathLike,
                 strategy: ExportStrategy | str = ExportStrategy.AUTO,
                 **options: Any) -> ExportReport:
    """One call: export ``model`` on example ``inputs`` to a tagged ONNX file.

    ``inputs`` is a tensor, a tuple of tensors or a dict of keyword arguments.
    ``options`` are those of :class:`UnifiedExporter`.
    """
    return UnifiedExporter(strategy=strategy, **options).export(model, inputs, output_path)
