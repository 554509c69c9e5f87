"""Property: any small module tree, exported by any strategy, gets right tags.

Hypothesis draws module trees nobody wrote by hand: ``nn.Sequential``,
``nn.ModuleList`` and ``nn.ModuleDict`` nested in each other, a submodule
reused at two places, residual adds around a child and loops over a list.
For each, every strategy must give a file that passes ``validate`` (schema,
sidecar agreement, module regions convex) and that puts every
parameter-reading node on the module owning the parameter (at 100% here,
beyond the self-check's 99% bar).  The one exception is a known limit of
HTP, where the export's own self-check must then fail and say why: a wrong
tag may be refused, never passed off as right.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelexport.api import export_model
from modelexport.tools.module_view import open_view
from modelexport.validation.structure import validate_structure
from tests.conftest import STRATEGIES

WIDTH = 4
# strategies that attribute by TorchScript scope names (see the known limit below)
SCOPE_NAMED = {"htp"}

# A tree description: ("linear",) | ("act",) | ("seq", [children]) |
# ("list", [children], residual) | ("dict", [children]) | ("residual", child)
leaves = st.sampled_from([("linear",), ("linear",), ("act",)])


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    several = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.tuples(st.just("seq"), several),
        st.tuples(st.just("list"), several, st.booleans()),
        st.tuples(st.just("dict"), several),
        st.tuples(st.just("residual"), children),
    )


trees = st.recursive(leaves, _containers, max_leaves=6)


class LoopOverList(torch.nn.Module):
    """``for layer in self.layers: x = layer(x)``, or ``x = x + layer(x)`` with residuals."""

    def __init__(self, layers: list[torch.nn.Module], residual: bool) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x) if self.residual else layer(x)
        return x


class ApplyDict(torch.nn.Module):
    """Each entry of a ``ModuleDict`` applied in key order."""

    def __init__(self, layers: list[torch.nn.Module]) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleDict({f"b{i}": layer for i, layer in enumerate(layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x


class Residual(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def build(tree: Any) -> torch.nn.Module:
    kind = tree[0]
    if kind == "linear":
        return torch.nn.Linear(WIDTH, WIDTH)
    if kind == "act":
        return torch.nn.Tanh()
    if kind == "seq":
        return torch.nn.Sequential(*map(build, tree[1]))
    if kind == "list":
        return LoopOverList(list(map(build, tree[1])), residual=tree[2])
    if kind == "dict":
        return ApplyDict(list(map(build, tree[1])))
    return Residual(build(tree[1]))


class WithReuse(torch.nn.Module):
    """The drawn tree, with one of its Linear layers also called from the root."""

    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shared = next((m for m in body.modules() if isinstance(m, torch.nn.Linear)),
                           torch.nn.Linear(WIDTH, WIDTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.body(x))


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, reuse=st.booleans())
def test_random_module_trees_get_tags_that_validate_and_own_their_parameters(
        strategy, tree, reuse, tmp_path):
    torch.manual_seed(0)
    body = build(tree)
    model = (WithReuse(body) if reuse else body).eval()
    path = tmp_path / f"{strategy}.onnx"
    report = export_model(model, torch.randn(2, WIDTH), path, strategy=strategy,
                          validate=True)
    assert report["parity"]["passed"], (tree, report["parity"])
    check = report["check"]
    if strategy in SCOPE_NAMED and not check["passed"]:
        # Known limit (docs/contributing.md): a layer reused from the root under another
        # attribute gets a TorchScript scope naming only its local name, which
        # two layers share; HTP will not guess, and the self-check must say so.
        assert check["failures"] and reuse, (tree, check)
        return
    assert check["passed"], (tree, check)
    owned = report["anchored"]
    assert owned["correct"] == owned["anchored_nodes"], (tree, check)
    validation = validate_structure(open_view(path, check=False))
    assert validation.passed, (tree, [f.line() for f in validation.findings])
