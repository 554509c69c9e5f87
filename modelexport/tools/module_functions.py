"""Chosen module classes as ONNX local functions: one definition, one call per instance.

torch's TorchScript exporter had ``export_modules_as_functions``; the
torch.export-based one has nothing like it.  Because every node here carries
its module path, the same result comes from the tagged graph whatever
strategy made it: the nodes of one instance are cut out, their boundary
becomes the function's signature, and a call node takes their place.

- **Signature.** Inputs are the tensors the instance reads but does not make
  (weights included, so layers with different weights share one function),
  in order of first use; outputs are the tensors it makes that anything
  outside reads, in order of production.
- **One function per structure.** Bodies are compared with their tensors
  renamed canonically; instances of one class that differ (a first layer
  with an extra projection) get ``Class``, ``Class_2``, ...
- **Tags.** A body node carries its module path *relative to the instance*
  (:data:`KEY_RELATIVE`) and its class tag; the call node carries the
  instance's path.  :func:`inline_module_functions` expands the calls back
  into a flat graph with every node's full path, which is what the
  project's readers (analyze, validate, profile) see.
- **Refusals.** An instance whose nodes are not a convex region of the graph
  (a tensor leaves it and comes back through outside nodes) cannot become a
  call; it stays inline and is listed with the reason.

Instances are folded innermost first, so a listed class inside another listed
class becomes a call inside the outer function's body.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import onnx

from modelexport.hierarchy import ROOT, is_within
from modelexport.tagging import node_reads
from modelexport.tags import KEY_MODULE, KEY_SOURCE, KEY_TAG, TagSource, node_props
from modelexport.tools.instance_regions import common_tag, hoist_shared, recompute_shapes
from modelexport.tools.regions import RegionIndex

FUNCTION_DOMAIN = "modelexport.modules"
KEY_RELATIVE = "modelexport.relative_module"
KEY_RELATIVE_TAG = "modelexport.relative_tag"
KEY_FUNCTION_CLASS = "modelexport.class"


@dataclass
class FoldedFunction:
    name: str
    cls: str
    instances: list[str]
    nodes: int


@dataclass
class FoldResult:
    """What became a function, and what stayed inline and why."""

    functions: list[FoldedFunction] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"functions": [vars(f) for f in self.functions], "skipped": self.skipped}


def class_matches(tag: str, wanted: set[str]) -> bool:
    """``BertLayer`` or its full class path names the class ``...modeling_bert.BertLayer``."""
    return tag in wanted or tag.rsplit(".", 1)[-1] in wanted


def _rename(node: onnx.NodeProto, mapping: dict[str, str]) -> None:
    """Rename ``node``'s tensors in place, subgraph references to the outer scope included."""
    for position, name in enumerate(node.input):
        if name in mapping:
            node.input[position] = mapping[name]
    for position, name in enumerate(node.output):
        if name in mapping:
            node.output[position] = mapping[name]
    for attribute in node.attribute:
        graphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
        for graph in graphs:
            defined = {v.name for v in graph.input} | {i.name for i in graph.initializer}
            defined |= {out for inner in graph.node for out in inner.output}
            outer = {k: v for k, v in mapping.items() if k not in defined}
            for inner in graph.node:
                _rename(inner, outer)


def _relative(path: str, instance: str) -> str:
    return ROOT if path == instance else path[len(instance) + 1:]


def _body(nodes: list[onnx.NodeProto], instance: str, instance_tag: str, inputs: list[str],
          outputs: list[str]) -> tuple[list[onnx.NodeProto], list[str], list[str]]:
    """The instance's nodes with canonical tensor names and tags relative to the instance
    (its path and class-path tag are the call's), so that equal layers compare equal."""
    mapping = {name: f"in_{k}" for k, name in enumerate(inputs)}
    produced = [out for node in nodes for out in node.output if out]
    mapping.update({name: f"t_{k}" for k, name in enumerate(produced)})
    body = []
    for k, node in enumerate(nodes):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"n_{k}"
        _rename(copy, mapping)
        props = node_props(node)
        tag = props.get(KEY_TAG, "")
        del copy.metadata_props[:]
        copy.metadata_props.add(key=KEY_RELATIVE,
                                value=_relative(props.get(KEY_MODULE, instance), instance))
        if instance_tag and tag.startswith(instance_tag):
            copy.metadata_props.add(key=KEY_RELATIVE_TAG, value=tag[len(instance_tag):])
        else:  # a tag outside the instance's own keeps its full form
            copy.metadata_props.add(key=KEY_TAG, value=tag)
        if KEY_SOURCE in props:
            copy.metadata_props.add(key=KEY_SOURCE, value=props[KEY_SOURCE])
        body.append(copy)
    return body, [mapping[n] for n in inputs], [mapping[n] for n in outputs]


def _dataflow_order(nodes: list[onnx.NodeProto], outputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes in post-order from the outputs, each node's inputs visited in order.

    Two instances of one structure get the same order whatever order their graph
    listed them in (a tracer interleaves independent branches as it met them), so
    their canonical bodies compare equal.  Nodes no output needs follow in graph order.
    """
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    done: set[int] = set()
    ordered: list[onnx.NodeProto] = []
    for output in outputs:
        stack = [(producer[output], False)]
        while stack:
            index, expanded = stack.pop()
            if index in done:
                continue
            if expanded:
                done.add(index)
                ordered.append(nodes[index])
                continue
            stack.append((index, True))
            needed = [producer[name] for name in node_reads(nodes[index]) if name in producer]
            stack.extend((i, False) for i in reversed(needed) if i not in done)
    return ordered + [node for i, node in enumerate(nodes) if i not in done]


def _signature(body: list[onnx.NodeProto], inputs: list[str], outputs: list[str]) -> bytes:
    """The body's bytes without tag sources: instances whose nodes are the same but whose
    tags one strategy was surer of in one layer than another still share a function."""
    probe = onnx.FunctionProto(name="probe", input=inputs, output=outputs, node=body)
    for node in probe.node:
        kept = [p for p in node.metadata_props if p.key != KEY_SOURCE]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return probe.SerializeToString(deterministic=True)


_CERTAINTY = [source.value for source in TagSource]


def _weaken_sources(shared: onnx.FunctionProto, body: list[onnx.NodeProto]) -> None:
    """A shared body's node keeps the least certain source among its instances', so it
    never claims more than holds for each call."""
    for kept, other in zip(shared.node, body):
        theirs = node_props(other).get(KEY_SOURCE)
        for prop in kept.metadata_props:
            if prop.key == KEY_SOURCE and theirs in _CERTAINTY and prop.value in _CERTAINTY \
                    and _CERTAINTY.index(theirs) > _CERTAINTY.index(prop.value):
                prop.value = theirs


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Nodes in an order where every tensor is made before it is read (stable)."""
    ready = set(available)
    pending = list(nodes)
    ordered: list[onnx.NodeProto] = []
    while pending:
        left = []
        for node in pending:
            if all(name in ready for name in node_reads(node)):
                ordered.append(node)
                ready.update(node.output)
            else:
                left.append(node)
        if len(left) == len(pending):
            ordered += left  # unresolvable reads: leave them for the checker to name
            break
        pending = left
    return ordered


def _unique_name(cls: str, taken: set[str]) -> str:
    """The class path for the first structure of a class (what the TorchScript exporter's
    ``export_modules_as_functions`` wrote), ``<class path>_2`` for the next."""
    base = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in cls) or "Module"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _surest_source(nodes: list[onnx.NodeProto]) -> str:
    """A call's source: the surest of its nodes' (the instance is there if any node is)."""
    sources = [node_props(n).get(KEY_SOURCE) for n in nodes]
    known = [s for s in sources if s in _CERTAINTY]
    return min(known, key=_CERTAINTY.index) if known else TagSource.ROOT.value


def fold_module_functions(model: onnx.ModelProto, classes: dict[str, str],
                          wanted: set[str], parameters: set[str] | None = None) -> FoldResult:
    """Replace each instance of a ``wanted`` class by a call, in place.

    ``classes`` maps module path to class tag (the sidecar's or the view's);
    ``parameters`` names the initializers that are the model's parameters, which
    the instance-alignment rewrites never move away from their owner."""
    result = FoldResult()
    instances = sorted((path for path, tag in classes.items()
                        if path != ROOT and class_matches(tag, wanted)),
                       key=lambda path: -path.count("."))
    signatures: dict[bytes, tuple[FoldedFunction, int]] = {}
    taken = {f.name for f in model.functions if f.domain == FUNCTION_DOMAIN}
    graph = model.graph
    by_class: dict[str, list[str]] = defaultdict(list)
    for instance in instances:
        by_class[classes[instance]].append(instance)
    for group in by_class.values():
        if len(group) > 1:
            hoist_shared(graph, group, parameters)
            recompute_shapes(graph, group, parameters)
    for instance in instances:
        nodes = list(graph.node)
        members = {i for i, node in enumerate(nodes)
                   if is_within(node_props(node).get(KEY_MODULE, ROOT), instance)}
        if not members:
            result.skipped[instance] = "no node of the graph belongs to it"
            continue
        regions = RegionIndex(model)
        if regions.convexity_breaks(sorted(members)):
            result.skipped[instance] = ("its nodes are not one region: a tensor leaves it "
                                        "and comes back through nodes outside it")
            continue
        inside = [nodes[i] for i in sorted(members)]
        outputs = regions.boundary(sorted(members)).outputs
        inside = _dataflow_order(inside, outputs)
        made = {out for node in inside for out in node.output if out}
        inputs = list(dict.fromkeys(name for node in inside for name in node_reads(node)
                                    if name not in made))
        instance_tag = common_tag(inside)
        body, body_inputs, body_outputs = _body(inside, instance, instance_tag, inputs,
                                                outputs)
        key = _signature(body, body_inputs, body_outputs)
        cls = classes[instance]
        if key in signatures:
            function, position = signatures[key]
            _weaken_sources(model.functions[position], body)
        else:
            function = FoldedFunction(_unique_name(cls, taken), cls, [], len(body))
            taken.add(function.name)
            signatures[key] = function, len(model.functions)
            result.functions.append(function)
            nested = any(node.domain == FUNCTION_DOMAIN for node in body)
            imports = [o for o in model.opset_import if o.domain != FUNCTION_DOMAIN]
            if nested:  # calls of inner functions
                imports.append(onnx.helper.make_opsetid(FUNCTION_DOMAIN, 1))
            proto = onnx.FunctionProto(name=function.name, domain=FUNCTION_DOMAIN,
                                       input=body_inputs, output=body_outputs, node=body,
                                       opset_import=imports)
            proto.metadata_props.add(key=KEY_FUNCTION_CLASS, value=cls)
            model.functions.append(proto)
        function.instances.append(instance)
        call = onnx.helper.make_node(function.name, inputs, outputs, name=instance,
                                     domain=FUNCTION_DOMAIN)
        call.metadata_props.add(key=KEY_FUNCTION_CLASS, value=cls)
        call.metadata_props.add(key=KEY_MODULE, value=instance)
        call.metadata_props.add(key=KEY_TAG, value=instance_tag)
        call.metadata_props.add(key=KEY_SOURCE, value=_surest_source(inside))
        rest = [node for i, node in enumerate(nodes) if i not in members]
        rest.insert(min(members), call)
        available = {v.name for v in graph.input} | {i.name for i in graph.initializer}
        ordered = _topological(rest, available)
        del graph.node[:]
        graph.node.extend(ordered)
    if result.functions:
        _drop_inner_value_info(graph)
        if not any(o.domain == FUNCTION_DOMAIN for o in model.opset_import):
            model.opset_import.add(domain=FUNCTION_DOMAIN, version=1)
    return result


def _drop_inner_value_info(graph: onnx.GraphProto) -> None:
    """Shape records of tensors that now live only inside function bodies."""
    present = {out for node in graph.node for out in node.output}
    kept = [value for value in graph.value_info if value.name in present]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def has_module_functions(model: onnx.ModelProto) -> bool:
    return any(function.domain == FUNCTION_DOMAIN for function in model.functions)


def inline_module_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every call of our functions expanded, each node tagged with its full
    path (the call's instance path joined with the body's relative path)."""
    functions = {(f.domain, f.name): f for f in model.functions if f.domain == FUNCTION_DOMAIN}
    flat = onnx.ModelProto()
    flat.CopyFrom(model)
    expanded = _expand(list(model.graph.node), functions, prefix="")
    del flat.graph.node[:]
    flat.graph.node.extend(expanded)
    kept = [f for f in model.functions if f.domain != FUNCTION_DOMAIN]
    del flat.functions[:]
    flat.functions.extend(kept)
    imports = [o for o in flat.opset_import if o.domain != FUNCTION_DOMAIN]
    del flat.opset_import[:]
    flat.opset_import.extend(imports)
    return flat


def _expand(nodes: list[onnx.NodeProto], functions: dict[tuple[str, str], onnx.FunctionProto],
            prefix: str) -> list[onnx.NodeProto]:
    flat: list[onnx.NodeProto] = []
    for node in nodes:
        function = functions.get((node.domain, node.op_type))
        if function is None:
            flat.append(node)
            continue
        instance = node_props(node).get(KEY_MODULE, ROOT)
        call_tag = node_props(node).get(KEY_TAG, "")
        source = node_props(node).get(KEY_SOURCE, "exact")
        scope = f"{prefix}{node.name}/"
        mapping = dict(zip(function.input, node.input))
        mapping.update(zip(function.output, node.output))
        inner = []
        for body_node in function.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(body_node)
            copy.name = scope + body_node.name
            for out in copy.output:
                mapping.setdefault(out, scope + out)
            _rename(copy, mapping)
            props = node_props(body_node)
            relative = props.get(KEY_RELATIVE, ROOT)
            path = instance if relative == ROOT else (
                f"{instance}.{relative}" if instance else relative)
            tag = call_tag + props[KEY_RELATIVE_TAG] if KEY_RELATIVE_TAG in props \
                else props.get(KEY_TAG, call_tag)
            del copy.metadata_props[:]
            copy.metadata_props.add(key=KEY_MODULE, value=path)
            copy.metadata_props.add(key=KEY_TAG, value=tag)
            copy.metadata_props.add(key=KEY_SOURCE, value=props.get(KEY_SOURCE, source))
            inner.append(copy)
        flat += _expand(inner, functions, scope)
    return flat
