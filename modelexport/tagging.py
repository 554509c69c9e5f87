"""Turn a strategy's partial node-to-module assignment into a full tagging.

Strategies know the module of most nodes (``exact`` or ``inherited``); export
passes also create nodes with no scope at all: constants, shape arithmetic,
``Identity`` nodes for deduplicated initializers.  Those are *projected* from
their graph neighbours instead of being dumped on the root:

1. backwards, in reverse topological order: a node takes the common ancestor
   of the modules that consume its outputs (a constant belongs where it is
   used);
2. forwards, in topological order: what is still unknown takes the common
   ancestor of the modules that produce its inputs;
3. whatever is left (an isolated node) goes to the root with source ``root``.

Both passes touch every edge once, so the cost is linear in the graph size.
Call indices are then derived from the graph order, validated against the
call counts the forward hooks recorded.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import onnx

from modelexport.hierarchy import ROOT, ModuleTree, ancestors, common_ancestor, is_within
from modelexport.tags import NodeTag, TagSource


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector during a per-node pass.

    Tagging allocates a few objects per node and none of them form cycles,
    yet each allocation burst triggers full collections whose cost grows
    with the live heap: on a 110k-node graph that made the pass 16x slower
    than on 11k nodes instead of 10x (measured by benchmarks/bench_tagging.py).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class Assignment:
    """A strategy's verdict on one node: its module and how sure it is."""

    module: str
    source: TagSource


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Tensors a node reads: its inputs, and what its subgraphs (an ``If``'s branches, a
    ``Loop``'s body) read from the enclosing graph."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
        for graph in graphs:
            defined = {v.name for v in graph.input} | {i.name for i in graph.initializer}
            defined |= {out for inner in graph.node for out in inner.output}
            names += [name for inner in graph.node for name in node_reads(inner)
                      if name not in defined]
    return names


def graph_edges(nodes: Sequence[onnx.NodeProto]) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Which node produces each tensor, and which nodes consume it (by node index; a node
    whose subgraph reads a tensor of the enclosing graph consumes it too)."""
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if name:
                producer[name] = index
        for name in dict.fromkeys(node_reads(node)):
            consumers.setdefault(name, []).append(index)
    return producer, consumers


def project_assignments(
    nodes: Sequence[onnx.NodeProto], assigned: Sequence[Assignment | None]
) -> list[Assignment]:
    """Fill every ``None`` in ``assigned`` from graph neighbours (see module doc)."""
    result: list[Assignment | None] = list(assigned)
    producer, consumers = graph_edges(nodes)

    for index in range(len(nodes) - 1, -1, -1):
        if result[index] is not None:
            continue
        used_by = [
            result[c].module
            for name in nodes[index].output
            for c in consumers.get(name, ())
            if result[c] is not None
        ]
        if used_by:
            result[index] = Assignment(common_ancestor(used_by), TagSource.PROJECTED)

    for index, node in enumerate(nodes):
        if result[index] is not None:
            continue
        made_by = [
            result[producer[name]].module
            for name in node.input
            if name in producer and result[producer[name]] is not None
        ]
        if made_by:
            result[index] = Assignment(common_ancestor(made_by), TagSource.PROJECTED)

    return [a if a is not None else Assignment(ROOT, TagSource.ROOT) for a in result]


def call_indices(
    assignments: Sequence[Assignment], call_counts: dict[str, int]
) -> list[int | None]:
    """Which call of its module produced each node, where a module ran twice or more.

    A module that ran ``k`` times shows up as ``k`` contiguous runs of nodes (its
    own and its descendants') in the graph's topological order.  Runs are
    counted per module; where the count disagrees with the hooks' ``k`` (an
    exporter reordered nodes, or a projected node split a run) the module gets
    no call indices rather than wrong ones.
    """
    repeated = {path for path, count in call_counts.items() if count > 1}
    if not repeated:
        return [None] * len(assignments)
    runs: dict[str, int] = dict.fromkeys(repeated, 0)
    own_run: list[int | None] = []
    previous = None
    for assignment in assignments:
        module = assignment.module
        for scope in ancestors(module):
            if scope in repeated and (previous is None or not is_within(previous, scope)):
                runs[scope] += 1
        counted = assignment.source in (TagSource.EXACT, TagSource.INHERITED)
        own_run.append(runs[module] - 1 if module in repeated and counted else None)
        previous = module
    trusted = {path for path in repeated if runs[path] == call_counts[path]}
    return [
        run if run is not None and a.module in trusted else None
        for run, a in zip(own_run, assignments)
    ]


def place_parameter_readers(nodes: Sequence[onnx.NodeProto],
                            assigned: Sequence[Assignment | None],
                            owners: dict[str, Sequence[str]]) -> list[Assignment | None]:
    """A node with no scope that reads a parameter goes to the parameter's owner.

    Exporters fold constant subexpressions of a parameter (a class token
    expanded to the batch) into new initializers with no scope; the weight
    says where they came from better than their neighbours do.
    """
    placed = list(assigned)
    for index, node in enumerate(nodes):
        if placed[index] is not None:
            continue
        held = sorted({o for name in node.input for o in owners.get(name, ())})
        if held:
            placed[index] = Assignment(common_ancestor(held), TagSource.PROJECTED)
    return placed


def complete_tags(
    nodes: Sequence[onnx.NodeProto],
    assigned: Sequence[Assignment | None],
    tree: ModuleTree,
    owners: dict[str, Sequence[str]] | None = None,
) -> list[NodeTag]:
    """Place scope-less parameter readers, project the rest, add call indices, render tags."""
    if owners:
        assigned = place_parameter_readers(nodes, assigned, owners)
    full = project_assignments(nodes, assigned)
    calls = call_indices(full, tree.call_counts())
    return [
        NodeTag(module=a.module, tag=tree.tag(a.module), source=a.source, call=call)
        for a, call in zip(full, calls)
    ]
