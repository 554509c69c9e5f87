"""Structural checks of a tagged ONNX file: what ``validate`` asks of any file.

Errors make ``modelexport validate`` fail; warnings are printed only.  The
checks, each able to fail on a real file:

* ``checker`` and ``runtime-load``: the full ONNX checker and an ONNX
  Runtime load, the same two the export's self-check asks
  (``validation.file_checks``);
* ``untagged``: every node names a module;
* ``unknown-module``: that module is in the sidecar's tree;
* ``tag-mismatch``: the node's class-path tag is the sidecar's tag for it;
* ``duplicate-keys``: no metadata key appears twice on a node (some
  optimisers copy properties when they merge nodes);
* ``non-convex``: every module's nodes form a region that its boundary
  tensors explain (see :mod:`modelexport.tools.regions`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from modelexport.hierarchy import ROOT, ancestors
from modelexport.tags import KEY_TAG, node_props, tag_value_problem
from modelexport.tools.module_view import ORIGIN_TAGS, ModuleView, all_regions
from modelexport.tools.regions import RegionIndex
from modelexport.validation.file_checks import FileVerdict, check_file

ERROR, WARNING = "error", "warning"
_LISTED = 10  # offending nodes named per finding


@dataclass
class CheckFailure:
    """One failed check: what, how bad, and which nodes."""

    check: str
    severity: str
    message: str
    nodes: list[str] = field(default_factory=list)

    def line(self) -> str:
        shown = ", ".join(self.nodes[:_LISTED])
        more = f" (+{len(self.nodes) - _LISTED} more)" if len(self.nodes) > _LISTED else ""
        return f"{self.severity}: [{self.check}] {self.message}" + (
            f": {shown}{more}" if shown else "")


@dataclass
class ValidationReport:
    file: str
    origin: str
    nodes: int
    modules: int
    findings: list[CheckFailure] = field(default_factory=list)
    parity: dict | None = None
    ownership: dict | None = None
    per_module: dict | None = None

    @property
    def passed(self) -> bool:
        parity_ok = self.parity is None or self.parity["passed"]
        per_module_ok = self.per_module is None or not self.per_module["diverged"]
        return parity_ok and per_module_ok and not any(
            f.severity == ERROR for f in self.findings)

    def as_dict(self) -> dict:
        payload = asdict(self)
        payload["passed"] = self.passed
        return payload


def _file_findings(view: ModuleView, verdict: FileVerdict | None) -> list[CheckFailure]:
    if view.path is None:
        return []
    verdict = verdict or check_file(view.path, view.model)
    return [CheckFailure(check, ERROR, line) for check, line in verdict.findings()]


def _sidecar_tags(view: ModuleView) -> dict[str, str]:
    return {row["path"]: row.get("tag", "") for row in view.sidecar_modules()}


def _tag_findings(view: ModuleView) -> list[CheckFailure]:
    names = view.node_names()
    findings: list[CheckFailure] = []
    untagged = [names[i] for i, info in enumerate(view.nodes) if info.module is None]
    if untagged:
        findings.append(CheckFailure("untagged", ERROR, f"{len(untagged)} nodes name no module",
                                untagged))
    tree = _sidecar_tags(view)
    if not tree:
        why = (f"the sidecar beside the file is unusable ({view.sidecar_problem})"
               if view.sidecar_problem else "no sidecar beside the file")
        findings.append(CheckFailure("no-sidecar", WARNING,
                                f"{why}; module names not checked against the model's tree"))
        return findings
    unknown = [names[i] for i, info in enumerate(view.nodes)
               if info.module is not None and info.module not in tree]
    if unknown:
        findings.append(CheckFailure("unknown-module", ERROR,
                                f"{len(unknown)} nodes name a module the sidecar's tree "
                                "does not have", unknown))
    if view.origin == ORIGIN_TAGS:
        mismatched = []
        for name, node, info in zip(names, view.model.graph.node, view.nodes):
            tag = node_props(node).get(KEY_TAG)
            if info.module in tree and tag is not None and tag != tree[info.module]:
                mismatched.append(name)
        if mismatched:
            findings.append(CheckFailure("tag-mismatch", ERROR,
                                    f"{len(mismatched)} nodes carry a class path other than "
                                    "their module's", mismatched))
    return findings


def _malformed_tags(view: ModuleView) -> CheckFailure | None:
    """Tag values the schema does not allow: readers of the file would refuse it."""
    names = view.node_names()
    problems = [f"{names[i]}: {problem}" for i, node in enumerate(view.model.graph.node)
                if (problem := tag_value_problem(node_props(node))) is not None]
    if problems:
        return CheckFailure("malformed-tag", ERROR,
                       f"{len(problems)} nodes carry a tag value the schema does not allow",
                       problems)
    return None


def _duplicate_keys(view: ModuleView) -> CheckFailure | None:
    names = view.node_names()
    duplicated = [
        names[i] for i, node in enumerate(view.model.graph.node)
        if any(n > 1 for n in Counter(p.key for p in node.metadata_props).values())
    ]
    if duplicated:
        return CheckFailure("duplicate-keys", ERROR,
                       f"{len(duplicated)} nodes repeat a metadata key", duplicated)
    return None


def _judged_by_parts(view: ModuleView) -> set[str]:
    """Modules whose region is judged one connected part at a time.

    A module that ran more than once has one part per call.  So do its
    ancestors: a shared layer called again from outside its parent (a tied
    head, a block reused at the root) puts that call's nodes in the parent's
    region too, correctly tagged, and the path between the two calls leaves
    the parent.  Each part must still be convex.
    """
    repeated = {row["path"] for row in view.sidecar_modules() if (row.get("calls") or 0) > 1}
    repeated.update(info.module for info in view.nodes
                    if info.call is not None and info.call > 0 and info.module is not None)
    return {outer for module in repeated for outer in ancestors(module)}


def _components(index: RegionIndex, region: list[int]) -> list[list[int]]:
    """Weakly connected parts of a region, using only edges inside it."""
    inside = set(region)
    parent = {i: i for i in region}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in region:
        for name in index.nodes[i].output:
            for c in index.consumers.get(name, ()):
                if c in inside:
                    parent[find(c)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in region:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _never_ran(view: ModuleView) -> set[str]:
    """Containers the sidecar records as never called (a ``ModuleList`` looped over).

    Their nodes are their children's, with whatever the caller computes in
    between (``x = x + layer(x)``): the union is no computation of its own,
    so it has no reason to be a convex region.
    """
    return {row["path"] for row in view.sidecar_modules() if row.get("calls") == 0}


def _convexity(view: ModuleView) -> list[CheckFailure]:
    index = RegionIndex(view.model)
    names = view.node_names()
    by_parts = _judged_by_parts(view)
    skipped = _never_ran(view)
    findings = []
    for module, region in all_regions(view).items():
        if module == ROOT or module in skipped:
            continue
        parts = _components(index, region) if module in by_parts else [region]
        breaks = sorted({b for part in parts for b in index.convexity_breaks(part)})
        if breaks:
            findings.append(CheckFailure(
                "non-convex", ERROR,
                f"module {module!r}: {len(breaks)} outside nodes sit on a path that leaves "
                "and re-enters it", [f"{names[b]} ({view.nodes[b].module})" for b in breaks]))
    return findings


def validate_structure(view: ModuleView, verdict: FileVerdict | None = None,
                       ) -> ValidationReport:
    """Run every structural check on ``view`` (its file, when it has one).

    ``verdict`` is the checker's and ONNX Runtime's word on the file when the
    caller already asked (to keep the runtime session for parity).
    """
    report = ValidationReport(str(view.path or ""), view.origin, len(view.nodes),
                              len(view.tree()))
    report.findings.extend(_file_findings(view, verdict))
    report.findings.extend(_tag_findings(view))
    for check in (_malformed_tags, _duplicate_keys):
        if (found := check(view)) is not None:
            report.findings.append(found)
    report.findings.extend(_convexity(view))
    return report
