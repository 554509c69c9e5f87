"""The ``modelexport`` commands that work on an exported file.

``analyze``, ``validate``, ``compare``, ``extract``, ``profile``, ``optimize``
and ``retag``.  Like the export commands, a bad file, a missing module or an
unwritable output ends with one ``error:`` line and exit code 2; a file that
fails validation (or differs, with ``compare --fail-on-difference``) exits 1.
Tables go to stdout, or to ``-o`` for the machine formats.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from modelexport.cli.args import (
    EXIT_FAILED,
    EXIT_OK,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from modelexport.cli.quantize import add_quantize_parser, cmd_quantize
from modelexport.errors import ModelExportError
from modelexport.tools.module_view import open_view


def add_tool_parsers(sub: Any) -> None:
    """Register the file tools on the ``modelexport`` subparsers."""
    from modelexport.onnx_runtime.sessions import OPTIMIZING_LEVELS
    from modelexport.sources import TASK_AUTO_CLASSES
    from modelexport.tools.optimizers import OPTIMIZERS
    from modelexport.tools.profile import LEVELS

    analyze = sub.add_parser("analyze", help="per-module nodes, op types and parameter bytes")
    analyze.add_argument("file")
    analyze.add_argument("--format", default="summary",
                         choices=["summary", "json", "csv", "graphml"])
    analyze.add_argument("--filter", help="only modules whose path or class contains TEXT")
    analyze.add_argument("--depth", type=non_negative_int,
                         help="only modules down to this depth (root 0)")
    analyze.add_argument("-o", "--output", help="write here instead of stdout")

    validate = sub.add_parser("validate",
                              help="checker and ORT load, tag and region checks, parity")
    validate.add_argument("file")
    validate.add_argument("--model", help="the PyTorch model (as for export): parity and "
                          "parameter ownership")
    validate.add_argument("--task", choices=sorted(TASK_AUTO_CLASSES))
    validate.add_argument("--trust-remote-code", action="store_true")
    validate.add_argument("--per-module", action="store_true",
                          help="with --model: name the first modules whose outputs diverge")
    validate.add_argument("--batch-size", type=positive_int,
                          help="for generated inputs (default: the file's own shapes)")
    validate.add_argument("--sequence-length", type=positive_int)
    validate.add_argument("--atol", type=non_negative_float, default=1e-4)
    validate.add_argument("--rtol", type=non_negative_float, default=1e-3)
    validate.add_argument("--json", action="store_true", help="print the report as JSON")

    generate = sub.add_parser("generate", help="greedy decoding with ONNX Runtime alone, on a "
                              "file exported with --task text-generation-with-past (or the "
                              "decoder file of --task text2text-generation-with-past)")
    generate.add_argument("file")
    generate.add_argument("--prompt-ids", action="append", required=True, type=token_ids,
                          help="one prompt's token ids, spaced or comma-separated "
                               "(repeatable: the prompts run as one left-padded batch)")
    generate.add_argument("--max-new-tokens", type=positive_int, default=20)
    generate.add_argument("--pad-id", type=non_negative_int, default=0)
    generate.add_argument("--eos-id", type=non_negative_int,
                          help="a row that produces it is padded from then on")
    generate.add_argument("--encoder", help="an encoder-decoder's encoder file (default: the "
                          "NAME.encoder.onnx beside the decoder file)")
    generate.add_argument("--decoder-start-id", type=non_negative_int,
                          help="an encoder-decoder's first decoder token (default: the one "
                               "the export recorded in the sidecar)")
    generate.add_argument("--json", action="store_true")

    compare = sub.add_parser("compare", help="module-by-module differences of two exports")
    compare.add_argument("file_a")
    compare.add_argument("file_b")
    compare.add_argument("--depth", type=non_negative_int)
    compare.add_argument("--json", action="store_true")
    compare.add_argument("--fail-on-difference", action="store_true",
                         help="exit 1 when any module differs")

    extract = sub.add_parser("extract", help="one module as a standalone ONNX model")
    extract.add_argument("file")
    extract.add_argument("--module", required=True, help="module path, e.g. encoder.layer.0")
    extract.add_argument("-o", "--output", required=True)
    extract.add_argument("--verify", action="store_true",
                         help="run both models and compare the boundary tensors")
    extract.add_argument("--dim", action="append", help="symbolic dimension NAME=VALUE")

    profile = sub.add_parser("profile", help="ONNX Runtime kernel time per module")
    profile.add_argument("file")
    profile.add_argument("--warmup", type=non_negative_int, default=3)
    profile.add_argument("--repeats", type=positive_int, default=20)
    profile.add_argument("--level", default="all", choices=LEVELS,
                         help="ONNX Runtime graph optimisation level (default all)")
    profile.add_argument("--threads", type=non_negative_int, default=0,
                         help="intra-op threads (0: ORT's)")
    profile.add_argument("--depth", type=non_negative_int,
                         help="rows down to this depth; the parts that add up to the run are "
                              "cut here (default 1)")
    profile.add_argument("--top", type=positive_int, help="only the N modules with most total time")
    profile.add_argument("--plot", metavar="FILE.svg|FILE.png",
                         help="also draw the time per module at --depth as a bar chart "
                              "(PNG needs Pillow)")
    profile.add_argument("--format", default="table", choices=["table", "json", "csv"])
    profile.add_argument("--dim", action="append", help="symbolic dimension NAME=VALUE")
    profile.add_argument("-o", "--output", help="write here instead of stdout")

    add_quantize_parser(sub)

    optimize = sub.add_parser("optimize", help="run a graph optimiser, then restore the tags")
    optimize.add_argument("file")
    optimize.add_argument("--with", dest="optimizer", required=True, choices=OPTIMIZERS)
    optimize.add_argument("--ort-level", default="extended", choices=OPTIMIZING_LEVELS)
    optimize.add_argument("-o", "--output", required=True)
    optimize.add_argument("--json", action="store_true")

    retag = sub.add_parser("retag", help="restore tags on a file another tool rewrote")
    retag.add_argument("file", help="the rewritten file")
    retag.add_argument("--reference", required=True, help="the tagged file it came from")
    retag.add_argument("-o", "--output", required=True)
    retag.add_argument("--json", action="store_true")


def _emit(text: str, output: str | None) -> None:
    from modelexport.tools.writing import write_text

    if output:
        target = write_text(output, text if text.endswith("\n") else text + "\n")
        print(f"wrote {target}", file=sys.stderr)
    else:
        print(text.rstrip("\n"))


def cmd_analyze(args: argparse.Namespace) -> int:
    from modelexport.tools import analyze as analysis
    from modelexport.tools.graphml import render_graphml
    from modelexport.tools.writing import check_writable

    if args.output:
        check_writable(args.output, args.file)
    view = open_view(args.file)
    if args.format == "graphml":
        _emit(render_graphml(view), args.output)
        return EXIT_OK
    result = analysis.analyze(view)
    rows = analysis.select(result, args.filter, args.depth)
    if args.filter and not rows:
        raise ModelExportError(f"no module path or class contains {args.filter!r}")
    render = {"summary": lambda: analysis.render_summary(result, rows,
                                                         full_paths=bool(args.filter)),
              "json": lambda: analysis.render_json(result, rows),
              "csv": lambda: analysis.render_csv(rows)}[args.format]
    _emit(render(), args.output)
    return EXIT_OK


def _static_hints(view) -> tuple[int | None, int | None]:
    """Batch and sequence length of the file's first input, where they are fixed."""
    from modelexport.input_generation.for_graph import graph_inputs

    inputs = graph_inputs(view.model)
    if not inputs:
        return None, None
    dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
    return (dims[0] if dims else None), (dims[1] if len(dims) == 2 else None)


def _model_and_inputs(args: argparse.Namespace, view):
    """The model to compare with and its example, in ``forward``'s order."""
    from modelexport.input_generation.from_signature import generate_inputs
    from modelexport.inputs import ModelInputs, in_signature_order
    from modelexport.sources import load_model

    loaded = load_model(args.model, task=args.task, trust_remote_code=args.trust_remote_code)
    if loaded.inputs is not None:
        example = loaded.inputs
    else:
        batch, sequence = _static_hints(view)
        example = generate_inputs(loaded.model, args.batch_size or batch or 1,
                                  args.sequence_length or sequence or 16)
    loaded.model.eval()
    return loaded.model, in_signature_order(loaded.model, ModelInputs.from_user(example))


def cmd_validate(args: argparse.Namespace) -> int:
    from modelexport.validation.saved_file import validate_file

    if args.per_module and not args.model:
        raise ModelExportError("--per-module needs --model (the PyTorch model to compare with)")
    view = open_view(args.file, check=False)
    model, example = _model_and_inputs(args, view) if args.model else (None, None)
    report = validate_file(view, model, example, atol=args.atol, rtol=args.rtol,
                           per_module=args.per_module)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_validation(report)
    return EXIT_OK if report.passed else EXIT_FAILED


def _print_validation(report) -> None:
    print(f"{report.file}: {report.nodes} nodes, {report.modules} modules "
          f"(module information from {report.origin})")
    for finding in report.findings:
        print(f"  {finding.line()}")
    if report.parity is not None:
        p = report.parity
        print(f"  parity {'passed' if p['passed'] else 'FAILED'}: max abs {p['max_abs']:.2e}, "
              f"max rel {p['max_rel']:.2e} (atol {p['atol']:g}, rtol {p['rtol']:g})")
    if report.ownership is not None:
        o = report.ownership
        share = "no parameter readers" if o["accuracy"] is None else f"{o['accuracy']:.1%}"
        print(f"  parameter owners: {o['correct']} of {o['anchored_nodes']} "
              f"parameter-reading nodes on an owner ({share})")
    if report.per_module is not None:
        s = report.per_module
        print(f"  per-module: {s['calls']} module calls, {s['matched']} match, "
              f"{s['fused']} fused with a neighbour, {s['unmapped']} without an ONNX "
              f"counterpart, {s['diverged']} diverge")
        for row in s["first_diverged"]:
            print(f"    #{row['order']:<4} {row['module'] or '(root)'}: max abs "
                  f"{row['max_abs']:.3e}, max rel {row['max_rel']:.3e} "
                  f"(ONNX tensor {row['onnx_tensor']})")
    print("PASSED" if report.passed else "FAILED")


def cmd_compare(args: argparse.Namespace) -> int:
    from modelexport.tools.analyze import analyze
    from modelexport.tools.compare import compare, render_comparison

    result = compare(analyze(open_view(args.file_a)), analyze(open_view(args.file_b)), args.depth)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(render_comparison(result, args.file_a, args.file_b))
    return EXIT_FAILED if args.fail_on_difference and not result.identical else EXIT_OK


def cmd_extract(args: argparse.Namespace) -> int:
    from modelexport.input_generation.for_graph import parse_dims
    from modelexport.output.sidecar import derive_sidecar
    from modelexport.tools.extract import boundary_error, extract_module
    from modelexport.tools.writing import check_writable, write_model

    check_writable(args.output, args.file)
    dims = parse_dims(args.dim)
    view = open_view(args.file, external_data=True)
    extraction = extract_module(view, args.module, dims)
    sidecar = None
    if view.sidecar:
        sidecar = derive_sidecar(view.sidecar, extraction.model, scope=args.module,
                                 note=f"extracted module {args.module!r} from {args.file}")
    target = write_model(args.output, extraction.model, sidecar)
    b = extraction.boundary
    print(f"extracted {args.module}: {len(extraction.node_indices)} nodes, "
          f"{len(b.inputs)} inputs, {len(b.outputs)} outputs, "
          f"{len(b.initializers)} initializers -> {target}")
    print(f"  inputs:  {', '.join(b.inputs)}")
    print(f"  outputs: {', '.join(b.outputs)}")
    if args.verify:
        error = boundary_error(view.model, extraction, dims)
        print(f"  boundary check: max abs difference {error:.3e} vs the whole model")
        if not error <= 1e-4:
            print("error: the extracted model disagrees with the whole model", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    from modelexport.input_generation.for_graph import generated_feeds, parse_dims
    from modelexport.tools import profile as profiling
    from modelexport.tools.writing import check_writable

    if args.output:
        check_writable(args.output, args.file)
    if args.plot:
        kind = Path(args.plot).suffix.lower()
        if kind not in (".svg", ".png"):
            raise ModelExportError(f"--plot writes SVG or PNG; name the file *.svg or *.png, "
                                   f"not {args.plot}")
        if kind == ".png" and importlib.util.find_spec("PIL") is None:
            raise ModelExportError("--plot *.png needs Pillow (pip install Pillow, or the "
                                   "'tools' extra); *.svg needs nothing")
        check_writable(args.plot, args.file)
    if args.repeats < 1 or args.warmup < 0:
        raise ModelExportError("--repeats must be at least 1 and --warmup at least 0")
    view = open_view(args.file)
    feeds = generated_feeds(view.model, parse_dims(args.dim))
    if sys.stderr.isatty():
        print(f"[modelexport] profiling {args.file}: {args.warmup} warm-up + {args.repeats} "
              "runs", file=sys.stderr)
    result = profiling.profile_model(view, Path(args.file), feeds, args.warmup, args.repeats,
                                     args.level, args.threads)
    rows = profiling.select_rows(result, args.depth, args.top)
    render = {"table": profiling.render_table, "json": profiling.render_json,
              "csv": profiling.render_csv}[args.format]
    _emit(render(result, rows, args.depth), args.output)
    if args.plot:
        from modelexport.tools.profile_chart import profile_png, profile_svg
        from modelexport.tools.writing import write_bytes, write_text

        depth = 1 if args.depth is None else args.depth
        if args.plot.lower().endswith(".png"):
            target = write_bytes(args.plot, profile_png(result, depth, args.top))
        else:
            target = write_text(args.plot, profile_svg(result, depth, args.top))
        print(f"wrote {target}", file=sys.stderr)
    return EXIT_OK


def _retagged_output(view, rewritten, output: str, note: str, as_json: bool,
                     label: str) -> int:
    from modelexport.output.sidecar import derive_sidecar
    from modelexport.tools.retag import retag
    from modelexport.tools.writing import write_model

    result = retag(rewritten, view)
    sidecar = None
    if view.sidecar:
        sidecar = derive_sidecar(view.sidecar, rewritten, note=note)
    target = write_model(output, rewritten, sidecar)
    if as_json:
        print(json.dumps({"output": str(target), **result.as_dict()}, indent=2))
        return EXIT_OK
    rules = ", ".join(f"{rule} {count}" for rule, count in result.rules.most_common())
    print(f"{label}: {len(view.nodes)} -> {result.nodes} nodes; tag coverage "
          f"{result.coverage_before:.1%} before retag, {result.coverage_after:.1%} after")
    print(f"  rules: {rules}; duplicated keys folded on {result.duplicates_fixed} nodes")
    print(f"  wrote {target}")
    return EXIT_OK


def cmd_optimize(args: argparse.Namespace) -> int:
    from modelexport.tools.optimizers import optimize
    from modelexport.tools.writing import check_writable

    check_writable(args.output, args.file)
    view = open_view(args.file, external_data=True)
    rewritten = optimize(view.model, args.optimizer, args.ort_level)
    return _retagged_output(view, rewritten, args.output,
                            f"{args.file} optimised by {args.optimizer}", args.json,
                            args.optimizer)


def cmd_retag(args: argparse.Namespace) -> int:
    from modelexport.tools.onnx_file import load_graph
    from modelexport.tools.writing import check_writable

    check_writable(args.output, args.reference)
    view = open_view(args.reference)
    rewritten = load_graph(args.file, external_data=True)
    return _retagged_output(view, rewritten, args.output,
                            f"{args.file} re-tagged from {args.reference}", args.json, "retag")


def token_ids(text: str) -> list[int]:
    """``"1 2 3"`` or ``"1,2,3"`` -> [1, 2, 3]; anything else is a usage error."""
    parts = text.replace(",", " ").split()
    if not parts or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"token ids are non-negative integers, not {text!r}")
    return [int(part) for part in parts]


def cmd_generate(args: argparse.Namespace) -> int:
    from modelexport.generation import greedy_generate

    result = greedy_generate(args.file, args.prompt_ids, args.max_new_tokens,
                             pad_id=args.pad_id, eos_id=args.eos_id, encoder=args.encoder,
                             decoder_start_id=args.decoder_start_id)
    if args.json:
        print(json.dumps({"prompts": args.prompt_ids, "new_tokens": result.as_lists()}))
        return EXIT_OK
    for prompt, new in zip(args.prompt_ids, result.as_lists()):
        print(f"{' '.join(map(str, prompt))} -> {' '.join(map(str, new))}")
    return EXIT_OK


TOOL_COMMANDS = {"analyze": cmd_analyze, "generate": cmd_generate, "validate": cmd_validate,
                 "compare": cmd_compare,
                 "extract": cmd_extract, "profile": cmd_profile, "optimize": cmd_optimize,
                 "quantize": cmd_quantize, "retag": cmd_retag}
