"""Put module tags back on a graph an optimiser rewrote.

Optimisers (onnxscript's, ONNX Runtime's offline one, onnxslim) drop node
metadata on nodes they create, and some drop it everywhere.  Given the tagged
original, each node of the rewritten graph is tagged by the first rule that
applies:

1. ``kept``: it still carries a valid tag (duplicated keys are folded);
2. ``by-name``: a node of the same name and op type exists in the original;
   if the rewrite merged duplicates into it (common-subexpression
   elimination), nodes that did not read its outputs before now do, and it
   moves to the common ancestor of its own module and theirs (``merged``);
3. ``replaced``: the original nodes it stands for, i.e. those between its
   output tensors and the tensors it reads (walking back from what it makes,
   stopping at tensors the rewritten graph still has) get their common
   ancestor module: a fused attention node lands on the attention module;
4. ``renamed``: its name is an original tensor's name plus a suffix an
   optimiser appends when it rebuilds a node in another layout (ONNX
   Runtime's NCHWc transformer names a fused Conv+Relu ``relu_nchwc``, and
   its outputs are new tensors, so rule 3 has nowhere to start): the
   tensor's producer, and the chain back from it to the nearest node of the
   same op type (the Conv the Relu was fused into), get their common ancestor;
5. ``neighbours``: the shared projection pass (consumers first, then
   producers), as for scope-less nodes at export;
6. ``root``: nothing is known.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import onnx

from modelexport.hierarchy import ROOT, common_ancestor, is_within
from modelexport.tagging import Assignment, graph_edges, project_assignments
from modelexport.tags import (
    KEY_CALL,
    KEY_MODULE,
    KEY_SOURCE,
    KEY_TAG,
    NodeTag,
    TagSource,
    node_props,
    require_well_formed_tags,
    write_node_tag,
)
from modelexport.tools.module_view import ModuleView

_WALK_LIMIT = 10_000  # original nodes visited per rewritten node, at most
# Suffixes optimisers append to an original tensor's name when they rebuild its
# producer in another layout (declared data: one entry per optimiser convention).
RENAMED_SUFFIXES = ("_nchwc",)
_FUSED_CHAIN_LIMIT = 4  # original nodes a renamed node may stand for, back from its tensor


@dataclass
class RetagResult:
    """What happened to each rewritten node, and coverage before and after."""

    nodes: int
    covered_before: int
    covered_after: int
    rules: Counter = field(default_factory=Counter)
    duplicates_fixed: int = 0

    @property
    def coverage_before(self) -> float:
        return self.covered_before / self.nodes if self.nodes else 1.0

    @property
    def coverage_after(self) -> float:
        return self.covered_after / self.nodes if self.nodes else 1.0

    def as_dict(self) -> dict:
        payload = asdict(self)
        payload.update(rules=dict(self.rules), coverage_before=self.coverage_before,
                       coverage_after=self.coverage_after)
        return payload


def fold_duplicate_keys(node: onnx.NodeProto) -> bool:
    """Keep the first value of every repeated metadata key; True if any was repeated."""
    seen: dict[str, str] = {}
    for prop in node.metadata_props:
        seen.setdefault(prop.key, prop.value)
    if len(seen) == len(node.metadata_props):
        return False
    del node.metadata_props[:]
    for key, value in seen.items():
        node.metadata_props.add(key=key, value=value)
    return True


def _tag_of(node: onnx.NodeProto) -> str | None:
    return node_props(node).get(KEY_MODULE)


class _Original:
    """The tagged original graph, indexed for the rules above."""

    def __init__(self, view: ModuleView) -> None:
        self.view = view
        self.nodes = view.model.graph.node
        self.by_name = {n.name: i for i, n in enumerate(self.nodes) if n.name}
        self.producer, _ = graph_edges(self.nodes)

    def absorbed(self, node: onnx.NodeProto, rewritten_consumers: list[onnx.NodeProto],
                 present: set[str]) -> list[str]:
        """Modules of original nodes that ``node`` absorbed (common-subexpression elimination).

        A consumer that kept its name but now reads ``node``'s output where it
        used to read the output of another node of the same op type, which is
        gone, was rewired onto ``node``: the two computed the same thing.  A
        consumer rewired past a removed node of another type (a Transpose pair
        cancelled) is ordinary data flow and says nothing.
        """
        outputs = set(node.output)
        modules = []
        for consumer in rewritten_consumers:
            index = self.by_name.get(consumer.name) if consumer.name else None
            if index is None or self.nodes[index].op_type != consumer.op_type:
                continue
            before = self.nodes[index].input
            for position, name in enumerate(consumer.input):
                if name not in outputs or position >= len(before) or before[position] == name:
                    continue
                source = self.producer.get(before[position])
                if source is None:
                    continue
                gone = self.nodes[source]
                if gone.op_type == node.op_type and gone.name not in present:
                    module = self.view.nodes[source].module
                    if module is not None:
                        modules.append(module)
        return modules

    def replaced(self, node: onnx.NodeProto, still_there: set[str]) -> list[int]:
        """Original nodes between ``node``'s outputs and the tensors that survive.

        ``still_there`` is every tensor of the rewritten graph; ``node``'s own
        outputs are not a reason to stop (they are where the walk starts).
        """
        reads, makes = set(node.input), set(node.output)

        def stops_at(name: str) -> bool:
            return name in reads or (name in still_there and name not in makes)

        frontier = [self.producer[n] for n in node.output if n in self.producer]
        seen: set[int] = set()
        while frontier and len(seen) < _WALK_LIMIT:
            index = frontier.pop()
            if index in seen:
                continue
            seen.add(index)
            for name in self.nodes[index].input:
                if name and not stops_at(name) and name in self.producer:
                    frontier.append(self.producer[name])
        return sorted(seen)

    def renamed(self, node: onnx.NodeProto) -> list[int]:
        """Original nodes a node named ``<original tensor><suffix>`` was rebuilt from."""
        base = next((node.name[:-len(suffix)] for suffix in RENAMED_SUFFIXES
                     if node.name.endswith(suffix)), None)
        index = self.producer.get(base) if base else None
        chain: list[int] = []
        while index is not None and len(chain) < _FUSED_CHAIN_LIMIT:
            chain.append(index)
            if self.nodes[index].op_type == node.op_type:
                return chain
            first = self.nodes[index].input[0] if self.nodes[index].input else ""
            index = self.producer.get(first)
        return chain[:1]


def _assign(node: onnx.NodeProto, original: _Original, still_there: set[str],
            known: set[str], consumers: list[onnx.NodeProto], present: set[str],
            ) -> tuple[Assignment | None, str]:
    current = _tag_of(node)
    index = original.by_name.get(node.name) if node.name else None
    if index is not None and original.nodes[index].op_type != node.op_type:
        index = None
    module = current if current in known else None
    rule, source = "kept", _source_of(node)
    if module is None and index is not None:
        module, source = original.view.nodes[index].module, _source(
            original.view.nodes[index].source)
        rule = "by-name"
    if module is not None:
        extra = original.absorbed(node, consumers, present) if index is not None else []
        if extra and common_ancestor([module, *extra]) != module:
            return Assignment(common_ancestor([module, *extra]), TagSource.INHERITED), "merged"
        return Assignment(module, source), rule
    replaced = [i for i in original.replaced(node, still_there)
                if original.view.nodes[i].module is not None]
    if replaced:
        modules = [original.view.nodes[i].module for i in replaced]
        if len(set(modules)) == 1:
            return Assignment(modules[0], _source(original.view.nodes[replaced[0]].source)), \
                "replaced"
        return Assignment(common_ancestor(modules), TagSource.INHERITED), "replaced"
    renamed = [original.view.nodes[i].module for i in original.renamed(node)
               if original.view.nodes[i].module is not None]
    if renamed:
        return Assignment(common_ancestor(renamed), TagSource.INHERITED), "renamed"
    return None, ""


def _source(text: str) -> TagSource:
    try:
        return TagSource(text)
    except ValueError:
        return TagSource.INHERITED


def _source_of(node: onnx.NodeProto) -> TagSource:
    return _source(node_props(node).get(KEY_SOURCE, ""))


def _lift_feeders_of_merged(assigned: list[Assignment | None], rules: list[str],
                            consumers_of: list[list[int]]) -> None:
    """Move nodes that now feed only merged nodes up to the merged nodes' module.

    When two identical chains collapse into one, only the chain's last node
    is seen to gain readers; the nodes before it now serve both modules too.
    Walking in reverse topological order carries the lift up the chain.
    """
    for index in range(len(assigned) - 1, -1, -1):
        own = assigned[index]
        readers = consumers_of[index]
        if own is None or rules[index] == "merged" or not readers:
            continue
        if not all(rules[r] == "merged" and assigned[r] is not None for r in readers):
            continue
        target = common_ancestor([assigned[r].module for r in readers])
        if own.module != target and is_within(own.module, target):
            assigned[index] = Assignment(target, TagSource.INHERITED)
            rules[index] = "merged"


def coverage_count(model: onnx.ModelProto, known: set[str]) -> int:
    """Nodes whose module tag names a module of the tree."""
    return sum(1 for node in model.graph.node if _tag_of(node) in known)


def retag(rewritten: onnx.ModelProto, reference: ModuleView) -> RetagResult:
    """Tag every node of ``rewritten`` in place from the tagged ``reference``."""
    require_well_formed_tags(reference.model, "the reference")
    require_well_formed_tags(rewritten, "the rewritten file")
    known = set(reference.tree())
    tags_by_module = _module_tags(reference)
    nodes = rewritten.graph.node
    duplicates = sum(fold_duplicate_keys(node) for node in nodes)
    result = RetagResult(len(nodes), coverage_count(rewritten, known), 0,
                         duplicates_fixed=duplicates)
    original = _Original(reference)
    still_there = {name for node in nodes for name in node.output if name}
    still_there |= {v.name for v in rewritten.graph.input}
    still_there |= {i.name for i in rewritten.graph.initializer}
    present = {node.name for node in nodes if node.name}
    _, consumer_index = graph_edges(nodes)
    consumers_of = [sorted({c for name in node.output for c in consumer_index.get(name, ())})
                    for node in nodes]
    assigned: list[Assignment | None] = []
    rules: list[str] = []
    for node, consumers in zip(nodes, consumers_of):
        assignment, rule = _assign(node, original, still_there, known,
                                   [nodes[c] for c in consumers], present)
        assigned.append(assignment)
        rules.append(rule)
    _lift_feeders_of_merged(assigned, rules, consumers_of)
    result.rules.update(rule for rule in rules if rule)
    completed = project_assignments(list(nodes), assigned)
    for node, before, after in zip(nodes, assigned, completed):
        if before is None:
            result.rules["neighbours" if after.source is TagSource.PROJECTED else "root"] += 1
        calls = node_props(node).get(KEY_CALL)
        write_node_tag(node, NodeTag(after.module, tags_by_module.get(after.module, ""),
                                     after.source, int(calls) if calls else None))
    result.covered_after = coverage_count(rewritten, known)
    return result


def _module_tags(reference: ModuleView) -> dict[str, str]:
    """Module -> class-path tag, from the sidecar or the reference's own nodes."""
    tags = {row["path"]: row.get("tag", "") for row in reference.sidecar_modules()}
    for node, info in zip(reference.model.graph.node, reference.nodes):
        if info.module is not None and info.module not in tags:
            tags[info.module] = node_props(node).get(KEY_TAG, "")
    tags.setdefault(ROOT, "")
    return tags

