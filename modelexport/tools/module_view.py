"""Which module produced each node of an ONNX file, whoever wrote the file.

Four readers, tried in order, so the tools work on more than our own files:

1. ``modelexport.module`` node metadata (our tagged exports);
2. the ``<file>.hierarchy.json`` sidecar (our clean exports: no node metadata);
3. ``pkg.torch.onnx.name_scopes`` / ``class_hierarchy`` metadata written by
   ``torch.onnx.export(dynamo=True)``;
4. TorchScript scope names such as ``/encoder/layer.0/attention/MatMul``
   (``torch.onnx.export(dynamo=False)``), parsed without the model, so the
   path is the scope as TorchScript spelt it.

The first reader that finds anything is used for the whole file; nodes it
says nothing about stay ``None`` (untagged), which validate reports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx

from modelexport.attribution.scopes import CLASS_HIERARCHY_KEY, NAME_SCOPES_KEY, scope_path
from modelexport.errors import ModelExportError, one_line
from modelexport.hierarchy import ROOT, ancestors, is_within, parent_path
from modelexport.output.files import sidecar_path_for
from modelexport.output.sidecar import read_sidecar
from modelexport.tags import KEY_CALL, KEY_MODULE, KEY_SOURCE, KEY_TAG, node_props
from modelexport.tools.module_functions import has_module_functions, inline_module_functions
from modelexport.tools.onnx_file import load_graph

ORIGIN_TAGS = "modelexport-tags"
ORIGIN_SIDECAR = "modelexport-sidecar"
ORIGIN_NAME_SCOPES = "torch-name-scopes"
ORIGIN_NODE_NAMES = "node-names"
ORIGIN_NONE = "none"



@dataclass
class NodeInfo:
    """What one node says about its module."""

    module: str | None
    source: str = ""
    call: int | None = None


@dataclass
class ModuleView:
    """An ONNX graph with each top-level node's module, and the module tree."""

    path: Path | None
    model: onnx.ModelProto
    nodes: list[NodeInfo]
    classes: dict[str, str]
    origin: str
    sidecar: dict | None = None
    sidecar_problem: str = ""  # why a sidecar beside the file was not used
    inlined: bool = False  # the file's module functions were expanded into ``model``

    def tree(self) -> list[str]:
        """Every module path, depth first from the root.

        Siblings keep the sidecar's order (the model's registration order);
        modules only the graph knows follow in order of first appearance.
        """
        first_seen: dict[str, None] = dict.fromkeys(self.classes)
        for info in self.nodes:
            if info.module is not None:
                for path in reversed(ancestors(info.module)):
                    first_seen.setdefault(path, None)
        children: dict[str, list[str]] = {}
        for path in first_seen:
            if path != ROOT:
                children.setdefault(parent_path(path), []).append(path)
        ordered, stack = [], [ROOT]
        while stack:
            path = stack.pop()
            ordered.append(path)
            stack.extend(reversed(children.get(path, [])))
        return ordered

    def sidecar_modules(self) -> list[dict]:
        """The sidecar's module rows (path, class, tag, calls...); none without a sidecar."""
        return (self.sidecar or {}).get("modules", [])

    def node_names(self) -> list[str]:
        return [node.name or f"#{i}" for i, node in enumerate(self.model.graph.node)]


def _from_tags(model: onnx.ModelProto) -> list[NodeInfo] | None:
    infos, found = [], False
    for node in model.graph.node:
        props = node_props(node)
        if KEY_MODULE in props:
            found = True
            call = props.get(KEY_CALL)
            infos.append(NodeInfo(props[KEY_MODULE], props.get(KEY_SOURCE, ""),
                                  int(call) if call and call.isdigit() else None))
        else:
            infos.append(NodeInfo(None))
    return infos if found else None


def _from_sidecar(model: onnx.ModelProto, sidecar: dict | None) -> list[NodeInfo] | None:
    if not sidecar or not sidecar.get("nodes"):
        return None
    table = sidecar["nodes"]
    infos = []
    for node in model.graph.node:
        entry = table.get(node.name)
        infos.append(NodeInfo(entry["module"], entry.get("source", ""), entry.get("call"))
                     if entry else NodeInfo(None))
    return infos if any(i.module is not None for i in infos) else None


def _literal_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def _from_name_scopes(model: onnx.ModelProto, classes: dict[str, str]) -> list[NodeInfo] | None:
    """The exporter lists cumulative module paths, then the FX node's own name."""
    infos, found = [], False
    for node in model.graph.node:
        props = node_props(node)
        scopes = _literal_list(props.get(NAME_SCOPES_KEY))
        if not scopes:
            infos.append(NodeInfo(None))
            continue
        found = True
        paths = scopes[:-1] or [ROOT]
        infos.append(NodeInfo(paths[-1], "exporter"))
        hierarchy = _literal_list(props.get(CLASS_HIERARCHY_KEY)) or []
        for path, cls in zip(paths, hierarchy):
            classes.setdefault(path, cls)
    return infos if found else None


def _from_node_names(model: onnx.ModelProto) -> list[NodeInfo] | None:
    infos = [NodeInfo(scope_path(node.name), "name") for node in model.graph.node]
    return infos if any(i.module is not None for i in infos) else None


def _read_sidecar(onnx_path: Path | None) -> tuple[dict | None, str]:
    """The sidecar beside ``onnx_path``, or None with why it was not used.

    A missing sidecar is no problem; an unreadable or malformed one is
    ignored too (the graph's own tags still serve), and the reason is kept
    for ``validate`` to report.
    """
    if onnx_path is None:
        return None, ""
    path = sidecar_path_for(onnx_path)
    if not path.exists():
        return None, ""
    try:
        return read_sidecar(path), ""
    except (OSError, ValueError) as exc:
        return None, one_line(exc)


def _classes_from_sidecar(sidecar: dict | None) -> dict[str, str]:
    if not sidecar:
        return {}
    return {row["path"]: row.get("class", "") for row in sidecar.get("modules", [])}


def _classes_from_tags(model: onnx.ModelProto, classes: dict[str, str]) -> None:
    """Without a sidecar, the last segment of a class-path tag names the class."""
    for node in model.graph.node:
        props = node_props(node)
        if KEY_MODULE in props and props[KEY_MODULE] not in classes and props.get(KEY_TAG):
            last = props[KEY_TAG].rsplit("/", 1)[-1]
            classes[props[KEY_MODULE]] = last.split(".", 1)[0]


def module_view(model: onnx.ModelProto, path: str | Path | None = None) -> ModuleView:
    """Read module information from ``model`` (and its sidecar, when ``path`` is given).

    Calls of modules exported as functions are expanded first, so every tool sees
    each node with its full module path whether the file was folded or not."""
    inlined = has_module_functions(model)
    if inlined:
        model = inline_module_functions(model)
    file = Path(path) if path is not None else None
    sidecar, problem = _read_sidecar(file)
    classes = _classes_from_sidecar(sidecar)
    readers = [
        (ORIGIN_TAGS, lambda: _from_tags(model)),
        (ORIGIN_SIDECAR, lambda: _from_sidecar(model, sidecar)),
        (ORIGIN_NAME_SCOPES, lambda: _from_name_scopes(model, classes)),
        (ORIGIN_NODE_NAMES, lambda: _from_node_names(model)),
    ]
    for origin, read in readers:
        infos = read()
        if infos is not None:
            if origin == ORIGIN_TAGS:
                _classes_from_tags(model, classes)
            return ModuleView(file, model, infos, classes, origin, sidecar, problem, inlined)
    return ModuleView(file, model, [NodeInfo(None) for _ in model.graph.node], classes,
                      ORIGIN_NONE, sidecar, problem, inlined)


def iter_within(view: ModuleView, scope: str) -> Iterator[int]:
    """Indices of the nodes of ``scope`` and its descendants."""
    for index, info in enumerate(view.nodes):
        if info.module is not None and is_within(info.module, scope):
            yield index


def all_regions(view: ModuleView) -> dict[str, list[int]]:
    """Every module's node indices (its own and its descendants'), in one pass.

    Cheaper than :func:`iter_within` per module: each node is visited once
    per enclosing module instead of once per module of the tree.
    """
    regions: dict[str, list[int]] = {path: [] for path in view.tree()}
    for index, info in enumerate(view.nodes):
        if info.module is not None:
            for path in ancestors(info.module):
                regions[path].append(index)
    return regions


class NoModuleInformation(ModelExportError):
    """The file says nothing about modules."""


def open_view(path: str | Path, *, external_data: bool = False, check: bool = True,
              ) -> ModuleView:
    """Load an ONNX file and its module information; every tool starts here.

    ``external_data`` loads weights stored beside the file (extract, optimize
    need them); ``check=False`` skips the ONNX checker (validate runs the full
    one itself and reports it as a finding).
    """
    model = load_graph(path, external_data=external_data, check=check)
    view = module_view(model, path)
    if view.origin == ORIGIN_NONE:
        raise NoModuleInformation(
            f"{path} carries no module information (no modelexport tags or sidecar, no torch "
            "name scopes, no scoped node names); export it with modelexport first")
    return view
