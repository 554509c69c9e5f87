"""What a model is made of, found cheaply and from evidence, before any export.

``ModelAnalyzer.analyze_model`` walks the module tree (types, parameter
counts) and reads the ``forward`` source of each distinct module class with
``ast``: a branch or loop exit whose condition reduces a tensor
(``x.sum() > 0``, ``.item()``, ``torch.any``) is data-dependent control flow;
one that reads a shape (``x.shape[1] > 1``, ``len(x)``) makes the traced
graph shape-specific.  Each finding keeps its class, line and source text,
so the selector's reasons can quote it.  Source analysis is cached per
class, since large models repeat the same few classes many times.

The module tree also gives structural facts (root container, shared
instances, tied parameters, a forward reading a descendant's weights).
Given example inputs, the analyzer also watches one forward
(:mod:`modelexport.analysis.execution_evidence`): what only running can show,
and traces the model as the TorchScript exporter would
(:mod:`modelexport.analysis.trace_evidence`): whether that trace, the first
step of HTP and USAGE_BASED, goes through.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any

import torch

from modelexport.analysis.execution_evidence import ExecutionEvidence, observing
from modelexport.analysis.trace_evidence import TraceEvidence, trace_model

# Tensor methods and torch functions whose result depends on tensor *values*.
_VALUE_METHODS = frozenset({
    "sum", "mean", "max", "min", "any", "all", "item", "norm", "std", "var", "prod",
    "count_nonzero", "nonzero", "allclose", "equal", "isnan", "isinf", "argmax", "argmin",
    "tolist",
})
_VALUE_FUNCTIONS = frozenset({"any", "all", "equal", "allclose", "isnan", "isinf",
                              "is_nonzero", "count_nonzero"})
_SHAPE_ATTRIBUTES = frozenset({"shape", "ndim"})
_SHAPE_METHODS = frozenset({"size", "dim", "numel"})


@dataclass(frozen=True)
class ControlFlowSite:
    """One control-flow site in a forward: where it is and what it depends on."""

    kind: str  # "data" or "shape"
    where: str  # "Class.forward:line"
    code: str

    def __str__(self) -> str:
        return f"{self.where}: `{self.code}`"


def _roots_in_forward_args(node: ast.AST, arguments: set[str]) -> bool:
    """True when the expression is built on a forward argument (not ``self.x``)."""
    return any(isinstance(c, ast.Name) and c.id in arguments for c in ast.walk(node))


class _DropPresenceChecks(ast.NodeTransformer):
    """``x is None`` asks whether an argument was given, not what it holds."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        if all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
            return ast.Constant(value=True)
        return self.generic_visit(node)


def _dependency(test: ast.AST, arguments: set[str], derived: dict[str, str]) -> str | None:
    """"data", "shape" or None for an expression (a branch condition, an assignment).

    ``derived`` maps local names already known to hold a value- or
    shape-derived result (``n = x.shape[1]``) to that kind.
    """
    kind = None
    for child in ast.walk(test):
        if isinstance(child, ast.Name) and child.id in derived:
            if derived[child.id] == "data":
                return "data"
            kind = "shape"
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
            method, owner = child.func.attr, child.func.value
            if isinstance(owner, ast.Name) and owner.id == "torch":
                if method in _VALUE_FUNCTIONS:
                    return "data"
                continue
            if method in _VALUE_METHODS and _roots_in_forward_args(owner, arguments):
                return "data"
            if method in _SHAPE_METHODS and _roots_in_forward_args(owner, arguments):
                kind = "shape"
        elif isinstance(child, ast.Attribute) and child.attr in _SHAPE_ATTRIBUTES:
            if _roots_in_forward_args(child.value, arguments):
                kind = "shape"
        elif (isinstance(child, ast.Call) and isinstance(child.func, ast.Name)
              and child.func.id == "len" and child.args
              and _roots_in_forward_args(child.args[0], arguments)):
            kind = "shape"
    return kind


def _self_chain(node: ast.AST) -> list[str] | None:
    """``self.block.fc`` -> ``['block', 'fc']``; None for anything else."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "self" and names:
        return names[::-1]
    return None


@functools.lru_cache(maxsize=512)
def attribute_chains_in_class(cls: type) -> tuple[tuple[str, ...], ...]:
    """Every ``self.a.b`` read in ``cls.forward`` that reaches past a direct child.

    ``F.linear(x, self.proj.weight)`` uses a child's parameter without running
    the child; that evidence makes the reading module a legitimate home for
    the node (see ``direct_parameter_readers``).
    """
    parsed = _parse_forward(cls)
    if parsed is None:
        return ()
    chains = {tuple(chain) for node in ast.walk(parsed[0])
              if isinstance(node, ast.Attribute)
              and (chain := _self_chain(node)) is not None and len(chain) >= 2}
    return tuple(sorted(chains))


def direct_parameter_readers(model: torch.nn.Module) -> dict[int, set[str]]:
    """``id(tensor)`` -> modules whose own forward reads that descendant's parameter or buffer.

    Resolved on the instances: a chain counts only when it ends on a tensor
    that a descendant module holds, so ``self.config.hidden_size`` and the
    like are ignored.
    """
    readers: dict[int, set[str]] = {}
    for path, module in model.named_modules():
        for chain in attribute_chains_in_class(type(module)):
            target: object = module
            for name in chain:
                target = getattr(target, name, None)
                if target is None:
                    break
            if isinstance(target, torch.Tensor):
                readers.setdefault(id(target), set()).add(path)
    return readers


@functools.lru_cache(maxsize=512)
def nested_calls_in_class(cls: type) -> tuple[tuple[str, str], ...]:
    """``self.a.b(...)`` calls in ``cls.forward``: (attribute path, where), cached per class.

    Calling a grandchild directly skips the child's forward, so its scope
    never opens; scope-named exports then lose the path in between.
    """
    parsed = _parse_forward(cls)
    if parsed is None:
        return ()
    function, first_line = parsed
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            chain = _self_chain(node.func)
            if chain and len(chain) >= 2:
                where = f"{cls.__name__}.forward:{first_line + node.lineno - 1}"
                found.append((".".join(chain), where))
    return tuple(found)


def _parse_forward(cls: type) -> tuple[ast.FunctionDef, int] | None:
    try:
        source = textwrap.dedent(inspect.getsource(cls.forward))
        _, first_line = inspect.getsourcelines(cls.forward)
        function = ast.parse(source).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return None
    if not isinstance(function, ast.FunctionDef):
        return None
    return function, first_line


@functools.lru_cache(maxsize=512)
def control_flow_in_class(cls: type) -> tuple[ControlFlowSite, ...]:
    """Branches on tensor values or shapes in ``cls.forward`` (cached per class)."""
    parsed = _parse_forward(cls)
    if parsed is None:
        return ()
    function, first_line = parsed
    arguments = {a.arg for a in function.args.args + function.args.kwonlyargs} - {"self"}
    if function.args.vararg:
        arguments.add(function.args.vararg.arg)
    findings = []
    derived: dict[str, str] = {}
    for node in sorted(ast.walk(function), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, ast.Assign):
            kind = _dependency(node.value, arguments, derived)
            if kind:
                for target in node.targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            derived[name.id] = kind
        if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)):
            test = _DropPresenceChecks().visit(copy.deepcopy(node.test))
            kind = _dependency(test, arguments, derived)
            if kind:
                line = first_line + node.lineno - 1
                code = ast.unparse(node.test)
                findings.append(ControlFlowSite(kind, f"{cls.__name__}.forward:{line}", code))
    return tuple(findings)


def first_instances(model: torch.nn.Module) -> dict[type, torch.nn.Module]:
    """One instance of each module class in ``model``, the first in traversal order."""
    first: dict[type, torch.nn.Module] = {}
    for module in model.modules():
        first.setdefault(type(module), module)
    return first


def control_flow_sites(model: torch.nn.Module) -> list[ControlFlowSite]:
    """Branches in the forwards of ``model``'s own classes, the library's layers skipped.

    torch.nn's layers branch only on configuration.  Each class is parsed
    once per process (``control_flow_in_class``), so an export's report
    pays a walk of the module tree, not the analyzer's whole pass.
    """
    return [finding for cls in first_instances(model)
            if not cls.__module__.startswith("torch.nn.")
            for finding in control_flow_in_class(cls)]


def _hints(module: torch.nn.Module) -> set[str]:
    hints = set()
    name = type(module).__name__
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        hints.add("convolution")
    if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
        hints.add("embedding")
    if isinstance(module, torch.nn.MultiheadAttention) or "Attention" in name:
        hints.add("attention")
    if isinstance(module, (torch.nn.LayerNorm, torch.nn.modules.batchnorm._NormBase,
                           torch.nn.GroupNorm)) or name.endswith("RMSNorm"):
        hints.add("normalization")
    if isinstance(module, torch.nn.RNNBase):
        hints.add("recurrent")
    return hints


def _resolve_attribute(root: object, chain: str) -> object:
    for name in chain.split("."):
        root = getattr(root, name, None)
        if root is None:
            return None
    return root


def _is_huggingface(model: torch.nn.Module) -> bool:
    return any(c.__module__.startswith("transformers.") and c.__name__ == "PreTrainedModel"
               for c in type(model).__mro__)


def _tree_depth(model: torch.nn.Module) -> int:
    return max((path.count(".") + 1 for path, _ in model.named_modules() if path), default=0)


def _counts_with_duplicates(model: torch.nn.Module) -> tuple[int, int]:
    """(module instances registered under more than one path, parameters tied likewise)."""
    modules = sum(1 for _ in model.named_modules(remove_duplicate=False)) - \
        sum(1 for _ in model.named_modules())
    params = sum(1 for _ in model.named_parameters(remove_duplicate=False)) - \
        sum(1 for _ in model.named_parameters())
    return modules, params


def _reads_descendant_parameters(model: torch.nn.Module) -> bool:
    """Some module's forward reads a descendant's parameter without running it.

    ``nn.MultiheadAttention`` calls ``F.multi_head_attention_forward`` with
    ``self.out_proj.weight``: scope-named exports then put the node on the
    reader, usage matching on the owner.
    """
    params = {id(p) for p in model.parameters()}
    return any(key in params for key in direct_parameter_readers(model))


@dataclass
class ModelCharacteristics:
    """What the selector knows about a model; every flag has its evidence listed.

    ``execution`` is filled when the analyzer saw the model run (inputs
    given, or AUTO's probe), ``trace`` when it also traced it (inputs given);
    rules that need either do not match without it.
    """

    model_class: str
    model_type: str
    has_control_flow: bool
    is_huggingface: bool
    module_count: int
    parameter_count: int
    has_dynamic_shapes: bool
    estimated_complexity: str
    framework_hints: list[str] = field(default_factory=list)
    calls_nested_modules: bool = False
    control_flow_evidence: list[str] = field(default_factory=list)
    shape_evidence: list[str] = field(default_factory=list)
    nested_call_evidence: list[str] = field(default_factory=list)
    root_is_container: bool = False
    reads_descendant_parameters: bool = False
    shared_modules: int = 0
    tied_parameters: int = 0
    tree_depth: int = 0
    execution: ExecutionEvidence | None = None
    trace: TraceEvidence | None = None

    def features(self) -> dict[str, bool | float]:
        """The flat view the fitted rules test: booleans and numbers, by name."""
        found: dict[str, bool | float] = {
            "has_control_flow": self.has_control_flow,
            "has_dynamic_shapes": self.has_dynamic_shapes,
            "calls_nested_modules": self.calls_nested_modules,
            "is_huggingface": self.is_huggingface,
            "root_is_container": self.root_is_container,
            "reads_descendant_parameters": self.reads_descendant_parameters,
            "shared_modules": self.shared_modules > 0,
            "tied_parameters": self.tied_parameters > 0,
            "module_count": float(self.module_count),
            "parameter_count": float(self.parameter_count),
            "tree_depth": float(self.tree_depth),
        }
        for hint in FRAMEWORK_HINTS:
            found[f"has_{hint}"] = hint in self.framework_hints
        run = self.execution
        if run is not None:
            found.update({
                "op_calls": float(run.op_calls),
                "distinct_ops": float(run.distinct_ops),
                "data_dependent_ops": bool(run.data_dependent_ops),
                "random_ops": bool(run.random_ops),
                "inplace_ops": run.inplace_op_calls > 0,
                "pointwise_share": run.pointwise_share,
                "reduction_share": run.reduction_share,
                "view_share": run.view_share,
                "complex_values": run.complex_values,
                "unexecuted_module_share": run.unexecuted_modules / max(1, run.modules),
                "repeated_modules": run.repeated_modules > 0,
            })
            if run.untranslatable_ops is not None:
                found["untranslatable_ops"] = bool(run.untranslatable_ops)
        trace = self.trace
        if trace is not None and trace.registry_known:
            found.update({
                "trace_fails": not trace.traced,
                "traced_untranslatable_ops": bool(trace.untranslatable_ops),
                "trace_blocked": not trace.traced or bool(trace.untranslatable_ops),
            })
        return found


FRAMEWORK_HINTS = ("attention", "convolution", "embedding", "normalization", "recurrent")
# Features only a watched forward gives (ModelCharacteristics.execution).
EXECUTION_FEATURES = frozenset({
    "op_calls", "distinct_ops", "data_dependent_ops", "random_ops", "inplace_ops",
    "pointwise_share", "reduction_share", "view_share", "complex_values",
    "unexecuted_module_share", "repeated_modules", "untranslatable_ops",
})
# Features only a TorchScript trace gives (ModelCharacteristics.trace).
TRACE_FEATURES = frozenset({"trace_fails", "traced_untranslatable_ops", "trace_blocked"})


class ModelAnalyzer:
    """Cheap, export-free analysis of a model (see module doc).

    ``analyze_model`` is a static method: ``ModelAnalyzer.analyze_model(m)``
    and ``ModelAnalyzer().analyze_model(m)`` both work.
    """

    @staticmethod
    def analyze_model(model: torch.nn.Module, inputs: Any = None,
                      execution: ExecutionEvidence | None = None) -> ModelCharacteristics:
        """Characteristics of ``model``; with ``inputs``, also one observed forward and a trace.

        ``execution`` passes evidence already recorded (AUTO's probe) so the
        model is not run twice; the model is then not traced either (AUTO's
        first TorchScript attempt is that trace).
        """
        trace = None
        if execution is None and inputs is not None:
            execution, trace = observe_forward(model, inputs)
        modules = list(model.modules())
        hints: set[str] = set()
        data: list[ControlFlowSite] = []
        shape: list[ControlFlowSite] = []
        nested: list[str] = []
        for finding in control_flow_sites(model):
            (data if finding.kind == "data" else shape).append(finding)
        for cls, instance in first_instances(model).items():
            if cls.__module__.startswith("torch.nn."):
                continue  # the library's own layers branch only on configuration
            for chain, where in nested_calls_in_class(cls):
                if isinstance(_resolve_attribute(instance, chain), torch.nn.Module):
                    nested.append(f"{where}: `self.{chain}(...)`")
        for module in modules:
            hints |= _hints(module)
        params = sum(p.numel() for p in model.parameters())
        if "attention" in hints:
            model_type = "transformer"
        elif "convolution" in hints:
            model_type = "cnn"
        else:
            model_type = "unknown"
        if params < 10_000_000 and len(modules) < 200:
            complexity = "low"
        elif params > 300_000_000 or len(modules) > 2000:
            complexity = "high"
        else:
            complexity = "medium"
        shared, tied = _counts_with_duplicates(model)
        return ModelCharacteristics(
            model_class=type(model).__name__,
            model_type=model_type,
            has_control_flow=bool(data),
            is_huggingface=_is_huggingface(model),
            module_count=len(modules),
            parameter_count=params,
            has_dynamic_shapes=bool(shape),
            estimated_complexity=complexity,
            framework_hints=sorted(hints),
            calls_nested_modules=bool(nested),
            control_flow_evidence=[str(f) for f in data],
            shape_evidence=[str(f) for f in shape],
            nested_call_evidence=nested,
            root_is_container=isinstance(model, (torch.nn.Sequential, torch.nn.ModuleList,
                                                 torch.nn.ModuleDict)),
            reads_descendant_parameters=_reads_descendant_parameters(model),
            shared_modules=shared,
            tied_parameters=tied,
            tree_depth=_tree_depth(model),
            execution=execution,
            trace=trace,
        )


def observe_forward(model: torch.nn.Module, inputs: Any,
                    ) -> tuple[ExecutionEvidence, TraceEvidence]:
    """Run ``model`` once on ``inputs`` (no grad), recording ops and module calls, then trace it.

    The trace gets the inputs an export would use: a KV cache the forward
    returned unasked is turned off first, as the exporter does.
    """
    from modelexport.hierarchy import ModuleTree
    from modelexport.inputs import ModelInputs, run_checked, without_unrequested_cache

    tree = ModuleTree(model)
    example = ModelInputs.from_user(inputs)
    with tree.recording_calls(), observing(model) as log:
        outputs = run_checked(model, example)
    evidence = ExecutionEvidence.from_run(log, tree.call_counts())
    example, _ = without_unrequested_cache(model, example, outputs)
    return evidence, trace_model(model, example)
