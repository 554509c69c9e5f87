"""The cheap check every export runs on itself before it may say "ok".

Three questions, answered from the saved file and the graph in memory:

1. Is the file valid?  (``file_checks``: the full checker and an ONNX
   Runtime load.)
2. Can a user feed it by name?  Every graph input must be named after one of
   the example's inputs.
3. Do the tags put parameters where they live?  (``ownership``: at least
   ``MIN_OWNERSHIP`` of the parameter-reading nodes on a module allowed to
   read the parameter.)

AUTO treats a strategy whose check fails as failed and moves on; an
explicitly chosen strategy keeps its file and the report says what failed.
The ``validate`` command asks the first and third questions with the same
functions (``validation.saved_file``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch

from modelexport.hierarchy import ModuleTree
from modelexport.parameters import Holding
from modelexport.tags import NodeTag
from modelexport.validation.file_checks import check_file
from modelexport.validation.ownership import Ownership, ownership, ownership_problem


@dataclass
class SelfCheck:
    """What the check found; ``failures`` is empty when the export may say "ok"."""

    loads: bool = False
    failures: list[str] = field(default_factory=list)
    ownership: Ownership = field(default_factory=Ownership)
    # the ONNX Runtime session that loaded the file, when the caller asked to keep
    # it for parity (``FileVerdict.session``); never part of the report
    session: Any = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return not self.failures

    def take_session(self) -> Any:
        """The kept session, handed over: the check holds no reference to it after."""
        session, self.session = self.session, None
        return session

    def as_dict(self) -> dict:
        return {"loads": self.loads, "failures": list(self.failures),
                "ownership": asdict(self.ownership), "passed": self.passed,
                "ownership_accuracy": self.ownership.accuracy}


def self_check(graph: onnx.ModelProto, path: Path, tags: Sequence[NodeTag | None],
               tree: ModuleTree, model: torch.nn.Module, input_names: Sequence[str],
               held: dict[str, Holding] | None = None, keep_session: bool = False,
               ) -> SelfCheck:
    """Run the three checks of the module doc on ``graph``, saved (tags written) at ``path``.

    ``keep_session`` keeps ONNX Runtime's session on the file in the result
    (``take_session``), for a parity check that follows.
    """
    check = SelfCheck()
    verdict = check_file(path, graph, keep_session=keep_session)
    check.loads, check.session = verdict.loads, verdict.session
    check.failures.extend(verdict.problems())
    known = set(input_names)
    stray = [i.name for i in graph.graph.input if i.name not in known]
    if stray:
        check.failures.append(f"graph inputs {stray} match no example input name "
                              f"({', '.join(input_names)})")
    check.ownership = ownership(graph, [t.module if t is not None else None for t in tags],
                                tree, model, held)
    if (problem := ownership_problem(check.ownership)) is not None:
        check.failures.append(problem)
    return check
