"""Inline SVG charts for the HTML load-test report: line charts (linear or log y) and bar charts.

The report must be one self-contained file that renders without JavaScript or network access, so
the charts are plain SVG strings built here. Every text node and attribute value is HTML-escaped.
Each data series is a ``<g class="series" data-series="NAME">`` holding one ``<polyline>`` per
unbroken run of values (``None`` leaves a gap, e.g. a second without responses), which is also what
the browser test counts.

Example:
    >>> svg = line_chart(
    ...     chart_id="demo", title="latency", x=[0, 1, 2], y_label="ms",
    ...     series=[Series("p99", [1.0, 20.0, 3.0], "#d62728")], log_y=True,
    ... )
    >>> svg.startswith("<svg") and 'data-series="p99"' in svg and 'points="' in svg
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 900
HEIGHT = 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 20, 34, 44


@dataclass(frozen=True)
class Series:
    """One line: its legend name, a value per x (``None`` for a gap), and how it is drawn."""

    name: str
    values: Sequence[float | None]
    color: str
    dashed: bool = False
    width: float = 1.8


def fmt_num(v: float) -> str:
    """A compact axis label: ``0.5``, ``20``, ``1500``, ``25k``, ``1.2M``.

    >>> [fmt_num(v) for v in (0.05, 0.5, 20.0, 1500.0, 25000.0, 1.2e6)]
    ['0.05', '0.5', '20', '1500', '25k', '1.2M']
    """
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def linear_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering ``[lo, hi]``.

    >>> linear_ticks(0, 60), linear_ticks(0, 7)
    ([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0], [0.0, 2.0, 4.0, 6.0, 8.0])
    """
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    # round() keeps 0.1 * 3 from printing as 0.30000000000000004
    return [float(round(i * step, 10)) for i in range(first, last + 1)]


def log_bounds(values: Sequence[float]) -> tuple[float, float]:
    """Whole decades enclosing the positive ``values`` (``(1, 10)`` when there are none).

    >>> log_bounds([0.4, 0.0, 37.0])
    (0.1, 100.0)
    """
    pos = [v for v in values if v > 0]
    if not pos:
        return 1.0, 10.0
    lo = 10.0 ** math.floor(math.log10(min(pos)))
    hi = 10.0 ** math.ceil(math.log10(max(pos)))
    return (lo, hi * 10) if hi <= lo else (lo, hi)


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades between ``lo`` and ``hi``, with 2 and 5 in between when there are few decades.

    >>> log_ticks(1, 100)
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    """
    k0, k1 = round(math.log10(lo)), round(math.log10(hi))
    mults = (1, 2, 5) if k1 - k0 <= 3 else (1,)
    out = [float(f"{m * 10.0**k:.12g}") for k in range(k0, k1 + 1) for m in mults]
    return [t for t in out if lo <= t <= hi]


class _Axis:
    """Maps data values onto pixels along one axis, linearly or logarithmically."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False) -> None:
        self.log = log
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        if self.hi <= self.lo:
            self.hi = self.lo + 1
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        if self.log:
            # values at or below the axis floor (zero latency) sit on the floor instead of vanishing
            v = math.log10(v) if v > 0 else self.lo
        v = min(max(v, self.lo), self.hi)
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _frame(chart_id: str, title: str, x_label: str, y_label: str) -> list[str]:
    return [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="ctitle" x="{_LEFT}" y="20">{escape(title)}</text>',
        f'<text class="alabel" x="{(_LEFT + WIDTH - _RIGHT) / 2:.0f}" y="{HEIGHT - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>',
        f'<text class="alabel" transform="translate(14 {(_TOP + HEIGHT - _BOTTOM) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]


def _axes(
    xa: _Axis, ya: _Axis, x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]]
) -> list[str]:
    bottom, right = HEIGHT - _BOTTOM, WIDTH - _RIGHT
    out = ['<g class="grid">']
    for v, label in y_ticks:
        y = ya(v)
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
    for v, label in x_ticks:
        x = xa(v)
        out.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    out.append(
        f'<rect class="plot" x="{_LEFT}" y="{_TOP}" width="{right - _LEFT}" height="{bottom - _TOP}"/>'
    )
    out.append("</g>")
    return out


def _legend(series: Sequence[Series]) -> list[str]:
    out = ['<g class="legend">']
    x = WIDTH - _RIGHT
    for s in reversed(series):
        x -= 14 + 7 * len(s.name) + 18
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(
            f'<line x1="{x}" y1="16" x2="{x + 14}" y2="16" stroke="{escape(s.color)}" '
            f'stroke-width="2.5"{dash}/>'
        )
        out.append(f'<text x="{x + 18}" y="20">{escape(s.name)}</text>')
    out.append("</g>")
    return out


def _empty(parts: list[str], message: str) -> str:
    parts.append(
        f'<text class="empty" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">'
        f"{escape(message)}</text></svg>"
    )
    return "\n".join(parts)


def line_chart(
    *,
    chart_id: str,
    title: str,
    x: Sequence[float],
    series: Sequence[Series],
    y_label: str,
    x_label: str = "seconds",
    log_y: bool = False,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    x_fmt: Callable[[float], str] = fmt_num,
    x_pad: float = 0.0,
) -> str:
    """An SVG line chart of ``series`` over ``x``; ``x_ticks`` overrides the automatic x ticks.

    ``x_pad`` widens the x axis by that much on both sides: 0.5 for per-second data lines the
    points up with the centres of :func:`bar_chart`'s bars, so timelines stacked on a page align.

    >>> svg = line_chart(chart_id="c", title="t", x=[0, 1], y_label="y",
    ...                  series=[Series("a", [1.0, None], "red")])
    >>> svg.count("<polyline")
    1
    """
    parts = _frame(chart_id, title, x_label, y_label)
    ys = [v for s in series for v in s.values if v is not None]
    if not x or not ys:
        return _empty(parts, "no data")
    x0, x1 = min(x), max(x)
    if x1 <= x0:
        x1 = x0 + 1
    xa = _Axis(x0 - x_pad, x1 + x_pad, _LEFT, WIDTH - _RIGHT)
    if log_y:
        lo, hi = log_bounds(ys)
        yt = log_ticks(lo, hi)
    else:
        yt = linear_ticks(0.0, max(*ys, 1e-9))
        lo, hi = yt[0], yt[-1]
    ya = _Axis(lo, hi, HEIGHT - _BOTTOM, _TOP, log=log_y)
    if x_ticks is None:
        x_ticks = [(v, x_fmt(v)) for v in linear_ticks(x0, x1, 10) if x0 <= v <= x1]
    parts += _axes(xa, ya, x_ticks, [(v, fmt_num(v)) for v in yt])
    for s in series:
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(
            f'<g class="series" data-series="{escape(s.name)}" fill="none" stroke="{escape(s.color)}" '
            f'stroke-width="{s.width}"{dash}><title>{escape(s.name)}</title>'
        )
        run: list[str] = []
        for xv, yv in [*zip(x, s.values, strict=True), (0.0, None)]:  # the sentinel flushes the last run
            if yv is not None:
                run.append(f"{xa(xv):.1f},{ya(yv):.1f}")
            elif run:
                parts.append(f'<polyline points="{" ".join(run)}"/>')
                run = []
        parts.append("</g>")
    parts += _legend(series)
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(
    *, chart_id: str, title: str, x: Sequence[float], values: Sequence[float], color: str, y_label: str
) -> str:
    """An SVG bar chart, one bar centred on each x (one second), with ``data-x`` and ``data-value``.

    >>> bar_chart(chart_id="e", title="errors", x=[0, 1, 2], values=[0, 3, 1],
    ...           color="red", y_label="errors/s").count('<rect class="bar"')
    2
    """
    parts = _frame(chart_id, title, "seconds", y_label)
    if not x or not any(values):
        return _empty(parts, "none")
    x0, x1 = min(x), max(x)
    xa = _Axis(x0 - 0.5, x1 + 0.5, _LEFT, WIDTH - _RIGHT)
    yt = linear_ticks(0.0, max(values))
    ya = _Axis(yt[0], yt[-1], HEIGHT - _BOTTOM, _TOP)
    xt = [(v, fmt_num(v)) for v in linear_ticks(x0, x1, 10) if x0 <= v <= x1]
    parts += _axes(xa, ya, xt, [(v, fmt_num(v)) for v in yt])
    w = max((WIDTH - _LEFT - _RIGHT) / (x1 - x0 + 1) - 1, 1)
    base = ya(0)
    for xv, v in zip(x, values, strict=True):
        if v:
            top = ya(v)
            parts.append(
                f'<rect class="bar" x="{xa(xv) - w / 2:.1f}" y="{top:.1f}" width="{w:.1f}" '
                f'height="{base - top:.1f}" fill="{escape(color)}" data-x="{xv:g}" data-value="{v:g}">'
                f"<title>t={xv:g}s: {v:g}</title></rect>"
            )
    parts.append("</svg>")
    return "\n".join(parts)
