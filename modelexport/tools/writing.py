"""Write a tool's output file whole or not at all.

Everything goes through the same staging folder as exports
(:class:`modelexport.output.files.StagedOutput`): an unwritable path fails before
work is lost, and an interrupted write leaves no half-written file.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from modelexport.errors import ModelExportError
from modelexport.output.files import (
    PROTOBUF_LIMIT_BYTES,
    StagedOutput,
    external_data_path_for,
    sidecar_path_for,
)
from modelexport.output.onnx_payload import model_bytes


def check_writable(path: str | Path, *sources: str | Path) -> None:
    """Fail early (one line) when ``path`` cannot be written, or would replace a source.

    A tool that writes over the file it reads loses the original the moment
    it succeeds: ``extract x.onnx -o x.onnx`` would leave only the layer.
    """
    target = Path(path).resolve()
    for source in sources:
        if Path(source).resolve() == target:
            raise ModelExportError(f"the output {path} is the input file; choose another "
                                   "output so the original is kept")
    StagedOutput.open(path).close()


def write_text(path: str | Path, text: str) -> Path:
    staged = StagedOutput.open(path)
    try:
        staged.write_text(staged.target, text)
        staged.commit([staged.target])
    finally:
        staged.close()
    return staged.target


def write_bytes(path: str | Path, data: bytes) -> Path:
    staged = StagedOutput.open(path)
    try:
        staged.staged(staged.target).write_bytes(data)
        staged.commit([staged.target])
    finally:
        staged.close()
    return staged.target


def write_model(path: str | Path, model: onnx.ModelProto, sidecar: dict | None = None) -> Path:
    """Save ``model`` (and its sidecar); weights go to ``<name>.data`` only when needed."""
    staged = StagedOutput.open(path)
    try:
        external = model_bytes(model) > PROTOBUF_LIMIT_BYTES
        staged.write_onnx(model, external_data=external)
        finals = [staged.target]
        if external:
            finals.append(external_data_path_for(staged.target))
        if sidecar is not None:
            staged.write_json(sidecar_path_for(staged.target), sidecar)
            finals.append(sidecar_path_for(staged.target))
        staged.commit(finals)
    finally:
        staged.close()
    return staged.target
