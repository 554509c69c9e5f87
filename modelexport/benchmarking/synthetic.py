"""Synthetic graphs for timing the tagging pass alone, at any size.

A real model's tagging cost is buried under the exporter's; to show how
resolve + project + write grows with graph size, this builds a module tree
and a TorchScript-style graph of ``n`` nodes (one in ten scope-less, as
export passes leave them) without exporting anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch
from onnx import helper

from modelexport.attribution.scopes import resolve_scope, scope_segments
from modelexport.hierarchy import ModuleTree
from modelexport.tagging import Assignment, complete_tags, paused_gc
from modelexport.tags import TagSource, write_tags


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.Linear(2, 2)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU())


class _Stack(torch.nn.Module):
    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(_Block() for _ in range(blocks))


@dataclass
class SyntheticCase:
    graph: onnx.ModelProto
    tree: ModuleTree


def synthetic_case(nodes: int, blocks: int = 48) -> SyntheticCase:
    """A chain of ``nodes`` ops spread over ``blocks`` transformer-like blocks."""
    tree = ModuleTree(_Stack(blocks))
    scopes = ["blocks.{b}/attn", "blocks.{b}", "blocks.{b}/mlp/mlp.0", "blocks.{b}/mlp/mlp.1"]
    made = []
    previous = "x"
    for index in range(nodes):
        block = index * blocks // nodes
        output = f"t{index}"
        if index % 10 == 9:
            name = f"Constant_{index}"  # scope-less, as export passes leave them
            made.append(helper.make_node("Constant", [], [output], name=name,
                                         value=helper.make_tensor("v", 1, [], [1.0])))
            made.append(helper.make_node("Add", [previous, output], [f"s{index}"],
                                         name=f"/wrapped/blocks.{block}/Add_{index}"))
            previous = f"s{index}"
            continue
        scope = scopes[index % len(scopes)].format(b=block)
        made.append(helper.make_node("Relu", [previous], [output],
                                     name=f"/wrapped/{scope}/Relu_{index}"))
        previous = output
    graph = helper.make_graph(
        made, "synthetic",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(previous, onnx.TensorProto.FLOAT, [1])],
    )
    return SyntheticCase(graph=helper.make_model(graph), tree=tree)


def tag_synthetic(case: SyntheticCase) -> int:
    """Resolve every scope, project the rest, write the tags; returns nodes tagged."""
    with paused_gc():
        return _tag(case)


def _tag(case: SyntheticCase) -> int:
    assigned: list[Assignment | None] = []
    for node in case.graph.graph.node:
        segments = scope_segments(node.name)
        if segments is None:
            assigned.append(None)
            continue
        module, complete = resolve_scope(segments, case.tree)
        assigned.append(Assignment(module, TagSource.EXACT if complete else TagSource.INHERITED))
    tags = complete_tags(case.graph.graph.node, assigned, case.tree)
    write_tags(case.graph, tags, "htp", "synthetic")
    return len(tags)
