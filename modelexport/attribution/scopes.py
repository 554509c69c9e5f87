"""Attribution by scope: reading the module path that an exporter wrote into a node.

Two exporters leave scopes behind.  The TorchScript exporter names nodes
after the module scopes its tracer saw (``/encoder/layer.0/attention/MatMul``);
the dynamo exporter records ``pkg.torch.onnx.name_scopes`` metadata, the
qualified module names from the root.  Parsing the TorchScript strings alone
is fragile (containers that never ran vanish, repeated calls get ``_N``
suffixes, some segments are qualified relative to a grandparent), so with a
module tree at hand each scope is *resolved* step by step
(:func:`resolve_scope`); without one (a foreign file in the tools), the
tree-less reading :func:`scope_path` folds the repeats it can see.
"""

from __future__ import annotations

import re

from modelexport.capture.request import ADAPTER_ATTRIBUTE
from modelexport.hierarchy import ROOT, ModuleTree, ancestors, is_within

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
CLASS_HIERARCHY_KEY = "pkg.torch.onnx.class_hierarchy"
_REPEAT_SUFFIX = re.compile(r"^(.*)_(\d+)$")


def _scope_parts(node_name: str) -> list[str] | None:
    """``/encoder/layer.0/MatMul`` -> ``['encoder', 'layer.0']``; None for a scope-less name."""
    if not node_name.startswith("/"):
        return None
    return [part for part in node_name.strip("/").split("/")[:-1] if part]


def _segment_candidates(segment: str) -> list[tuple[str, bool]]:
    """The segment itself, then without a ``_N`` repeat suffix (flagged True)."""
    candidates = [(segment, False)]
    match = _REPEAT_SUFFIX.match(segment)
    if match:
        candidates.append((match.group(1), True))
    return candidates


def _unique_descendant(segment: str, current: str, tree: ModuleTree) -> str | None:
    """The one module inside ``current`` whose local name is ``segment``, if unique.

    TorchScript names a scope by the module's own attribute name, so a module
    called directly as ``self.block.fc(x)`` shows up as ``fc`` with ``block``
    missing.  Two candidates (``a.fc`` and ``b.fc``) are ambiguous: no guess.
    """
    for candidate, _suffixed in _segment_candidates(segment):
        found = [p for p in tree.with_local_name(candidate)
                 if p != current and is_within(p, current)]
        if len(found) == 1:
            return found[0]
        if found:
            return None
    return None


def resolve_scope(segments: list[str], tree: ModuleTree) -> tuple[str, bool]:
    """Walk scope segments down the module tree.

    Returns the deepest module reached and whether every segment resolved.
    A segment may name a child, a deeper descendant through containers that
    never ran (``layer.0``), be qualified relative to an ancestor
    (``seq/seq.0``), or name the only descendant with that local name; it is
    never allowed to leave the current module.  A submodule registered
    under two parents is reached through either path and reported by its
    own (first) name.
    """
    current = ROOT
    for segment in segments:
        step = None
        for candidate, _suffixed in _segment_candidates(segment):
            for base in ancestors(current):
                full = f"{base}.{candidate}" if base else candidate
                if tree.resolve(full) is not None and is_within(full, current):
                    step = full
                    break
            if step is not None:
                break
        if step is None:
            step = _unique_descendant(segment, current, tree)
        if step is None:
            return _canonical(current, tree), False
        current = step
    return _canonical(current, tree), True


def _canonical(path: str, tree: ModuleTree) -> str:
    """A walked path, which may pass through an alias, as the module's own name."""
    resolved = tree.resolve(path)
    return resolved if resolved is not None else tree.deepest_known(path)


def scope_segments(node_name: str, adapters: int = 1) -> list[str] | None:
    """``/wrapped/encoder/layer.0/MatMul`` -> ``['encoder', 'layer.0']``; None if scope-less.

    ``/wrapped/wrapped.2/wrapped.2.0/Gemm`` (a root container) -> ``['2', '2.0']``.
    """
    parts = _scope_parts(node_name)
    if parts is None:
        return None
    for _ in range(adapters):  # our own call adapter, and any adapter of the request
        if parts and parts[0] == ADAPTER_ATTRIBUTE:
            parts = parts[1:]
    # TorchScript qualifies the children of a container by its attribute name:
    # a root ``nn.Sequential`` under the adapter yields ``wrapped.0``.
    prefix = ADAPTER_ATTRIBUTE + "."
    return [part[len(prefix):] if part.startswith(prefix) else part for part in parts]


def scope_path(node_name: str) -> str | None:
    """``/encoder/layer/layer.0/MatMul_1`` -> ``encoder.layer.0``; None without a scope.

    The reading without a module tree.  TorchScript sometimes repeats a
    container's name before its indexed child (``layer/layer.0``); the repeat
    is folded.
    """
    segments = _scope_parts(node_name)
    if segments is None:
        return None
    folded: list[str] = []
    for index, segment in enumerate(segments):
        following = segments[index + 1] if index + 1 < len(segments) else ""
        if not following.startswith(segment + "."):
            folded.append(segment)
    return ".".join(folded)


def scope_module(scopes: list[str]) -> str:
    """The module a dynamo name-scope list points at: the entry before the FX node name."""
    return scopes[-2] if len(scopes) >= 2 else ROOT
