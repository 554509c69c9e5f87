"""Splitting a matrix run into shards, and merging the shards' results back.

A shard is a set of *models* (every strategy of a model stays together, so
reference agreement and the selector's verdicts, which compare a model's
cells, come out the same as in a single run).  Models are dealt out by
recorded cost, longest first, each to the shard with the least work so far
(the LPT rule), so shards finish close together; the split depends only on
the model list and the costs file, so every CI job computes the same one.

Costs are the seconds each cell took in an earlier run
(``model_zoo/costs.json``, written by ``modelexport zoo costs``; a model's
cost is the sum of its cells); a model with no recorded cost counts as the
median of those that have one.  The same file lists each tier's cells for
the asv suite, which must not import torch to learn its parameters.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelexport.errors import ModelExportError
from modelexport.harness.cells import CellResult

# model_zoo.registry.MODE_SEPARATOR: the harness reads zoo names, it does not import the zoo
MODE_SEPARATOR = "@"

COSTS_SCHEMA = "modelexport.zoo-costs/1"


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as written on the command line
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 1 <= K <= N; anything else is a ``ValueError`` naming the form."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"shard must look like K/N (e.g. 2/4), not {text!r}") from None
        if not 1 <= index <= count:
            raise ValueError(f"shard {text}: K must be between 1 and N")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def cell_costs(cells: list[CellResult]) -> dict[str, dict[str, float]]:
    """Seconds each cell took, per zoo entry and strategy: the whole cell where recorded.

    Recorded per entry, from its seeded run where the run had one: the two
    weight modes of a model cost about the same (``assign`` reads the
    entry's cost for both), and the asv suite lists one row per entry.
    """
    costs: dict[str, dict[str, float]] = {}
    for cell in sorted(cells, key=lambda c: MODE_SEPARATOR not in c.model):
        model = cell.model.partition(MODE_SEPARATOR)[0]
        spent = cell.cell_seconds if cell.cell_seconds is not None else cell.seconds
        costs.setdefault(model, {})[cell.strategy] = round(spent or 0.0, 3)
    return costs


def model_costs(cells: dict[str, dict[str, float]]) -> dict[str, float]:
    """A model's cost: the sum of its recorded cells."""
    return {model: sum(by_strategy.values()) for model, by_strategy in cells.items()}


def load_costs(path: Path) -> dict[str, Any]:
    """The whole costs file (an empty one when absent); a one-line error when unreadable."""
    if not path.exists():
        return {"schema": COSTS_SCHEMA, "tiers": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelExportError(f"cannot read costs {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != COSTS_SCHEMA:
        raise ModelExportError(f"{path} is not a {COSTS_SCHEMA} file")
    return data


def read_costs(path: Path, tier: str) -> dict[str, dict[str, float]]:
    """The recorded cell costs of one tier (empty when the file or the tier is absent)."""
    return dict(load_costs(path).get("tiers", {}).get(tier, {}))


def updated_costs(current: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """``current`` with each results file's cells recorded (the models it ran replaced)."""
    tiers = dict(current.get("tiers", {}))
    for result in results:
        cells = [CellResult.from_dict(c) for c in result["cells"]]
        tier = result["settings"]["tier"]
        tiers[tier] = dict(sorted({**tiers.get(tier, {}), **cell_costs(cells)}.items()))
    return {"schema": COSTS_SCHEMA, "tiers": tiers}


def assign(models: list[str], costs: dict[str, float], count: int) -> list[list[str]]:
    """Every model dealt to one of ``count`` shards, balancing recorded cost.

    Each shard keeps the models in their original order.
    """
    def recorded(model: str) -> float | None:
        return costs.get(model, costs.get(model.partition(MODE_SEPARATOR)[0]))

    known = [c for c in map(recorded, models) if c is not None]
    default = statistics.median(known) if known else 1.0
    cost = {m: recorded(m) if recorded(m) is not None else default for m in models}
    loads = [0.0] * count
    owner: dict[str, int] = {}
    for model in sorted(models, key=lambda m: (-cost[m], m)):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        owner[model] = lightest
        loads[lightest] += cost[model]
    return [[m for m in models if owner[m] == i] for i in range(count)]


def shard_models(models: list[str], costs: dict[str, float], shard: Shard) -> list[str]:
    """The models of one shard; a zoo entry's weight modes stay in the same shard.

    A shard then compares native with seeded weights on the same models.
    """
    entries = list(dict.fromkeys(m.partition(MODE_SEPARATOR)[0] for m in models))
    mine = set(assign(entries, costs, shard.count)[shard.index - 1])
    return [m for m in models if m.partition(MODE_SEPARATOR)[0] in mine]


def merge_results(results: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    """Check that the shards belong to one run and cover it; return their joint settings.

    Refuses shards of different tiers, strategies or repeat counts, a shard
    given twice, and a missing shard: a merged scoreboard must describe the
    whole matrix or nothing.
    """
    if not results:
        raise ModelExportError("nothing to merge")
    first = results[0]["settings"]
    seen: dict[int, str] = {}
    for result, source in zip(results, sources, strict=True):
        settings = result["settings"]
        for key in ("tier", "strategies", "repeat"):
            if settings.get(key) != first.get(key):
                raise ModelExportError(f"{source}: {key} {settings.get(key)!r} differs from "
                                       f"{sources[0]}'s {first.get(key)!r}")
        shard = settings.get("shard")
        if shard is None:
            raise ModelExportError(f"{source} is not a shard (run with --shard K/N)")
        if shard["count"] != first["shard"]["count"]:
            raise ModelExportError(f"{source} is shard {shard['index']}/{shard['count']}, "
                                   f"{sources[0]} one of {first['shard']['count']}")
        if shard["index"] in seen:
            raise ModelExportError(f"shard {shard['index']} given twice ({seen[shard['index']]} "
                                   f"and {source})")
        seen[shard["index"]] = source
    count = first["shard"]["count"]
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise ModelExportError(f"missing shard {', '.join(f'{i}/{count}' for i in missing)}")
    return {"tier": first["tier"], "strategies": first["strategies"],
            "repeat": first["repeat"], "models": first["shard"]["tier_models"]}
