"""The scoreboard: the matrix as a table, and its summary, for terminal and markdown."""

from __future__ import annotations

import statistics
from typing import Any

from modelexport.harness.cells import (
    AXES_KEPT,
    CONDITIONS,
    NOT_RUNNABLE,
    OK,
    STATUSES,
    CellResult,
)

_SHORT = {"ok": "ok", "export-failed": "FAIL", "check-failed": "CHECK", "parity-failed": "PARITY",
          "decode-failed": "DECODE",
          "timeout": "TIMEOUT", "crashed": "CRASH", "not-runnable": "n/a"}


def _cell_text(cell: CellResult | None) -> str:
    if cell is None:
        return "-"
    if cell.status != OK:
        return _SHORT[cell.status]
    anchored = "" if cell.anchored_accuracy is None else f" a{cell.anchored_accuracy:.2f}"
    latency = "" if cell.ort_latency_ms is None else f" {cell.ort_latency_ms:.3g}ms"
    return f"ok {cell.seconds:.2f}s r{cell.root:.2f}{anchored}{latency}"


def summary(cells: list[CellResult], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """Per strategy: status counts, median time, root share, anchored accuracy, file figures."""
    rows = {}
    for strategy in strategies:
        mine = [c for c in cells if c.strategy == strategy]
        ok = [c for c in mine if c.status == OK]
        anchored = [c.anchored_accuracy for c in ok if c.anchored_accuracy is not None]
        agreement = [c.reference_agreement for c in ok if c.reference_agreement is not None]
        latency = [c.ort_latency_ms for c in ok if c.ort_latency_ms is not None]
        rows[strategy] = {
            "cells": len(mine),
            **{status: sum(c.status == status for c in mine) for status in STATUSES},
            "median_seconds": statistics.median(c.seconds for c in ok) if ok else None,
            "median_cpu_seconds": statistics.median(c.judged_seconds for c in ok) if ok else None,
            "median_root_share": statistics.median(c.root for c in ok) if ok else None,
            "mean_anchored_accuracy": statistics.fmean(anchored) if anchored else None,
            "mean_reference_agreement": statistics.fmean(agreement) if agreement else None,
            "median_nodes": statistics.median(c.nodes for c in ok) if ok else None,
            "median_ort_latency_ms": statistics.median(latency) if latency else None,
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


def render_conditions(cells: list[CellResult], strategies: list[str], markdown: bool,
                      ) -> list[str]:
    """Per strategy, how many exported files met each condition of "ok" (held / judged)."""
    rows = []
    for strategy in strategies:
        judged = [c.conditions for c in cells if c.strategy == strategy and c.conditions]
        row = [strategy]
        for name in (*CONDITIONS, AXES_KEPT):
            values = [v[name] for v in judged if v.get(name) is not None]
            row.append(f"{sum(values)}/{len(values)}" if values else "-")
        rows.append(row)
    if not any(len(r) > 1 and any(x != "-" for x in r[1:]) for r in rows):
        return []
    return ["", "conditions of ok (files that meet it / files it was judged on; "
            "second_shape: files with a dynamic axis; axes_kept, not required for ok: "
            "files that keep open every axis asked open):",
            *_table(["strategy", *CONDITIONS, AXES_KEPT], rows, markdown)]


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _pick_text(verdict: dict[str, Any]) -> str:
    """``htp`` when the pick is in the best set, else ``htp (best dynamo)``."""
    pick, best = verdict.get("pick"), "/".join(verdict.get("best") or [])
    if pick is None or not best:
        return pick or "-"
    return pick if verdict.get("correct") else f"{pick} (best {best})"


def selector_lines(selector: dict[str, Any], label: str) -> list[str]:
    """One line per objective: accuracy, regret and the confusion table (best -> pick)."""
    lines = []
    for objective, score in selector.items():
        accuracy = _fmt(score["accuracy"], "{:.1%}")
        baseline = score["constant_baseline"]
        constant = ("" if baseline["strategy"] is None else
                    f" (always {baseline['strategy']}: {baseline['accuracy']:.1%})")
        lines.append(f"selector accuracy ({objective}, {label or score['validation']}): "
                     f"{accuracy} of {score['scored_models']} models{constant}; total regret "
                     f"{score['regret']:.2f} {score['regret_unit']}; confusion (best -> pick): "
                     f"{score['confusion']}")
    return lines


def render(cells: list[CellResult], strategies: list[str], selector: dict[str, Any],
           wall_seconds: float, markdown: bool, selector_cv: dict[str, Any] | None = None,
           ) -> str:
    models = list(dict.fromkeys(c.model for c in cells))
    grid = {(c.model, c.strategy): c for c in cells}
    objectives = list(selector)
    header = ["model", *strategies, *(f"pick ({o})" for o in objectives)]
    verdicts = {(v["model"], v["objective"]): v for score in selector.values()
                for v in score["verdicts"]}
    rows = []
    for model in models:
        rows.append([model, *[_cell_text(grid.get((model, s))) for s in strategies],
                     *(_pick_text(verdicts.get((model, o), {})) for o in objectives)])
    stats = summary(cells, strategies)
    lines = _table(header, rows, markdown)
    lines.append("")
    stat_header = ["strategy", *STATUSES, "median s", "median CPU s", "median root",
                   "mean anchored", "agreement w/ dynamo", "median nodes", "median ORT ms"]
    stat_rows = [[s, *(str(stats[s][k]) for k in STATUSES),
                  _fmt(stats[s]["median_seconds"], "{:.2f}"),
                  _fmt(stats[s]["median_cpu_seconds"], "{:.2f}"),
                  _fmt(stats[s]["median_root_share"], "{:.3f}"),
                  _fmt(stats[s]["mean_anchored_accuracy"], "{:.3f}"),
                  _fmt(stats[s]["mean_reference_agreement"], "{:.3f}"),
                  _fmt(stats[s]["median_nodes"], "{:.0f}"),
                  _fmt(stats[s]["median_ort_latency_ms"], "{:.3g}")] for s in strategies]
    lines += _table(stat_header, stat_rows, markdown)
    lines += render_family_rates(cells, strategies, markdown)
    lines += render_conditions(cells, strategies, markdown)
    lines.append("")
    lines += selector_lines(selector, "shipped rules, fitted on the zoo: in-sample")
    if selector_cv:
        lines += selector_lines(selector_cv, "")
    lines.append(f"wall time: {wall_seconds:.0f}s for {len(cells)} cells")
    lines.append("cells: ok <median export wall s> r<root share> a<anchored accuracy> "
                 "<ONNX Runtime median ms>; pick: the selector's, with the best set when it "
                 "missed")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
            "| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*r) for r in rows]
