"""Undo what common-subexpression elimination did across instances of one class.

Exporters merge equal computations: torch.export computes a reshape's target
shape once and every layer reads it; TorchScript's tracer takes a tensor's
shape once at the root and the first layer reads that copy while the second
takes its own.  The graph is right, but two layers of one class no longer
have the same nodes, so they could not share one ONNX function.  Two
rewrites, both exact (they move tags or recompute pure shape arithmetic),
make the instances' regions alike again:

- **hoist**: nodes of one instance whose results another instance of the
  class reads, together with what they need inside the instance, move to the
  instances' common ancestor, where a shared computation belongs (retag's
  ``merged`` rule does the same).  Only a small, weightless part moves: a
  layer's output read by the next layer is its main product, not a shared
  value.
- **recompute**: a shape computation outside an instance that reads only
  what the instance itself reads (its input's ``Shape``, a ``Gather`` of it,
  constants) is copied in, so each instance derives its sizes from its own
  input as the others do.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

from modelexport.hierarchy import ROOT, common_ancestor, is_within
from modelexport.output.onnx_payload import tensor_elements
from modelexport.tagging import graph_edges
from modelexport.tags import KEY_MODULE, KEY_SOURCE, KEY_TAG, TagSource, node_props

# Ops that compute on shapes and small index tensors only: recomputing them is cheap
# and exact.
SHAPE_OPS = frozenset({"Shape", "Size", "Gather", "Constant", "Unsqueeze", "Squeeze",
                       "Concat", "Cast", "Slice", "Reshape"})
_RECOMPUTE_LIMIT = 8  # nodes copied into an instance for one tensor it reads, at most
_SMALL = 64  # elements: an initializer this small is a constant, not a weight


def _module(node: onnx.NodeProto) -> str:
    return node_props(node).get(KEY_MODULE, ROOT)


def _set_module(node: onnx.NodeProto, module: str, tag: str,
                source: str = TagSource.INHERITED.value) -> None:
    for prop in node.metadata_props:
        if prop.key == KEY_MODULE:
            prop.value = module
        elif prop.key == KEY_TAG:
            prop.value = tag
        elif prop.key == KEY_SOURCE:
            prop.value = source


def common_tag(nodes: list[onnx.NodeProto]) -> str:
    """The nodes' class-path tags' longest common prefix of whole ``/`` segments: the tag
    of the deepest module enclosing them all, as far as the tags spell it."""
    tags = [node_props(n).get(KEY_TAG, "").split("/") for n in nodes]
    if not tags:
        return ""
    common = tags[0]
    for parts in tags[1:]:
        k = 0
        while k < min(len(common), len(parts)) and common[k] == parts[k]:
            k += 1
        common = common[:k]
    return "/".join(common)


def _owner(module: str, instances: list[str]) -> str | None:
    return next((i for i in instances if is_within(module, i)), None)


def hoist_shared(graph: onnx.GraphProto, instances: list[str],
                 parameters: set[str] | None = None) -> int:
    """Move small weightless computations one instance shares with another instance, or
    shape arithmetic it shares with the code around it, to the sharers' common ancestor;
    the number of nodes moved.

    A node that reads a weight never moves: its tag says which module owns that
    parameter.  ``parameters`` names the model's parameters and buffers when the
    caller knows them; otherwise any initializer above a few dozen elements counts
    (a small one may still be a parameter, such as T5's relative attention bias)."""
    nodes = list(graph.node)
    weights = {init.name for init in graph.initializer
               if tensor_elements(init) > _SMALL or init.name in (parameters or ())}
    producer, readers_of = graph_edges(nodes)
    owner = [_owner(_module(node), instances) for node in nodes]
    moved = 0
    for index, node in enumerate(nodes):
        home = owner[index]
        if home is None:
            continue
        readers = {c for out in node.output for c in readers_of.get(out, ())}
        siblings = {owner[c] for c in readers if owner[c] not in (None, home)}
        outside = [c for c in readers if owner[c] is None]
        cone = _cone_within(index, nodes, producer, owner, home)
        shape_only = all(nodes[i].op_type in SHAPE_OPS for i in cone)
        if not siblings and not (outside and shape_only):
            continue
        members = sum(1 for o in owner if o == home)
        reads_weights = any(name in weights for i in cone for name in nodes[i].input)
        if reads_weights or len(cone) * 2 > members:
            continue
        # a size the instance reads off its input and the code around it reuses (a mask's
        # shape) is computed once for both: it belongs to their common ancestor
        sharers = [n for n, o in zip(nodes, owner) if o == home or o in siblings]
        sharers += [nodes[c] for c in outside]
        target = common_ancestor([_module(n) for n in sharers] if outside else
                                 [home, *siblings])
        tag = common_tag(sharers)
        for i in cone:
            _set_module(nodes[i], target, tag)
            owner[i] = None
            moved += 1
    return moved


def _cone_within(index: int, nodes: list[onnx.NodeProto], producer: dict[str, int],
                 owner: list[str | None], home: str) -> set[int]:
    cone, frontier = set(), [index]
    while frontier:
        current = frontier.pop()
        if current in cone:
            continue
        cone.add(current)
        frontier += [producer[name] for name in nodes[current].input
                     if name in producer and owner[producer[name]] == home]
    return cone


def recompute_shapes(graph: onnx.GraphProto, instances: list[str],
                     parameters: set[str] | None = None) -> int:
    """Copy outside shape computations into each instance that reads them; nodes copied.

    A chain reads only small constants besides the instance's input shape: never a
    parameter, however small, whose reader would then sit in every instance."""
    copied = 0
    constants = {init.name for init in graph.initializer
                 if tensor_elements(init) <= _SMALL and init.name not in (parameters or ())}
    for instance in instances:
        nodes = list(graph.node)
        producer, _ = graph_edges(nodes)
        inside = [i for i, node in enumerate(nodes) if is_within(_module(node), instance)]
        if not inside:
            continue
        member = set(inside)
        reads = {name for i in inside for name in nodes[i].input if name}
        own = {name for i in inside for name in nodes[i].output}
        consumers: dict[str, list[int]] = defaultdict(list)
        for i in inside:
            for name in nodes[i].input:
                consumers[name].append(i)
        extra: list[tuple[int, list[onnx.NodeProto]]] = []
        for name in sorted(reads - own, key=lambda n: min(consumers[n])):
            chain = _shape_chain(name, nodes, producer, member, reads, constants)
            if not chain:
                continue
            renamed = {out: f"{out}/{instance}" for i in chain for out in nodes[i].output}
            module = common_ancestor([_module(nodes[c]) for c in consumers[name]])
            tag = common_tag([nodes[c] for c in consumers[name]])
            # a copy exists only for its readers, so it carries their tag's certainty
            sources = {node_props(nodes[c]).get(KEY_SOURCE) for c in consumers[name]}
            source = sources.pop() if len(sources) == 1 and None not in sources \
                else TagSource.INHERITED.value
            copies = []
            for i in chain:
                copy = onnx.NodeProto()
                copy.CopyFrom(nodes[i])
                copy.name = f"{nodes[i].name}/{instance}"
                copy.input[:] = [renamed.get(n, n) for n in copy.input]
                copy.output[:] = [renamed[n] for n in copy.output]
                _set_module(copy, module, tag, source)
                copies.append(copy)
            for c in consumers[name]:
                nodes[c].input[:] = [renamed.get(n, n) for n in nodes[c].input]
            extra.append((min(consumers[name]), copies))
            copied += len(copies)
        if extra:
            placed: dict[int, list[onnx.NodeProto]] = defaultdict(list)
            for position, copies in extra:
                placed[position] += copies
            rebuilt = []
            for i, node in enumerate(nodes):
                rebuilt += placed.get(i, [])
                rebuilt.append(node)
            del graph.node[:]
            graph.node.extend(_without_unread(rebuilt, graph))
    return copied


def _without_unread(nodes: list[onnx.NodeProto], graph: onnx.GraphProto
                    ) -> list[onnx.NodeProto]:
    """Drop the nodes whose results nothing reads any more (the originals of chains
    every reader now computes itself), repeatedly, so no dead shape arithmetic stays."""
    wanted = {value.name for value in graph.output}
    while True:
        read = wanted | {name for node in nodes for name in node.input}
        kept = [node for node in nodes if any(out in read for out in node.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def _shape_chain(name: str, nodes: list[onnx.NodeProto], producer: dict[str, int],
                 member: set[int], reads: set[str], constants: set[str]) -> list[int]:
    """The outside nodes, in graph order, that make ``name`` from what the instance
    reads itself; empty if that takes anything but shape ops or too many nodes."""
    chain: set[int] = set()
    frontier = [name]
    while frontier:
        current = frontier.pop()
        index = producer.get(current)
        if index is None and current not in constants:
            return []  # a graph input or a weight the instance does not read itself
        if index is None or index in chain:
            continue
        if index in member or nodes[index].op_type not in SHAPE_OPS:
            return []
        chain.add(index)
        if len(chain) > _RECOMPUTE_LIMIT:
            return []
        for source in nodes[index].input:
            if source and source not in reads:
                frontier.append(source)
            elif source and nodes[index].op_type != "Shape":
                return []  # only a Shape may read the instance's own data
    return sorted(chain)
