"""A profile's time per module as an SVG bar chart.

SVG needs no plotting library (the CLI must work on the core install) and
opens in any browser.  The bars are the disjoint parts of the run at one
depth (:meth:`Profile.at_depth`), so their lengths add up to the profiled
share of the run; the chart's title says how much that is.
"""

from __future__ import annotations

from html import escape

from modelexport.tools.profile import Profile

_ROW = 22
_LABEL_WIDTH = 360
_BAR_WIDTH = 420
_TOP = 48


def profile_svg(result: Profile, depth: int, top: int | None = None) -> str:
    """Bars of wall ms per module at ``depth``, largest first (``top`` of them, the rest
    summed into one bar so the chart still adds up)."""
    parts = sorted(result.at_depth(depth), key=lambda part: -part[2])
    if top and len(parts) > top:
        rest = parts[top:]
        parts = [*parts[:top], (f"({len(rest)} more)", None, sum(ms for *_, ms in rest))]
    longest = max((ms for *_, ms in parts), default=0.0) or 1.0
    accounted = sum(ms for *_, ms in parts)
    height = _TOP + _ROW * len(parts) + 16
    width = _LABEL_WIDTH + _BAR_WIDTH + 140
    share = accounted / result.run_ms if result.run_ms else 0.0
    title = (f"ONNX Runtime wall time per module at depth {depth}: {accounted:.3f} ms of a "
             f"{result.run_ms:.3f} ms run ({share:.1%}), mean of {result.runs} runs")
    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="8" y="22" font-size="14">{escape(title)}</text>']
    for row, (label, module, ms) in enumerate(parts):
        y = _TOP + row * _ROW
        bar = max(ms / longest * _BAR_WIDTH, 1.0)
        cls = module.cls.rsplit(".", 1)[-1] if module is not None and module.cls else ""
        name = f"{label} ({cls})" if cls else label
        lines += [
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 14}" text-anchor="end">'
            f'{escape(name[-60:])}</text>',
            f'<rect x="{_LABEL_WIDTH}" y="{y + 3}" width="{bar:.1f}" height="{_ROW - 6}" '
            'fill="#4c78a8"><title>' + escape(f"{name}: {ms:.3f} ms") + "</title></rect>",
            f'<text x="{_LABEL_WIDTH + bar + 6:.1f}" y="{y + 14}">{ms:.3f} ms '
            f'({ms / result.run_ms if result.run_ms else 0.0:.1%})</text>',
        ]
    lines.append("</svg>")
    return "\n".join(lines) + "\n"
