"""The human-readable ``--report``: figures, attempts and the module tree."""

from __future__ import annotations

from typing import Any

from modelexport.report import ExportReport


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def render_markdown(report: ExportReport, modules: list[dict[str, Any]]) -> str:
    s = report.summary
    lines = [
        f"# Export report: {s.model_class}",
        "",
        f"- strategy: **{s.final_strategy}** (requested {s.requested_strategy})",
        f"- nodes: {report.coverage['nodes']}, coverage {_pct(report.coverage['coverage'])}",
        "- sources: " + ", ".join(
            f"{k} {_pct(report.coverage[k])}"
            for k in ("exact", "inherited", "projected", "root")
        ),
        f"- anchored accuracy: {_pct(report.anchored.get('accuracy'))} "
        f"of {report.anchored.get('anchored_nodes') or 'n/a'} parameter-consuming nodes "
        "(measured with validation)",
        f"- total time: {s.total_seconds:.2f}s",
    ]
    if report.parity is not None:
        p = report.parity
        verdict = "passed" if p["passed"] else "FAILED"
        lines.append(f"- parity: {verdict} (max abs {p['max_abs']:.2e}, "
                     f"max rel {p['max_rel']:.2e}, atol {p['atol']}, rtol {p['rtol']})")
    lines += ["", "## Attempts", "", "| strategy | result | seconds | error |",
              "|---|---|---|---|"]
    for a in s.attempts:
        result = "ok" if a.success else "failed"
        error = f"{a.error_type}: {a.error}" if a.error else ""
        lines.append(f"| {a.strategy} | {result} | {a.seconds:.2f} | {error.replace('|', '/')} |")
    lines += ["", "## Timings", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report.timings.items()]
    lines += ["", "## Module tree", "",
              "| module | class | params | nodes self | nodes total | calls |",
              "|---|---|---|---|---|---|"]
    for m in modules:
        depth = m["path"].count(".") + 1 if m["path"] else 0
        name = m["path"].rsplit(".", 1)[-1] if m["path"] else "(root)"
        lines.append(
            f"| {'&nbsp;' * 2 * depth}{name} | {m['class'].rsplit('.', 1)[-1]} | "
            f"{m['params_total']} | {m['nodes_self']} | {m['nodes_total']} | {m['calls']} |"
        )
    return "\n".join(lines) + "\n"
