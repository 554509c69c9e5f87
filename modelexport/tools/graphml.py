"""GraphML with one nested group per module, for yEd, Gephi or networkx.

Every module with nodes in its subtree becomes a group node holding a nested
``<graph>``; ONNX nodes sit in the group of their module; edges follow the
tensors between nodes.  yEd reads the ``yfiles.foldertype="group"`` hint and
draws the groups as collapsible boxes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from modelexport.hierarchy import ROOT, parent_path
from modelexport.tagging import graph_edges
from modelexport.tools.module_view import ModuleView

_NS = "http://graphml.graphdrawing.org/xmlns"
_KEYS = [("d_label", "node", "label"), ("d_kind", "node", "kind"), ("d_op", "node", "op_type"),
         ("d_module", "node", "module"), ("d_class", "node", "class"),
         ("d_tensor", "edge", "tensor")]


def _data(parent: ET.Element, key: str, value: str) -> None:
    ET.SubElement(parent, "data", key=key).text = value


def render_graphml(view: ModuleView) -> str:
    """The file's graph, nodes grouped by module path."""
    root = ET.Element("graphml", xmlns=_NS)
    for key_id, domain, name in _KEYS:
        ET.SubElement(root, "key", {"id": key_id, "for": domain, "attr.name": name,
                                    "attr.type": "string"})
    top = ET.SubElement(root, "graph", id="G", edgedefault="directed")

    used = {info.module if info.module is not None else ROOT for info in view.nodes}
    groups: dict[str, ET.Element] = {}

    def group_graph(path: str) -> ET.Element:
        """The nested <graph> of ``path``'s group, created with its parents on demand."""
        if path == ROOT:
            return top
        if path not in groups:
            parent = group_graph(parent_path(path))
            node = ET.SubElement(parent, "node", {"id": f"module:{path}",
                                                  "yfiles.foldertype": "group"})
            _data(node, "d_label", path)
            _data(node, "d_kind", "module")
            _data(node, "d_module", path)
            _data(node, "d_class", view.classes.get(path, ""))
            groups[path] = ET.SubElement(node, "graph", id=f"module:{path}:",
                                         edgedefault="directed")
        return groups[path]

    for path in sorted(used):
        group_graph(path)
    ids = [f"n{index}" for index in range(len(view.nodes))]
    for index, (node, info) in enumerate(zip(view.model.graph.node, view.nodes)):
        module = info.module if info.module is not None else ROOT
        element = ET.SubElement(group_graph(module), "node", id=ids[index])
        _data(element, "d_label", node.name or node.op_type)
        _data(element, "d_kind", "op")
        _data(element, "d_op", node.op_type)
        _data(element, "d_module", module)
    producer, consumers = graph_edges(view.model.graph.node)
    for tensor, source in producer.items():
        for target in consumers.get(tensor, ()):
            edge = ET.SubElement(top, "edge", source=ids[source], target=ids[target])
            _data(edge, "d_tensor", tensor)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
