"""The ``<output>.hierarchy.json`` sidecar: module tree, node map and figures.

It is written for every export, clean or tagged, so a clean ONNX file still
has its hierarchy next to it.  ``SIDECAR_SCHEMA`` changes whenever a field's
meaning does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from modelexport.hierarchy import ModuleTree
from modelexport.tags import NodeTag

SIDECAR_SCHEMA = "modelexport.hierarchy/1"


def node_counts(tags: Sequence[NodeTag]) -> dict[str, int]:
    return dict(Counter(tag.module for tag in tags))


def build_sidecar(
    *,
    graph: onnx.ModelProto,
    tags: Sequence[NodeTag],
    tree: ModuleTree,
    strategy: str,
    version: str,
    figures: dict[str, Any],
    timings: dict[str, float],
    settings: dict[str, Any],
) -> dict[str, Any]:
    nodes = {}
    for node, tag in zip(graph.graph.node, tags):
        entry = {"op": node.op_type, "module": tag.module, "tag": tag.tag,
                 "source": tag.source.value}
        if tag.call is not None:
            entry["call"] = tag.call
        nodes[node.name] = entry
    return {
        "schema": SIDECAR_SCHEMA,
        "modelexport_version": version,
        "model_class": tree.root_class,
        "strategy": strategy,
        "settings": settings,
        "modules": tree.to_records(node_counts(tags)),
        "nodes": nodes,
        "figures": figures,
        "timings": timings,
    }


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Load a sidecar, refusing files of another schema."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("schema") != SIDECAR_SCHEMA:
        raise ValueError(f"{path} is not a {SIDECAR_SCHEMA} sidecar")
    return data
