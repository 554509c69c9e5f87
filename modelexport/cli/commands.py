"""The ``modelexport`` command.

User mistakes (a missing model, inputs that don't fit, an unwritable path, a
strategy that fails) end with one ``error:`` line on stderr and exit code 2;
a completed export whose parity check fails exits 1.  Progress goes to stderr
when it is a terminal or ``-v`` is given, so stdout stays clean for ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from modelexport.cli.args import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USER_ERROR,
    NameList,
    OneLineParser,
    non_negative_float,
    positive_float,
    positive_int,
    shard,
)
from modelexport.cli.file_tools import TOOL_COMMANDS, add_tool_parsers
from modelexport.errors import ModelExportError
from modelexport.names import Objective

EXIT_PARITY_FAILED = EXIT_FAILED
# A file was written but failed its own check: as for parity, the export is not trustworthy.
EXIT_CHECK_FAILED = EXIT_PARITY_FAILED
# A zoo run under its expectations, or a gate, found something worse than before.  It shares
# exit code 1 with the failed export (a verdict, not a usage error), under its own name.
EXIT_REGRESSION = 1
# Zoo tiers, spelled here so that parsing --help does not import the zoo.
ZOO_TIERS = ("tiny", "full", "wide", "idioms")


def _progress(enabled: bool):
    def say(line: str) -> None:
        if enabled:
            print(line, file=sys.stderr, flush=True)

    return say


def _quiet_libraries() -> None:
    """Exporter warnings are for torch developers; our report says what matters."""
    warnings.filterwarnings("ignore")
    for name in ("torch", "torch.onnx", "transformers", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _build_parser() -> argparse.ArgumentParser:
    from modelexport.sources import TASK_AUTO_CLASSES
    from modelexport.strategies import strategy_names

    parser = OneLineParser(
        prog="modelexport",
        description="Export PyTorch models to ONNX with every node tagged by its module.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    export = sub.add_parser("export", help="export a model to a tagged ONNX file")
    export.add_argument("--model", required=True,
                        help="save_pretrained folder, hub id, pkg.mod:factory or zoo:NAME[:TIER]")
    export.add_argument("--output", "-o", required=True, help="path of the .onnx to write")
    export.add_argument("--strategy", default="auto",
                        choices=["auto", *strategy_names()], help="default: auto")
    export.add_argument("--task", choices=sorted(TASK_AUTO_CLASSES),
                        help="transformers task (default: the config's architecture)")
    export.add_argument("--opset", type=int, default=18)
    export.add_argument("--batch-size", type=positive_int, default=1)
    export.add_argument("--sequence-length", type=positive_int, default=16)
    export.add_argument("--input-specs", help="JSON file describing the inputs")
    export.add_argument("--static", action="store_true",
                        help="fix every input at the example's shape (default: batch and "
                             "sequence axes dynamic, named batch and sequence; an axis the "
                             "model's code fixes is closed, and the report says so)")
    export.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction,
                        help="the batch axis alone; --dynamic-batch insists (the export "
                             "fails rather than close it)")
    export.add_argument("--dynamic-sequence", action=argparse.BooleanOptionalAction,
                        help="the sequence axis alone; --dynamic-sequence insists (the "
                             "export fails rather than close it)")
    export.add_argument("--no-optimize", action="store_true",
                        help="skip the exporters' graph optimisation")
    export.add_argument("--validate", action=argparse.BooleanOptionalAction, default=True,
                        help="run the file in ONNX Runtime against PyTorch at the example's "
                             "shape and a second one (default: on; --no-validate skips it)")
    export.add_argument("--dedupe-weights", action="store_true",
                        help="let the exporter merge parameters of equal content into one "
                             "initializer (default: each keeps its own; the report lists "
                             "merges)")
    export.add_argument("--functions", metavar="CLASS[,CLASS]", default="",
                        help="export every instance of these module classes (BertLayer, or "
                             "the full class path) as a call of one ONNX function per "
                             "structure; the file is validated as folded")
    export.add_argument("--atol", type=non_negative_float, default=1e-4)
    export.add_argument("--rtol", type=non_negative_float, default=1e-3)
    export.add_argument("--clean", action="store_true",
                        help="write no node metadata (the sidecar keeps the hierarchy)")
    export.add_argument("--model-explorer", action="store_true",
                        help="also write each node's `namespace` for Google's Model Explorer")
    export.add_argument("--report", action="store_true",
                        help="also write <output>.report.md")
    export.add_argument("--trust-remote-code", action="store_true")
    export.add_argument("--json", action="store_true", help="print the report as JSON")
    _objective_arguments(export)
    export.add_argument("-v", "--verbose", action="store_true")

    recommend = sub.add_parser("recommend", help="analyse a model and recommend a strategy")
    recommend.add_argument("--model", required=True, help="as for export")
    recommend.add_argument("--task", choices=sorted(TASK_AUTO_CLASSES))
    _objective_arguments(recommend)
    recommend.add_argument("--trust-remote-code", action="store_true")
    recommend.add_argument("--json", action="store_true")

    zoo = sub.add_parser("zoo", help="the model zoo and the strategy matrix")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    run = zoo_sub.add_parser("run", help="every zoo model x every strategy, scored")
    run.add_argument("--tier", default="tiny", choices=[*ZOO_TIERS, "pretrained"],
                     help="wide: every transformers architecture, generated; idioms: plain "
                          "PyTorch shapes; pretrained: hub checkpoints (needs the hub)")
    run.add_argument("--models", nargs="+", action=NameList,
                     help="zoo entry names, spaced or comma-separated (default: the whole tier)")
    run.add_argument("--strategies", nargs="+", action=NameList,
                     help="spaced or comma-separated (default: every registered strategy)")
    run.add_argument("--weights", choices=["both", "native", "seeded"], default="both",
                     help="native: each model's own initialisation, as from_config leaves it; "
                          "seeded: unique seeded values in every tensor; both (default): each "
                          "model twice, the native one named MODEL@native")
    run.add_argument("--jobs", type=positive_int, default=None,
                     help="worker processes (default 2, 1 for full and pretrained: full-size "
                          "exports need several times the model's memory)")
    run.add_argument("--repeat", type=positive_int, default=3,
                     help="timed exports per cell, a model's strategies turn about; "
                          "time = median (default 3)")
    run.add_argument("--timeout", type=positive_float, default=None,
                     help="seconds per step of a cell: one export, or a model's build and "
                          "analysis (default 300 tiny, 3600 full)")
    run.add_argument("--out", default="out/zoo", help="folder for results.json and scoreboard")
    run.add_argument("--zoo-file", action="append", default=[],
                     help="Python file registering extra @zoo_entry models (repeatable)")
    run.add_argument("--strategy-file", action="append", default=[],
                     help="Python file registering extra strategies (repeatable)")
    run.add_argument("--expectations", help="expectations file (default: the zoo's own)")
    run.add_argument("--keep-onnx", action="store_true", help="keep each cell's ONNX in --out")
    run.add_argument("--shard", type=shard, metavar="K/N",
                     help="run the K-th of N parts of the models, balanced by recorded cost; "
                          "join the parts with `zoo merge`")
    run.add_argument("--costs", help="costs file for --shard (default: the zoo's own, "
                                     "written by `zoo costs`)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run cells on this Dask scheduler (tcp://host:8786) instead of "
                          "local worker processes")
    merge = zoo_sub.add_parser("merge", help="join the results of `zoo run --shard` parts into "
                               "one results.json and scoreboard, gated like a single run")
    merge.add_argument("results", nargs="+", help="every shard's results.json")
    merge.add_argument("--out", default="out/zoo", help="folder for the merged files")
    merge.add_argument("--expectations", help="expectations file (default: the zoo's own)")
    costs = zoo_sub.add_parser("costs", help="record each model's cost from results files "
                               "(what --shard balances)")
    costs.add_argument("results", nargs="+", help="results.json files, one per tier")
    costs.add_argument("--out", help="default: the zoo's own costs.json")
    listing = zoo_sub.add_parser("list", help="list zoo entries")
    listing.add_argument("--tier", choices=[*ZOO_TIERS, "pretrained"])
    listing.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                         help="build and run each entry once, saying why one cannot "
                              "(default: on for --tier wide)")
    listing.add_argument("--zoo-file", action="append", default=[])
    fit = zoo_sub.add_parser("fit-selector", help="refit selection_rules.json from zoo "
                             "results, and score the fit in-sample and cross-validated")
    fit.add_argument("results", nargs="+", help="results.json files (e.g. the wide, tiny and "
                     "idioms tiers)")
    fit.add_argument("--out", help="where to write the rules (default: the package's own "
                     "selection_rules.json)")
    fit.add_argument("--dry-run", action="store_true", help="score the fit, write nothing")
    fit.add_argument("--objective", action="append", choices=[o.value for o in Objective],
                     help="refit only this objective (repeatable); the others keep the "
                          "shipped rules (default: refit all)")
    fit.add_argument("--refresh-features", action="store_true",
                     help="recompute each model's features with the installed analyzer "
                          "(rebuilds the zoo entries; the matrix is not run again)")
    expect = zoo_sub.add_parser("expect", help="show or update the expectations file")
    expect.add_argument("--update", action="store_true",
                        help="rewrite expectations from --results (never automatic)")
    expect.add_argument("--results", default="out/zoo/results.json")
    expect.add_argument("--expectations", help="default: the zoo's own")

    gate = sub.add_parser("gate", help="time BASE and HEAD in paired exports; fail on regressions")
    gate.add_argument("--base", required=True, help="git ref to compare against")
    gate.add_argument("--head", default="HEAD")
    gate.add_argument("--repo", default=".", help="git checkout (default: here)")
    gate.add_argument("--rounds", type=positive_int, default=6, help="rounds (fresh workers)")
    gate.add_argument("--repeat", type=positive_int, default=10,
                      help="paired exports per cell per round")
    gate.add_argument("--threshold", type=non_negative_float,
                      help="allowed slowdown of the median paired CPU-time ratio "
                           "(default 0.05)")
    gate.add_argument("--models", nargs="+", action=NameList,
                      help="zoo entries, spaced or comma-separated (default: a 6-model subset)")
    gate.add_argument("--strategies", nargs="+", action=NameList,
                      help="spaced or comma-separated (default: every registered strategy)")
    gate.add_argument("--json", help="also write the verdict as JSON here")
    add_tool_parsers(sub)
    return parser


def _cmd_export(args: argparse.Namespace) -> int:
    from modelexport.api import UnifiedExporter
    from modelexport.input_generation.from_signature import generate_inputs
    from modelexport.input_generation.from_spec_file import inputs_from_spec_file
    from modelexport.sources import WITH_PAST_TASKS, load_model

    say = _progress(args.verbose or sys.stderr.isatty())
    say(f"[modelexport] loading {args.model}")
    loaded = load_model(args.model, task=args.task, trust_remote_code=args.trust_remote_code)
    if args.input_specs:
        inputs = inputs_from_spec_file(args.input_specs)
    elif loaded.inputs is not None:
        inputs = loaded.inputs
    else:
        inputs = generate_inputs(loaded.model, args.batch_size, args.sequence_length)
        _warn_if_shortened(inputs, args.sequence_length)
    exporter = UnifiedExporter(
        strategy=args.strategy,
        enable_optimizations=not args.no_optimize,
        enable_monitoring=args.verbose,
        opset=args.opset,
        static=args.static,
        dynamic_batch=args.dynamic_batch,
        dynamic_sequence=args.dynamic_sequence,
        dedupe_weights=args.dedupe_weights,
        clean=args.clean,
        model_explorer=args.model_explorer,
        validate=args.validate,
        atol=args.atol,
        rtol=args.rtol,
        markdown_report=args.report,
        objective=args.objective,
        with_past=args.task in WITH_PAST_TASKS,
        log=say,
        modules_as_functions=[c for c in args.functions.split(",") if c.strip()],
    )
    report = exporter.export(loaded.model, inputs, args.output)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_summary(report)
        for note in report.warnings:
            print(f"warning: {note}", file=sys.stderr)
    if not report.check_passed:
        print(f"error: the export's self-check failed: {'; '.join(report.check['failures'])}",
              file=sys.stderr)
        return EXIT_CHECK_FAILED
    if report.parity is not None and not report.parity["passed"]:
        print(f"error: parity failed: {report.parity['detail']}", file=sys.stderr)
        return EXIT_PARITY_FAILED
    if report.encoder is not None and not report.encoder["summary"]["success"]:
        encoder = report.encoder
        if not encoder["check"]["passed"]:
            print(f"error: the encoder's self-check failed: "
                  f"{'; '.join(encoder['check']['failures'])}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        print(f"error: the encoder's parity failed: {(encoder['parity'] or {}).get('detail')}",
              file=sys.stderr)
        return EXIT_PARITY_FAILED
    return EXIT_OK


def _warn_if_shortened(inputs: dict, requested: int) -> None:
    """Say so when the generated text is shorter than asked (the model's position limit)."""
    ids = inputs.get("input_ids")
    if ids is not None and ids.dim() == 2 and ids.shape[1] < requested:
        print(f"warning: --sequence-length {requested} is past the model's position limit; "
              f"the inputs are {ids.shape[1]} tokens long", file=sys.stderr)


def _objective_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objective", choices=[o.value for o in Objective], default="speed",
                        help="what AUTO's first pick optimises: export speed (default), tag "
                             "quality, or the ONNX Runtime speed of the file "
                             "(docs/strategies.md, 'Selector and AUTO')")
    parser.add_argument("--quality", dest="objective", action="store_const",
                        const=Objective.QUALITY.value, help="alias of --objective quality")


def _cmd_recommend(args: argparse.Namespace) -> int:
    from modelexport.input_generation.from_signature import generate_inputs
    from modelexport.selection.selector import recommend_strategy
    from modelexport.sources import load_model

    loaded = load_model(args.model, task=args.task, trust_remote_code=args.trust_remote_code)
    inputs = loaded.inputs
    if inputs is None:
        inputs = generate_inputs(loaded.model, 1, 16)
    pick = recommend_strategy(loaded.model, objective=args.objective, inputs=inputs)
    if args.json:
        print(json.dumps(pick.to_dict(), indent=2))
        return EXIT_OK
    traits = pick.characteristics
    print(f"model: {traits.model_class} ({traits.model_type}, {traits.module_count} modules, "
          f"{traits.parameter_count:,} parameters, {traits.estimated_complexity} complexity)")
    print(f"  huggingface: {traits.is_huggingface}; hints: "
          f"{', '.join(traits.framework_hints) or 'none'}")
    print(f"  data-dependent control flow: {traits.has_control_flow}; "
          f"shape-dependent branches: {traits.has_dynamic_shapes}; "
          f"direct grandchild calls: {traits.calls_nested_modules}")
    print(f"recommended: {pick.strategy} (confidence {pick.confidence:.2f}, "
          f"objective {pick.objective}, rule {pick.rule})")
    for reason in pick.reasons:
        print(f"  - {reason}")
    print(f"AUTO order: {' -> '.join(pick.fallback_order)}")
    return EXIT_OK


def _expectations_path(given: str | None):
    return _zoo_file(given, "expectations.json")


def _cmd_zoo(args: argparse.Namespace) -> int:
    commands = {"run": _zoo_run, "list": _zoo_list, "expect": _zoo_expect,
                "fit-selector": _zoo_fit_selector, "merge": _zoo_merge, "costs": _zoo_costs}
    return commands[args.zoo_command](args)


def _zoo_file(given: str | None, name: str):
    """``given``, or the zoo's own data file ``name``."""
    from pathlib import Path

    import model_zoo

    return Path(given) if given else Path(model_zoo.__file__).parent / name


def _zoo_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelexport.harness.results import load_expectations
    from modelexport.harness.runner import run_matrix, terminal_progress
    from modelexport.harness.sharding import model_costs, read_costs

    out = Path(args.out)
    small = args.tier != "full" and args.tier != "pretrained"
    timeout = args.timeout or (300.0 if small else 3600.0)
    if args.tier == "pretrained" and not _hub_answers():
        return EXIT_OK
    expectations = load_expectations(_expectations_path(args.expectations))
    costs = None
    if args.shard:
        costs = model_costs(read_costs(_zoo_file(args.costs, "costs.json"), args.tier))
    run = run_matrix(tier=args.tier, models=args.models, strategies=args.strategies,
                     jobs=args.jobs or (2 if small else 1),
                     repeat=args.repeat, timeout=timeout,
                     plugins=args.zoo_file + args.strategy_file,
                     keep_dir=str(out.resolve()) if args.keep_onnx else None,
                     progress=terminal_progress(), shard=args.shard, costs=costs,
                     scheduler=args.scheduler, weights=args.weights)
    return _publish(run, out, expectations)


def _zoo_merge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelexport.harness.results import load_expectations
    from modelexport.harness.runner import merge_runs

    expectations = load_expectations(_expectations_path(args.expectations))
    run = merge_runs([Path(p) for p in args.results])
    return _publish(run, Path(args.out), expectations)


def _publish(run, out, expectations: dict) -> int:
    """Write and print a run's results, then gate it on the expectations."""
    from modelexport.harness.results import check_expectations
    from modelexport.harness.runner import write_outputs
    from modelexport.harness.scoreboard import render

    results, board = write_outputs(run, out)
    print(render(run.cells, run.strategies, run.selector, run.wall_seconds, markdown=False,
                 selector_cv=run.selector_cv))
    print(f"results: {results}\nscoreboard: {board}")
    # a shard's selector scores cover only its models: the floors apply after `zoo merge`
    accuracy = {} if run.shard else run.accuracy()
    gate = check_expectations(expectations, run.tier, run.cells, accuracy)
    if run.shard:
        gate.notes.append("selector accuracy floors are checked on the merged run")
    for note in gate.notes:
        print(f"note: {note}")
    for failure in gate.failures:
        print(f"REGRESSION: {failure}", file=sys.stderr)
    return EXIT_OK if gate.passed else EXIT_REGRESSION


def _zoo_costs(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from modelexport.harness.results import read_results_or_fail
    from modelexport.harness.sharding import load_costs, updated_costs
    from modelexport.tools.writing import write_text

    target = _zoo_file(args.out, "costs.json")
    updated = updated_costs(load_costs(target),
                            [read_results_or_fail(Path(p)) for p in args.results])
    write_text(target, json.dumps(updated, indent=1) + "\n")
    for tier, costs in updated["tiers"].items():
        seconds = sum(sum(cells.values()) for cells in costs.values())
        print(f"{tier}: {len(costs)} models, {seconds:.0f}s recorded")
    print(f"costs: {target}")
    return EXIT_OK


def _cmd_gate(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from modelexport.gate.run import DEFAULT_THRESHOLD, run_gate

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    report = run_gate(Path(args.repo), args.base, args.head, rounds=args.rounds,
                      threshold=threshold, repeat=args.repeat, models=args.models,
                      strategies=args.strategies, log=_progress(True))
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return EXIT_OK if report.passed else EXIT_REGRESSION


def _hub_answers() -> bool:
    """Probe the hub once before a pretrained run; say plainly why it is skipped."""
    from model_zoo import entries
    from model_zoo.registry import hub_reachable

    candidates = entries("pretrained")
    why = hub_reachable(candidates[0].pretrained) if candidates else "no entry has a checkpoint"
    if why is not None:
        print(f"skipped: pretrained zoo models need the Hugging Face hub, which is not "
              f"reachable from here ({why}); the tiny and full tiers build the same "
              "families offline", file=sys.stderr)
        return False
    return True


def _zoo_list(args: argparse.Namespace) -> int:
    from model_zoo import entries
    from modelexport.harness.workers import import_plugin

    for plugin in args.zoo_file:
        import_plugin(plugin)
    listed = entries(args.tier)
    probe = args.probe if args.probe is not None else args.tier == "wide"
    runnable = 0
    for index, entry in enumerate(listed, 1):
        hub = f"  [hub: {entry.pretrained}]" if entry.pretrained else ""
        line = (f"{entry.name:16s} {entry.kind:12s} {entry.group:16s} "
                f"{','.join(entry.tiers):10s} {entry.notes}{hub}")
        if probe:
            print(f"[{index}/{len(listed)}] {entry.name}", file=sys.stderr, flush=True)
            result = entry.probe(args.tier or entry.tiers[0])
            runnable += result.runs
            line += (f"\n    runs ({result.family}): {result.parameters:,} parameters; "
                     f"{result.inputs}" if result.runs else f"\n    does not run: {result.reason}")
        print(line, flush=True)
    if probe:
        print(f"{runnable} of {len(listed)} entries build and run eagerly")
    return EXIT_OK


def _zoo_expect(args: argparse.Namespace) -> int:
    from modelexport.harness.results import (
        load_expectations,
        read_results_or_fail,
        updated_expectations,
    )

    path = _expectations_path(args.expectations)
    current = load_expectations(path)
    if not args.update:
        print(json.dumps(current, indent=2))
        return EXIT_OK
    results = read_results_or_fail(args.results)
    updated = updated_expectations(current, results)
    path.write_text(json.dumps(updated, indent=2) + "\n")
    tier = results["settings"]["tier"]
    section = updated["tiers"][tier]
    print(f"updated {path}: tier {tier}, {len(section['must_pass'])} cells must pass, "
          f"selector floors {section['selector_accuracy_floor']}")
    return EXIT_OK


def _zoo_fit_selector(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelexport.harness.selector_fit import fit_report, load_cells, refresh_features
    from modelexport.selection.selector import RULES_PATH, describe_tests, load_rules
    from modelexport.tools.writing import check_writable, write_text

    target = Path(args.out) if args.out else RULES_PATH
    if not args.dry_run:
        check_writable(target)
    cells, sources = load_cells([Path(p) for p in args.results])
    if args.refresh_features:
        say = _progress(True)
        failed = refresh_features(
            cells, lambda done, total, key: say(f"[{done}/{total}] features of {key}"))
        if failed:
            print(f"kept the recorded features of {len(failed)} models that no longer build "
                  f"here: {', '.join(failed)}", file=sys.stderr)
    refit = [Objective(o) for o in args.objective] if args.objective else list(Objective)
    kept = None if len(refit) == len(Objective) else load_rules()
    rules, scores = fit_report(cells, sources, refit, kept)
    for objective, table in rules["objectives"].items():
        state = "refitted" if Objective(objective) in refit else "kept as shipped"
        print(f"{objective} ({state}): {table['fitted_models']} models; AUTO order "
              f"{' -> '.join(table['fallback_order'])}")
        for rule in table["rules"]:
            tests = describe_tests(rule["when"]) or "otherwise"
            print(f"  {tests} -> {rule['strategy']} (best on {rule['right']} of "
                  f"{rule['matched']})")
        for label, score in scores[objective].items():
            constant, constant_accuracy = score.constant_baseline
            print(f"  {label}: accuracy {score.accuracy or 0:.1%} of {score.scored_models} "
                  f"models (always {constant}: {constant_accuracy or 0:.1%}), regret "
                  f"{score.regret:.2f}; confusion (best -> pick) {score.confusion}")
    if args.dry_run:
        return EXIT_OK
    write_text(target, json.dumps(rules, indent=2) + "\n")
    print(f"wrote {target}")
    return EXIT_OK


def _print_summary(report) -> None:
    c, s = report.coverage, report.summary
    print(f"exported {s.model_class} with {s.final_strategy} -> {report.outputs.onnx}")
    print(f"  nodes {c['nodes']}, coverage {c['coverage']:.1%}; exact {c['exact']:.1%}, "
          f"inherited {c['inherited']:.1%}, projected {c['projected']:.1%}, "
          f"root {c['root']:.1%}")
    accuracy = report.anchored["accuracy"]
    if report.anchored["anchored_nodes"]:
        print(f"  parameter nodes on their owner {accuracy:.1%} "
              f"({report.anchored['anchored_nodes']} parameter-consuming nodes)")
    print(f"  self-check {'passed' if report.check_passed else 'FAILED'} "
          "(ONNX checker, ONNX Runtime load, inputs by name, parameter owners)")
    if report.parity is not None:
        p = report.parity
        verdict = "passed" if p["passed"] else "FAILED"
        print(f"  parity {verdict}: max abs {p['max_abs']:.2e}, max rel {p['max_rel']:.2e}")
    for attempt in s.attempts:
        if not attempt.success:
            axes = f" [{attempt.axes}]" if attempt.axes else ""
            print(f"  attempt {attempt.strategy}{axes} failed: {attempt.error_type}: "
                  f"{attempt.error}")
    folded = report.settings.get("functions") or {}
    for function in folded.get("functions", []):
        instances = function["instances"]
        shown = ", ".join(instances[:3]) + (", ..." if len(instances) > 3 else "")
        print(f"  function {function['name'].rsplit('.', 1)[-1]}: {function['nodes']} nodes, "
              f"called by {len(instances)} instances ({shown})")
    print(f"  sidecar {report.outputs.sidecar}")
    if report.outputs.encoder:
        print(f"  encoder {report.outputs.encoder} (with its own sidecar)")
    if report.outputs.report:
        print(f"  report {report.outputs.report}")
    print(f"  total {s.total_seconds:.2f}s")


_COMMANDS = {"export": _cmd_export, "recommend": _cmd_recommend, "zoo": _cmd_zoo,
             "gate": _cmd_gate, **TOOL_COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return _COMMANDS[args.command](args)
    except ModelExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
