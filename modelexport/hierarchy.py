"""The module tree of a PyTorch model and the class-path tags derived from it.

Every strategy resolves ONNX nodes against this one structure, so a tag can
only ever name a module that really exists in the model.  The tree also keeps
what forward hooks observed (which instances ran, how often, in which order),
because exporter scope names alone are ambiguous: containers whose ``forward``
never runs vanish from them and repeated calls get ``_N`` suffixes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

ROOT = ""

# Containers that hold modules but never run a forward of their own; they are
# left out of class-path tags, and their numbered children carry the index
# instead (``BertEncoder/BertLayer.0`` rather than ``BertEncoder/ModuleList/...``).
_PASSIVE_CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict)


def parent_path(path: str) -> str:
    """Qualified name of the enclosing module (``""`` for top-level children)."""
    return path.rsplit(".", 1)[0] if "." in path else ROOT


def ancestors(path: str) -> list[str]:
    """``path`` and every enclosing module, innermost first, ending at the root."""
    chain = [path]
    while path != ROOT:
        path = parent_path(path)
        chain.append(path)
    return chain


def is_within(path: str, scope: str) -> bool:
    """True when ``path`` is ``scope`` itself or one of its descendants."""
    return scope == ROOT or path == scope or path.startswith(scope + ".")


def common_ancestor(paths: list[str]) -> str:
    """Deepest module that encloses every path in ``paths``."""
    if not paths:
        return ROOT
    parts = paths[0].split(".") if paths[0] else []
    for other in paths[1:]:
        other_parts = other.split(".") if other else []
        keep = 0
        for a, b in zip(parts, other_parts):
            if a != b:
                break
            keep += 1
        parts = parts[:keep]
    return ".".join(parts)


@dataclass
class ModuleInfo:
    """One module instance of the model, as the tree records it."""

    path: str
    class_name: str
    class_path: str
    tag: str
    own_params: int
    total_params: int
    calls: int = 0
    children: list[str] = field(default_factory=list)

    @property
    def executed(self) -> bool:
        return self.calls > 0


class ModuleTree:
    """All modules of a model keyed by qualified name, plus observed calls."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.root_class = type(model).__name__
        self.modules: dict[str, ModuleInfo] = {}
        self._instances: dict[str, torch.nn.Module] = {}
        self._local_names: dict[str, list[str]] | None = None
        # id(parameter or buffer) -> modules that received it as a forward argument
        self.parameter_receivers: dict[int, set[str]] = {}
        for path, module in model.named_modules(remove_duplicate=True):
            self._instances[path] = module
            self.modules[path] = ModuleInfo(
                path=path,
                class_name=type(module).__name__,
                class_path=f"{type(module).__module__}.{type(module).__qualname__}",
                tag="",
                own_params=sum(p.numel() for p in module.parameters(recurse=False)),
                total_params=0,
            )
        canonical = {id(module): path for path, module in self._instances.items()}
        # A module registered under two parents is one instance with one
        # (first) name; its other paths are aliases that scopes may spell.
        self.aliases: dict[str, str] = {
            path: canonical[id(module)]
            for path, module in model.named_modules(remove_duplicate=False)
            if canonical.get(id(module), path) != path
        }
        for path in self.modules:
            if path != ROOT:
                self.modules[parent_path(path)].children.append(path)
        for path, info in self.modules.items():
            info.tag = self._class_path_tag(path)
        for path in sorted(self.modules, key=lambda p: -p.count(".") if p else 1):
            info = self.modules[path]
            info.total_params = info.own_params + sum(
                self.modules[child].total_params for child in info.children
            )

    def __contains__(self, path: str) -> bool:
        return path in self.modules

    def resolve(self, path: str) -> str | None:
        """The module ``path`` names, through aliases; None if it names none."""
        if path in self.modules:
            return path
        return self.aliases.get(path)

    def nearest_executed(self, path: str) -> str:
        """``path`` if its forward ran, else its nearest ancestor that ran.

        A module whose forward never runs can produce no node: its parameters
        are used by an ancestor (``nn.MultiheadAttention`` reads
        ``out_proj.weight`` itself), which is then the right tag.
        """
        for candidate in ancestors(path):
            info = self.modules.get(candidate)
            if info is not None and info.calls > 0:
                return candidate
        return ROOT

    def tag(self, path: str) -> str:
        return self.modules[path].tag

    def with_local_name(self, name: str) -> list[str]:
        """Modules whose path ends in ``name`` (``fc``, or ``layer.0`` for list items)."""
        if self._local_names is None:
            index: dict[str, list[str]] = {}
            for path in self.modules:
                parts = path.split(".")
                index.setdefault(parts[-1], []).append(path)
                if len(parts) >= 2:
                    index.setdefault(".".join(parts[-2:]), []).append(path)
            self._local_names = index
        return self._local_names.get(name, [])

    def deepest_known(self, path: str) -> str:
        """The innermost module of ``path``'s chain that exists in the tree (aliases resolved)."""
        for candidate in ancestors(path):
            resolved = self.resolve(candidate)
            if resolved is not None:
                return resolved
        return ROOT

    def _class_path_tag(self, path: str) -> str:
        """``/BertModel/BertEncoder/BertLayer.0/...`` for the module at ``path``."""
        segments = [self.root_class]
        if path == ROOT:
            return "/" + self.root_class
        walked: list[str] = []
        for name in path.split("."):
            walked.append(name)
            module = self._instances[".".join(walked)]
            if isinstance(module, _PASSIVE_CONTAINERS):
                continue
            label = type(module).__name__
            if name.isdigit():
                label = f"{label}.{name}"
            segments.append(label)
        return "/" + "/".join(segments)

    @contextlib.contextmanager
    def recording_calls(self) -> Iterator[None]:
        """Count each module's forward calls while active.

        Uses forward pre-hooks so modules that raise mid-forward still count
        as having started; the hooks are removed however the block ends.
        Also notes which modules were handed a parameter or buffer as a
        forward argument (``parameter_receivers``): a weight-norm
        parametrisation receives the weights its parent holds.
        """
        held = {id(t) for m in self._instances.values()
                for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]}

        def make_hook(path: str) -> Callable[..., None]:
            info = self.modules[path]

            def hook(_module: torch.nn.Module, args: tuple) -> None:
                info.calls += 1
                for arg in args:
                    if isinstance(arg, torch.Tensor) and id(arg) in held:
                        self.parameter_receivers.setdefault(id(arg), set()).add(path)

            return hook

        for info in self.modules.values():
            info.calls = 0
        self.parameter_receivers = {}
        handles = [
            module.register_forward_pre_hook(make_hook(path))
            for path, module in self._instances.items()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def class_names(self) -> dict[str, str]:
        """Module path -> class name (without its package)."""
        return {path: info.class_name for path, info in self.modules.items()}

    def call_counts(self) -> dict[str, int]:
        return {path: info.calls for path, info in self.modules.items()}

    def parameter_owners(self) -> dict[int, list[str]]:
        """Map ``id(parameter)`` to every module that holds it directly.

        Tied weights (a GPT-2 ``lm_head`` sharing ``wte``) have several owners.
        """
        owners: dict[int, list[str]] = {}
        for path, module in self._instances.items():
            for param in module.parameters(recurse=False):
                owners.setdefault(id(param), []).append(path)
        return owners

    def to_records(self, node_counts: dict[str, int]) -> list[dict]:
        """Module tree rows for the sidecar, with self and subtree node counts."""
        totals = dict.fromkeys(self.modules, 0)
        for path, count in node_counts.items():
            for ancestor in ancestors(self.deepest_known(path)):
                totals[ancestor] += count
        return [
            {
                "path": info.path,
                "class": info.class_path,
                "tag": info.tag,
                "params_self": info.own_params,
                "params_total": info.total_params,
                "nodes_self": node_counts.get(path, 0),
                "nodes_total": totals[path],
                "executed": info.executed,
                "calls": info.calls,
                "children": list(info.children),
            }
            for path, info in self.modules.items()
        ]
