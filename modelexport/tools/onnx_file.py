"""Load an ONNX file for the tools, turning every way it can be broken into one line.

A user points a tool at a path; it may be missing, a directory, not ONNX at
all, truncated, or an ONNX model without a graph.  Protobuf parses some
truncated files without complaint, so a parse is followed by the ONNX checker
(which is cheap: it does not run shape inference).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from modelexport.errors import ModelExportError, one_line


class GraphFileError(ModelExportError):
    """The file is not a usable ONNX model."""


def load_graph(path: str | Path, *, external_data: bool = False,
               check: bool = True) -> onnx.ModelProto:
    """Read an ONNX file; weights stored outside it are loaded only when asked.

    Tools that only read structure and tags never need the weights, which can
    be gigabytes; ``external_data=True`` is for tools that run or copy them.
    """
    file = Path(path)
    if not file.exists():
        raise GraphFileError(f"{file}: no such file")
    if file.is_dir():
        raise GraphFileError(f"{file} is a directory, not an ONNX file")
    try:
        model = onnx.load(str(file), load_external_data=external_data)
    except Exception as exc:  # protobuf and onnx raise many types on bad bytes
        raise GraphFileError(f"{file} is not a readable ONNX model: {one_line(exc)}") from None
    if not _all_text(model):
        raise GraphFileError(f"{file} is corrupt: a name or metadata string is not valid UTF-8")
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise GraphFileError(f"{file} is not an ONNX model with a graph (empty or truncated?)")
    if check:
        try:
            onnx.checker.check_model(str(file))  # by path: external data resolves beside it
        except Exception as exc:
            raise GraphFileError(f"{file} fails the ONNX checker: {one_line(exc)}") from None
    return model


def _all_text(model: onnx.ModelProto) -> bool:
    """Protobuf hands back ``bytes`` for string fields holding invalid UTF-8."""
    graph = model.graph
    strings: list[object] = [p.key for p in model.metadata_props]
    strings += [p.value for p in model.metadata_props]
    for node in graph.node:
        strings += [node.name, node.op_type, node.domain, *node.input, *node.output]
        strings += [v for p in node.metadata_props for v in (p.key, p.value)]
    for value in [*graph.input, *graph.output, *graph.value_info]:
        strings.append(value.name)
    strings += [init.name for init in graph.initializer]
    return all(isinstance(text, str) for text in strings)
