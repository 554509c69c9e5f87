"""A module's nodes as a region of the graph: its boundary and whether it is whole.

A module's region is the nodes tagged with it or a descendant.  Its inputs
are the tensors it reads that it does not make; its outputs are the tensors
it makes that something outside reads (or that leave the graph).  Tags are
consistent with the graph when every region is *convex*: no path leaves the
region and comes back in.  A path that does means a node outside the module
computes something from the module's output that the module then reads; no
forward call can do that, so one of the tags on the path is wrong.  (A module
that ran several times is several regions; validate checks each connected
part of such a module separately.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from modelexport.tagging import graph_edges


@dataclass(frozen=True)
class Boundary:
    """The tensors that cross a region's edge, in graph order."""

    inputs: list[str]
    outputs: list[str]
    initializers: list[str]


class RegionIndex:
    """Producer and consumer maps of one graph, built once for many regions."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes = model.graph.node
        self.producer, self.consumers = graph_edges(self.nodes)
        self.weights = {init.name for init in model.graph.initializer}
        self.graph_outputs = {o.name for o in model.graph.output}

    def boundary(self, region: Sequence[int]) -> Boundary:
        """Inputs, outputs and initializers of the nodes at ``region`` (indices)."""
        inside = set(region)
        ordered = sorted(inside)
        made = {name for i in ordered for name in self.nodes[i].output if name}
        inputs: list[str] = []
        initializers: list[str] = []
        seen: set[str] = set()
        for index in ordered:
            for name in self.nodes[index].input:
                if not name or name in made or name in seen:
                    continue
                seen.add(name)
                (initializers if name in self.weights else inputs).append(name)
        outputs = [
            name for i in ordered for name in self.nodes[i].output
            if name and (name in self.graph_outputs
                         or any(c not in inside for c in self.consumers.get(name, ())))
        ]
        return Boundary(inputs, outputs, initializers)

    def convexity_breaks(self, region: Sequence[int]) -> list[int]:
        """Outside nodes on a path that leaves ``region`` and re-enters it.

        Walks forward from the region through outside nodes only; a walked
        node feeding the region again is a break.  Nodes of a valid ONNX graph
        are topologically sorted, so the walk stops at the region's last node.
        """
        if not region:
            return []
        inside = set(region)
        last = max(inside)

        def next_outside(index: int) -> list[int]:
            return [c for name in self.nodes[index].output
                    for c in self.consumers.get(name, ()) if c not in inside and c < last]

        reached: set[int] = set()
        frontier = [c for i in inside for c in next_outside(i)]
        while frontier:
            index = frontier.pop()
            if index not in reached:
                reached.add(index)
                frontier.extend(next_outside(index))
        return sorted(
            index for index in reached
            if any(c in inside for name in self.nodes[index].output
                   for c in self.consumers.get(name, ()))
        )
