"""The scoreboard: the matrix as a table, and its summary, for terminal and markdown."""

from __future__ import annotations

import statistics
from typing import Any

from modelexport.harness.cells import NOT_RUNNABLE, OK, STATUSES, CellResult

_SHORT = {"ok": "ok", "export-failed": "FAIL", "check-failed": "CHECK", "parity-failed": "PARITY",
          "timeout": "TIMEOUT", "crashed": "CRASH", "not-runnable": "n/a"}


def _cell_text(cell: CellResult | None) -> str:
    if cell is None:
        return "-"
    if cell.status != OK:
        return _SHORT[cell.status]
    anchored = "" if cell.anchored_accuracy is None else f" a{cell.anchored_accuracy:.2f}"
    return f"ok {cell.seconds:.2f}s r{cell.root:.2f}{anchored}"


def summary(cells: list[CellResult], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """Per strategy: status counts, median time, median root share, mean anchored accuracy."""
    rows = {}
    for strategy in strategies:
        mine = [c for c in cells if c.strategy == strategy]
        ok = [c for c in mine if c.status == OK]
        anchored = [c.anchored_accuracy for c in ok if c.anchored_accuracy is not None]
        agreement = [c.reference_agreement for c in ok if c.reference_agreement is not None]
        rows[strategy] = {
            "cells": len(mine),
            **{status: sum(c.status == status for c in mine) for status in STATUSES},
            "median_seconds": statistics.median(c.seconds for c in ok) if ok else None,
            "median_root_share": statistics.median(c.root for c in ok) if ok else None,
            "mean_anchored_accuracy": statistics.fmean(anchored) if anchored else None,
            "mean_reference_agreement": statistics.fmean(agreement) if agreement else None,
        }
    return rows


def family_pass_rates(cells: list[CellResult], strategies: list[str],
                      ) -> dict[str, dict[str, dict[str, int]]]:
    """Per family, per strategy: models that run eagerly, and how many are ``ok``.

    A model that cannot be built or run eagerly (``not-runnable``) is left
    out of the denominator: no exporter can be blamed for it.
    """
    rates: dict[str, dict[str, dict[str, int]]] = {}
    for cell in cells:
        if cell.status == NOT_RUNNABLE or cell.strategy not in strategies:
            continue
        for family in (cell.category or "other", "all"):
            row = rates.setdefault(family, {}).setdefault(cell.strategy, {"ok": 0, "runs": 0})
            row["runs"] += 1
            row["ok"] += cell.status == OK
    return dict(sorted(rates.items(), key=lambda kv: (kv[0] == "all", kv[0])))


def render_family_rates(cells: list[CellResult], strategies: list[str], markdown: bool,
                        ) -> list[str]:
    rates = family_pass_rates(cells, strategies)
    if len(rates) <= 1:
        return []
    rows = []
    for family, by_strategy in rates.items():
        runs = max(r["runs"] for r in by_strategy.values())
        rows.append([family, str(runs), *(
            f"{by_strategy[s]['ok']} ({by_strategy[s]['ok'] / by_strategy[s]['runs']:.0%})"
            if s in by_strategy and by_strategy[s]["runs"] else "-" for s in strategies)])
    return ["", "pass rate per family (ok / models that run eagerly):",
            *_table(["family", "models", *strategies], rows, markdown)]


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def render(cells: list[CellResult], strategies: list[str], selector: dict[str, Any],
           wall_seconds: float, markdown: bool) -> str:
    models = list(dict.fromkeys(c.model for c in cells))
    grid = {(c.model, c.strategy): c for c in cells}
    header = ["model", *strategies, "pick (speed)", "best (speed)", "pick (quality)",
              "best (quality)"]
    verdicts = {(v["model"], v["objective"]): v for score in selector.values()
                for v in score["verdicts"]}
    rows = []
    for model in models:
        speed, quality = verdicts.get((model, "speed"), {}), verdicts.get((model, "quality"), {})
        rows.append([model, *[_cell_text(grid.get((model, s))) for s in strategies],
                     speed.get("pick") or "-", "/".join(speed.get("best") or []) or "-",
                     quality.get("pick") or "-", "/".join(quality.get("best") or []) or "-"])
    stats = summary(cells, strategies)
    lines = _table(header, rows, markdown)
    lines.append("")
    stat_header = ["strategy", *STATUSES,
                   "median s", "median root", "mean anchored", "agreement w/ dynamo"]
    stat_rows = [[s, *(str(stats[s][k]) for k in STATUSES),
                  _fmt(stats[s]["median_seconds"], "{:.2f}"),
                  _fmt(stats[s]["median_root_share"], "{:.3f}"),
                  _fmt(stats[s]["mean_anchored_accuracy"], "{:.3f}"),
                  _fmt(stats[s]["mean_reference_agreement"], "{:.3f}")] for s in strategies]
    lines += _table(stat_header, stat_rows, markdown)
    lines += render_family_rates(cells, strategies, markdown)
    lines.append("")
    for objective, score in selector.items():
        accuracy = _fmt(score["accuracy"], "{:.0%}")
        regrets = [v["regret"] for v in score["verdicts"] if v["regret"] is not None]
        unit = "s" if objective == "speed" else " quality"
        lines.append(f"selector accuracy ({objective}): {accuracy} of "
                     f"{score['scored_models']} models; total regret "
                     f"{sum(regrets):.2f}{unit}; confusion (best -> pick): "
                     f"{score['confusion']}")
    lines.append(f"wall time: {wall_seconds:.0f}s for {len(cells)} cells")
    lines.append("cells: ok <median export s> r<root share> a<anchored accuracy>")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
            "| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*r) for r in rows]
