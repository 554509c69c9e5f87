"""``modelexport quantize``: int8 quantization of chosen modules, from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from modelexport.cli.args import EXIT_OK, non_negative_int
from modelexport.tools.module_view import open_view


def add_quantize_parser(sub: Any) -> None:
    quantize = sub.add_parser("quantize", help="int8 quantization of chosen modules only, "
                              "with the error at each module's output")
    quantize.add_argument("file")
    quantize.add_argument("-o", "--output", required=True)
    quantize.add_argument("--mode", default="dynamic", choices=["dynamic", "static"],
                          help="dynamic (weights int8, activations at run time; default) or "
                               "static (QDQ, calibrated on generated inputs)")
    quantize.add_argument("--include", action="append", default=[], metavar="PATH_GLOB",
                          help="quantize only these modules (with everything inside them)")
    quantize.add_argument("--exclude", action="append", default=[], metavar="PATH_GLOB",
                          help="keep these modules in float ('encoder.layer.0.*')")
    quantize.add_argument("--depth", type=non_negative_int, default=3,
                          help="report modules at this depth (root 0; default 3)")
    quantize.add_argument("--dim", action="append", help="symbolic dimension NAME=VALUE")
    quantize.add_argument("--json", action="store_true")


def cmd_quantize(args: argparse.Namespace) -> int:
    from modelexport.input_generation.for_graph import generated_feeds, parse_dims
    from modelexport.output.sidecar import derive_sidecar
    from modelexport.tools.quantize import CALIBRATION_BATCHES, quantize_model, render_table
    from modelexport.tools.writing import check_writable, write_model

    check_writable(args.output, args.file)
    view = open_view(args.file, external_data=True)
    dims = parse_dims(args.dim)
    feeds = [generated_feeds(view.model, dims, seed=seed) for seed in range(CALIBRATION_BATCHES)]
    quantized, result = quantize_model(view, args.mode, args.include, args.exclude, feeds,
                                       args.depth)
    sidecar = None
    if view.sidecar:
        sidecar = derive_sidecar(view.sidecar, quantized,
                                 note=f"{args.file} quantized ({args.mode} int8)")
    target = write_model(args.output, quantized, sidecar)
    if args.json:
        print(json.dumps({"output": str(target), **result.as_dict()}, indent=2))
    else:
        print(render_table(result))
        print(f"wrote {target}")
    return EXIT_OK
