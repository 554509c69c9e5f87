"""The tag schema, and reading and writing tags on ONNX nodes.

Tags live in ``NodeProto.metadata_props`` (ONNX >= 1.16), never as attributes
on standard ops: extra attributes make checkers and runtimes reject a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import onnx

from modelexport.errors import ModelExportError

SCHEMA_VERSION = "1.0"
ROOT_PATH = ""
KEY_MODULE = "modelexport.module"
KEY_TAG = "modelexport.tag"
KEY_SOURCE = "modelexport.source"
KEY_CALL = "modelexport.call"
MODEL_KEY_VERSION = "modelexport.version"
MODEL_KEY_STRATEGY = "modelexport.strategy"
OUR_KEYS = frozenset({KEY_MODULE, KEY_TAG, KEY_SOURCE, KEY_CALL})
# Google's Model Explorer (its ONNX adapter) nests nodes by this key, "/"-separated;
# torch's dynamo exporter writes it as "path: class" per enclosing module.
KEY_NAMESPACE = "namespace"


class TagSource(str, Enum):
    """How a node's module was determined, from most to least certain."""

    EXACT = "exact"  # the exporter's own record names the module
    INHERITED = "inherited"  # nearest recorded enclosing module of a deeper scope
    PROJECTED = "projected"  # scope-less node, placed by its graph neighbours
    ROOT = "root"  # nothing better known


@dataclass(frozen=True)
class NodeTag:
    """Which module produced one ONNX node."""

    module: str
    tag: str
    source: TagSource
    call: int | None = None


def _drop_keys(
    proto: onnx.NodeProto | onnx.ModelProto, keys: set[str] | frozenset[str]
) -> None:
    kept = [p for p in proto.metadata_props if p.key not in keys]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)


def _set_props(proto: onnx.NodeProto | onnx.ModelProto, values: dict[str, str]) -> None:
    _drop_keys(proto, set(values))
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)


def write_node_tag(node: onnx.NodeProto, tag: NodeTag) -> None:
    _drop_keys(node, OUR_KEYS)
    node.metadata_props.add(key=KEY_MODULE, value=tag.module)
    node.metadata_props.add(key=KEY_TAG, value=tag.tag)
    node.metadata_props.add(key=KEY_SOURCE, value=tag.source.value)
    if tag.call is not None:
        node.metadata_props.add(key=KEY_CALL, value=str(tag.call))


def write_tags(
    model: onnx.ModelProto, tags: list[NodeTag], strategy: str, version: str
) -> None:
    """Tag every top-level node; nodes inside subgraphs inherit their parent's tag."""
    nodes = model.graph.node
    if len(tags) != len(nodes):
        raise ValueError(f"{len(tags)} tags for {len(nodes)} nodes")
    for node, tag in zip(nodes, tags):
        write_node_tag(node, tag)
        for sub in _subgraph_nodes(node):
            write_node_tag(sub, tag)
    _set_props(model, {MODEL_KEY_VERSION: version, MODEL_KEY_STRATEGY: strategy})


def namespace_for(module: str, class_names: dict[str, str]) -> str:
    """``encoder.layer`` -> ``: BertModel/encoder: BertEncoder/encoder.layer: ModuleList``."""
    chain = [ROOT_PATH]
    if module:
        parts = module.split(".")
        chain += [".".join(parts[: i + 1]) for i in range(len(parts))]
    return "/".join(f"{path}: {class_names.get(path, '')}" for path in chain)


def write_namespaces(model: onnx.ModelProto, tags: list[NodeTag],
                     class_names: dict[str, str]) -> None:
    """Model Explorer's ``namespace`` on every node, so it draws the module tree as layers."""
    for node, tag in zip(model.graph.node, tags):
        value = {KEY_NAMESPACE: namespace_for(tag.module, class_names)}
        _set_props(node, value)
        for sub in _subgraph_nodes(node):
            _set_props(sub, value)


def strip_tags(model: onnx.ModelProto) -> None:
    """Remove every modelexport key from nodes and the model (a clean export)."""
    for node in model.graph.node:
        _drop_keys(node, OUR_KEYS)
        for sub in _subgraph_nodes(node):
            _drop_keys(sub, OUR_KEYS)
    _drop_keys(model, {MODEL_KEY_VERSION, MODEL_KEY_STRATEGY})


def _subgraph_nodes(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    found: list[onnx.NodeProto] = []
    for attr in node.attribute:
        graphs = list(attr.graphs)
        if attr.HasField("g"):
            graphs.append(attr.g)
        for graph in graphs:
            for sub in graph.node:
                found.append(sub)
                found.extend(_subgraph_nodes(sub))
    return found


def node_props(node: onnx.NodeProto) -> dict[str, str]:
    """A node's metadata as a dict; where a key repeats, its last value wins."""
    return {p.key: p.value for p in node.metadata_props}


class MalformedTagError(ModelExportError):
    """A node's tag holds a value the schema does not allow."""


def tag_value_problem(props: dict[str, str]) -> str | None:
    """What is wrong with a node's tag values (``source``, ``call``), or None."""
    source = props.get(KEY_SOURCE)
    if source is not None and source not in {s.value for s in TagSource}:
        return (f"{KEY_SOURCE} is {source!r}, not one of "
                f"{', '.join(s.value for s in TagSource)}")
    call = props.get(KEY_CALL)
    if call is not None and not call.isdigit():
        return f"{KEY_CALL} is {call!r}, not a whole number"
    return None


def require_well_formed_tags(model: onnx.ModelProto, what: str) -> None:
    """Raise :class:`MalformedTagError` for the first node whose tag values break the schema."""
    for node in model.graph.node:
        problem = tag_value_problem(node_props(node))
        if problem is not None:
            raise MalformedTagError(f"{what}: node {node.name or node.op_type!r}: {problem} "
                                    "(modelexport validate lists every such node)")


def read_node_tag(node: onnx.NodeProto) -> NodeTag | None:
    """The tag written on ``node``, or None when it carries none.

    Raises :class:`MalformedTagError` (one line, naming the node) for values
    the schema does not allow, rather than a bare ``ValueError`` from deep
    inside whichever tool read the file.
    """
    props = node_props(node)
    if KEY_MODULE not in props:
        return None
    problem = tag_value_problem(props)
    if problem is not None:
        raise MalformedTagError(f"node {node.name or node.op_type!r}: {problem}")
    call = props.get(KEY_CALL)
    return NodeTag(
        module=props[KEY_MODULE],
        tag=props.get(KEY_TAG, ""),
        source=TagSource(props.get(KEY_SOURCE, TagSource.ROOT.value)),
        call=int(call) if call is not None else None,
    )


def read_tags(model: onnx.ModelProto | str) -> dict[str, NodeTag | None]:
    """Map every top-level node name to its tag (None where untagged).

    Accepts a loaded model or a path; a path is read without external data,
    since tags never live there.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(model, load_external_data=False)
    return {
        node.name or f"#{index}": read_node_tag(node)
        for index, node in enumerate(model.graph.node)
    }
