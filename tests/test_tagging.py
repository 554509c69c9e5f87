"""The tagging pass and scope resolution, on hand-built graphs and trees."""

from __future__ import annotations

import pytest
import torch
from onnx import helper

from modelexport.attribution.scopes import resolve_scope, scope_segments
from modelexport.errors import one_line
from modelexport.hierarchy import ModuleTree, common_ancestor
from modelexport.tagging import Assignment, call_indices, project_assignments
from modelexport.tags import TagSource

E = TagSource.EXACT


def node(name, inputs, outputs):
    return helper.make_node("Identity", inputs, outputs, name=name)


def test_common_ancestor():
    assert common_ancestor(["a.b.c", "a.b.d"]) == "a.b"
    assert common_ancestor(["a.b", "a.bc"]) == "a"
    assert common_ancestor(["a", "b"]) == ""
    assert common_ancestor(["a.b"]) == "a.b"


def test_constant_is_projected_onto_its_consumers_common_ancestor():
    nodes = [node("const", [], ["c"]), node("x", ["c"], ["y"]), node("z", ["c"], ["w"])]
    assigned = [None, Assignment("enc.layer.0.q", E), Assignment("enc.layer.0.k", E)]
    result = project_assignments(nodes, assigned)
    assert result[0] == Assignment("enc.layer.0", TagSource.PROJECTED)


def test_unconsumed_node_is_projected_from_its_producers():
    nodes = [node("a", [], ["t"]), node("tail", ["t"], ["out"])]
    result = project_assignments(nodes, [Assignment("head", E), None])
    assert result[1] == Assignment("head", TagSource.PROJECTED)


def test_isolated_node_goes_to_root_and_says_so():
    nodes = [node("lonely", [], ["t"])]
    assert project_assignments(nodes, [None]) == [Assignment("", TagSource.ROOT)]


def test_projection_chains_through_several_scope_less_nodes():
    nodes = [node("c1", [], ["a"]), node("c2", ["a"], ["b"]), node("use", ["b"], ["o"])]
    result = project_assignments(nodes, [None, None, Assignment("m.fc", E)])
    assert [r.module for r in result] == ["m.fc", "m.fc", "m.fc"]


def test_call_indices_follow_contiguous_runs():
    seq = ["s", "s.fc", "other", "s.fc", "s"]
    assignments = [Assignment(m, E) for m in seq]
    calls = call_indices(assignments, {"s": 2, "s.fc": 2, "other": 1, "": 1})
    assert calls == [0, 0, None, 1, 1]


def test_call_indices_dropped_when_runs_disagree_with_hooks():
    assignments = [Assignment(m, E) for m in ["s", "x", "s", "x", "s"]]
    assert call_indices(assignments, {"s": 2, "x": 1}) == [None] * 5


class _Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)


class _Outer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.ModuleList([_Inner(), _Inner()])
        self.seq = torch.nn.Sequential(torch.nn.Linear(2, 2))


@pytest.fixture
def tree():
    return ModuleTree(_Outer())


@pytest.mark.parametrize(("name", "expected"), [
    ("/wrapped/layer.0/fc/Gemm", ("layer.0.fc", True)),       # container never ran
    ("/wrapped/layer/layer.1/fc/Gemm", ("layer.1.fc", True)),  # doubled segment
    ("/wrapped/seq/seq.0/Gemm", ("seq.0", True)),              # grandparent-relative
    ("/wrapped/layer.0/fc_1/Gemm", ("layer.0.fc", True)),      # second call suffix
    ("/wrapped/layer.0/mystery/Add", ("layer.0", False)),      # unknown: nearest known
    ("/wrapped/Add", ("", True)),                              # the root's own op
])
def test_resolve_scope(tree, name, expected):
    assert resolve_scope(scope_segments(name), tree) == expected


def test_scope_less_names_are_left_for_projection():
    assert scope_segments("Identity_62") is None


def test_resolution_never_leaves_the_current_module(tree):
    # "seq" exists at the root, but not inside layer.0: no sideways jump
    assert resolve_scope(["layer.0", "seq"], tree) == ("layer.0", False)


def test_class_path_tags_skip_passive_containers(tree):
    assert tree.tag("layer.1.fc") == "/_Outer/_Inner.1/Linear"
    assert tree.tag("seq.0") == "/_Outer/Sequential/Linear.0"
    assert tree.tag("") == "/_Outer"


def test_one_line_reaches_the_root_cause():
    try:
        try:
            raise ValueError("the real reason\nmore detail")
        except ValueError as inner:
            raise RuntimeError("\x1b[96mstep 1 failed\x1b[0m\n\nlong text") from inner
    except RuntimeError as exc:
        assert one_line(exc) == "step 1 failed <- ValueError: the real reason"
