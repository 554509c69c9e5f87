"""A profile's time per module as a bar chart: SVG always, PNG with Pillow.

SVG needs no plotting library (the CLI must work on the core install) and
opens in any browser; PNG, for pages and chats that take images only, is
drawn with Pillow when it is installed (the ``tools`` extra).  The bars are
the disjoint parts of the run at one depth (:meth:`Profile.at_depth`), so
their lengths add up to the profiled share of the run; the chart's title says
how much that is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from html import escape

from modelexport.errors import ModelExportError
from modelexport.tools.profile import Profile

_ROW = 22
_LABEL_WIDTH = 360
_BAR_WIDTH = 420
_TOP = 48
_BLUE = "#4c78a8"


@dataclass
class _Bar:
    name: str
    ms: float
    share: float
    length: float  # pixels


@dataclass
class _Chart:
    title: str
    bars: list[_Bar]
    width: int
    height: int


def _chart(result: Profile, depth: int, top: int | None) -> _Chart:
    """Bars of wall ms per module at ``depth``, largest first (``top`` of them, the rest
    summed into one bar so the chart still adds up)."""
    parts = sorted(result.at_depth(depth), key=lambda part: -part[2])
    if top and len(parts) > top:
        rest = parts[top:]
        parts = [*parts[:top], (f"({len(rest)} more)", None, sum(ms for *_, ms in rest))]
    longest = max((ms for *_, ms in parts), default=0.0) or 1.0
    accounted = sum(ms for *_, ms in parts)
    share = accounted / result.run_ms if result.run_ms else 0.0
    title = (f"ONNX Runtime wall time per module at depth {depth}: {accounted:.3f} ms of a "
             f"{result.run_ms:.3f} ms run ({share:.1%}), mean of {result.runs} runs")
    bars = []
    for label, module, ms in parts:
        cls = module.cls.rsplit(".", 1)[-1] if module is not None and module.cls else ""
        bars.append(_Bar(f"{label} ({cls})" if cls else label, ms,
                         ms / result.run_ms if result.run_ms else 0.0,
                         max(ms / longest * _BAR_WIDTH, 1.0)))
    return _Chart(title, bars, _LABEL_WIDTH + _BAR_WIDTH + 140, _TOP + _ROW * len(bars) + 16)


def profile_svg(result: Profile, depth: int, top: int | None = None) -> str:
    chart = _chart(result, depth, top)
    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{chart.width}" '
             f'height="{chart.height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{chart.width}" height="{chart.height}" fill="white"/>',
             f'<text x="8" y="22" font-size="14">{escape(chart.title)}</text>']
    for row, bar in enumerate(chart.bars):
        y = _TOP + row * _ROW
        lines += [
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 14}" text-anchor="end">'
            f'{escape(bar.name[-60:])}</text>',
            f'<rect x="{_LABEL_WIDTH}" y="{y + 3}" width="{bar.length:.1f}" '
            f'height="{_ROW - 6}" fill="{_BLUE}"><title>'
            + escape(f"{bar.name}: {bar.ms:.3f} ms") + "</title></rect>",
            f'<text x="{_LABEL_WIDTH + bar.length + 6:.1f}" y="{y + 14}">{bar.ms:.3f} ms '
            f'({bar.share:.1%})</text>',
        ]
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def profile_png(result: Profile, depth: int, top: int | None = None) -> bytes:
    """The same chart as :func:`profile_svg`, as PNG bytes."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ModelExportError("--plot *.png needs Pillow (pip install Pillow, or the "
                               "'tools' extra); *.svg needs nothing") from None
    chart = _chart(result, depth, top)
    image = Image.new("RGB", (chart.width, chart.height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 12), chart.title, fill="black")
    for row, bar in enumerate(chart.bars):
        y = _TOP + row * _ROW
        draw.text((_LABEL_WIDTH - 6, y + 5), bar.name[-60:], fill="black", anchor="ra")
        draw.rectangle([_LABEL_WIDTH, y + 3, _LABEL_WIDTH + bar.length, y + _ROW - 3],
                       fill=_BLUE)
        draw.text((_LABEL_WIDTH + bar.length + 6, y + 5),
                  f"{bar.ms:.3f} ms ({bar.share:.1%})", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
