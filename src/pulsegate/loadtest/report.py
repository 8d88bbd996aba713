"""Reports of a load-test :class:`~pulsegate.loadtest.model.Result`: JSON, terminal table, HTML page.

* :func:`to_json` is the machine-readable report (schema in docs/loadtest.md, versioned by
  ``SCHEMA_VERSION``); ``msgspec.json.decode(data, type=Result)`` reads it back.
* :func:`render_table` is the terminal view (rich), :func:`render_text` the same as plain text.
* :func:`render_html` is one self-contained page (inline CSS and SVG, no script, no external URL)
  with the summary and charts of latency, rate and errors over time and the latency distribution.

All three show the same facts, built once by :func:`summary_rows`.

Example:
    >>> from pulsegate.loadtest.model import Latency, Result
    >>> r = Result(scenario="sustained", url="http://127.0.0.1:8080/", duration_s=10.0,
    ...            requests=1000, ok=1000, errors={}, rate_target=100.0, rate_achieved=100.0,
    ...            latency_ms=Latency(p50=1.2, p90=2.0, p99=4.5, p999=9.0, max=12.0), timeline=[])
    >>> to_json(r)[:40]
    b'{"schema":1,"scenario":"sustained","url"'
    >>> "p99" in render_text(r) and "<!DOCTYPE html>" in render_html(r)
    True
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from html import escape
from typing import Final, Literal, NamedTuple, TypeVar

import msgspec
from rich import box
from rich.console import Console, Group
from rich.table import Table

from pulsegate.loadtest.charts import Series, bar_chart, line_chart
from pulsegate.loadtest.model import Result, Second
from pulsegate.metrics.histogram import merge_into, percentiles, total_count

#: Bumped when a field of the JSON report changes meaning or goes away (adding one does not).
SCHEMA_VERSION: Final[int] = 1

Tone = Literal["", "ok", "bad", "warn"]
Section = Literal["run", "latency", "slo"]


class Row(NamedTuple):
    """One line of the summary: ``group`` places it, ``tone`` colours it, ``indent`` marks a detail."""

    group: Section
    label: str
    value: str
    tone: Tone = ""
    indent: bool = False


# ---------------------------------------------------------------------------------------------- JSON


_K = TypeVar("_K", int, str)
_V = TypeVar("_V")


def _by_key(d: dict[_K, _V]) -> dict[_K, _V]:
    return {k: d[k] for k in sorted(d)}


def to_json(result: Result) -> bytes:
    """The JSON report: ``{"schema": 1, ...}`` then ``Result``'s fields in declaration order.

    Struct fields keep their declaration order; mapping keys (``errors``, ``slo``, the ``hist`` and
    ``histogram`` bucket indices) are sorted, so equal results encode to equal bytes. Bucket indices
    are JSON strings, as JSON requires, and decode back to ints with ``type=Result``.

    >>> from pulsegate.loadtest.model import Latency
    >>> r = Result("closed", "http://h/", 1.0, 2, 1, {"timeout": 1}, None, 2.0, Latency(), [],
    ...            histogram={900: 1, 70: 1})
    >>> data = to_json(r)
    >>> data.endswith(b'"histogram":{"70":1,"900":1}}'), msgspec.json.decode(data, type=Result) == r
    (True, True)
    """
    replace = msgspec.structs.replace
    norm = replace(
        result,
        errors=_by_key(result.errors),
        slo=_by_key(result.slo),
        histogram=_by_key(result.histogram),
        timeline=[replace(s, hist=_by_key(s.hist)) for s in result.timeline],
    )
    # to_builtins keeps field and insertion order; "schema" goes in front of the struct's fields.
    return msgspec.json.encode({"schema": SCHEMA_VERSION, **msgspec.to_builtins(norm)})


# -------------------------------------------------------------------------------------------- summary


def fmt_ms(v: float) -> str:
    """Milliseconds with about three significant digits.

    >>> [fmt_ms(v) for v in (0.0, 0.4123, 4.567, 45.67, 4567.0)]
    ['0 ms', '0.412 ms', '4.57 ms', '45.7 ms', '4,567 ms']
    """
    if v == 0:
        return "0 ms"
    if v >= 100:
        return f"{v:,.0f} ms"
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f} ms"


def _pct(n: float, d: float) -> str:
    return f" ({n / d:.2%})" if d else ""


def _rate(v: float) -> str:
    return f"{v:,.1f} req/s"


def summary_rows(result: Result) -> list[Row]:
    """The facts every report shows, in order.

    >>> from pulsegate.loadtest.model import Latency
    >>> r = Result("spike", "http://h/", 30.0, 3000, 2990, {"timeout": 10}, 100.0, 99.5,
    ...            Latency(p99=8.0), [], recovery_s=4.0, slo={"p99<10ms": True})
    >>> [(row.label, row.value) for row in summary_rows(r) if row.label in ("timeout", "recovery")]
    [('timeout', '10 (0.33%)'), ('recovery', '4.0 s')]
    """
    r = result
    n_err = sum(r.errors.values())
    rows = [
        Row(
            "run",
            "scenario",
            r.scenario + (" (interrupted)" if r.interrupted else ""),
            "warn" if r.interrupted else "",
        ),
        Row("run", "url", r.url),
        Row("run", "duration", f"{r.duration_s:,.1f} s"),
    ]
    if r.connections:
        procs = f"{r.processes} process" + ("es" if r.processes != 1 else "")
        rows.append(Row("run", "load", f"{procs}, {r.connections} connections"))
    rows += [
        Row("run", "requests", f"{r.requests:,}"),
        Row("run", "ok", f"{r.ok:,}{_pct(r.ok, r.requests)}"),
        Row("run", "errors", f"{n_err:,}{_pct(n_err, r.requests)}", "bad" if n_err else "ok"),
    ]
    for kind, n in sorted(r.errors.items(), key=lambda kv: (-kv[1], kv[0])):
        rows.append(Row("run", kind, f"{n:,}{_pct(n, r.requests)}", "bad" if n else "", indent=True))
    if r.rate_target is None:
        rows.append(Row("run", "target rate", "none (closed model)"))
        rows.append(Row("run", "achieved rate", _rate(r.rate_achieved)))
    else:
        short = r.rate_target > 0 and r.rate_achieved < 0.95 * r.rate_target
        of = f" ({r.rate_achieved / r.rate_target:.1%} of target)" if r.rate_target > 0 else ""
        rows.append(Row("run", "target rate", _rate(r.rate_target)))
        rows.append(Row("run", "achieved rate", _rate(r.rate_achieved) + of, "warn" if short else ""))
    if r.rate_target is not None or r.late_sends or r.missed_sends:
        rows.append(Row("run", "late sends", f"{r.late_sends:,}", "warn" if r.late_sends else ""))
        rows.append(Row("run", "missed sends", f"{r.missed_sends:,}", "warn" if r.missed_sends else ""))
    lat = r.latency_ms
    for label, v in (
        ("p50", lat.p50),
        ("p90", lat.p90),
        ("p99", lat.p99),
        ("p99.9", lat.p999),
        ("max", lat.max),
        ("mean", lat.mean),
    ):
        rows.append(Row("latency", label, fmt_ms(v)))
    if r.recovery_s is not None:
        rows.append(Row("latency", "recovery", f"{r.recovery_s:.1f} s"))
    if r.knee_rate is not None:
        rows.append(Row("latency", "knee rate", _rate(r.knee_rate)))
    if r.broke_at is not None:
        rows.append(Row("latency", "broke at", _rate(r.broke_at), "bad"))
    for name, passed in sorted(r.slo.items()):
        rows.append(Row("slo", f"SLO {name}", "PASS" if passed else "FAIL", "ok" if passed else "bad"))
    return rows


# ------------------------------------------------------------------------------------------- terminal

_RICH_STYLE: Final[dict[str, str]] = {"": "", "ok": "green", "bad": "bold red", "warn": "yellow"}


def render_table(result: Result) -> Group:
    """The terminal report: the summary table, then the stress steps when there are any.

    >>> from pulsegate.loadtest.model import Latency
    >>> r = Result("closed", "http://h/", 1.0, 10, 10, {}, None, 10.0, Latency(), [])
    >>> Console(file=io.StringIO()).print(render_table(r))
    """
    table = Table(title=f"pulsegate load test: {result.scenario}", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    group = None
    for row in summary_rows(result):
        if group is not None and row.group != group:
            table.add_section()
        group = row.group
        label = f"  {row.label}" if row.indent else row.label
        table.add_row(label, row.value, style=_RICH_STYLE[row.tone] or None)
    parts: list[Table] = [table]
    if result.steps:
        steps = Table(title="stress steps", box=box.SIMPLE_HEAD)
        for col in ("target", "achieved", "p99", "errors", "SLO"):
            steps.add_column(col, justify="right")
        for s in result.steps:
            steps.add_row(
                _rate(s.rate),
                _rate(s.achieved),
                fmt_ms(s.p99_ms),
                f"{s.error_rate:.2%}",
                "PASS" if s.ok else "FAIL",
                style=None if s.ok else "red",
            )
        parts.append(steps)
    return Group(*parts)


def render_text(result: Result) -> str:
    """:func:`render_table` as plain text, 100 columns wide (for logs, pipes and tests).

    >>> from pulsegate.loadtest.model import Latency
    >>> r = Result("closed", "http://h/", 1.0, 10, 10, {}, None, 10.0, Latency(p99=2.5), [])
    >>> "2.50 ms" in render_text(r)
    True
    """
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    console.print(render_table(result))
    return console.export_text(styles=False)


# ----------------------------------------------------------------------------------------------- HTML

_CSS: Final[str] = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:960px;
 padding:16px 20px;color:#222;background:#fff}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:26px 0 6px;border-bottom:1px solid #ddd}
.url{font-family:ui-monospace,monospace;color:#555;word-break:break-all;margin:0}
.summary{display:flex;flex-wrap:wrap;gap:12px 36px;align-items:flex-start}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
td.v{font-variant-numeric:tabular-nums;word-break:break-all}td.k{color:#555;white-space:nowrap}
tr.indent td.k{padding-left:16px}.ok{color:#1a7f37}.bad{color:#c62828;font-weight:600}.warn{color:#b26a00}
.steps td,.steps th{text-align:right;padding-right:16px}
svg.chart{width:100%;height:auto;display:block;margin:4px 0 10px}
svg .grid line{stroke:#e5e5e5}svg .plot{fill:none;stroke:#999}
svg text{font:12px system-ui,sans-serif;fill:#333}svg .tick{fill:#666;font-size:11px}
svg .ctitle{font-weight:600;font-size:13px}svg .alabel{fill:#555}svg .empty{fill:#999;font-size:16px}
.note{color:#666}footer{color:#888;font-size:12px;margin-top:24px}
"""


def merged_histogram(result: Result) -> dict[int, int]:
    """The whole run's histogram: ``result.histogram``, else the sum of the per-second ones."""
    if result.histogram:
        return dict(result.histogram)
    out: dict[int, int] = {}
    for s in result.timeline:
        merge_into(out, s.hist)
    return out


_NINES_LABELS: Final[tuple[str, ...]] = ("0%", "90%", "99%", "99.9%", "99.99%", "99.999%")


def _distribution_chart(hist: dict[int, int]) -> str:
    # x = -log10(1 - q/100) ("nines"), as HdrHistogram plots: each decade of tail gets equal room.
    # Stop at the last nines the sample count can resolve (>= 1 observation beyond), within 2..5.
    n = total_count(hist)
    top = min(5, max(2, math.floor(math.log10(n)))) if n else 2
    xs = [i / 50 for i in range(top * 50 + 1)]
    qs = [min(100.0, 100 * (1 - 10**-x)) for x in xs]
    ys: list[float | None] = [v / 1000 for v in percentiles(hist, qs)] if n else [None] * len(xs)
    ticks = [(float(k), _NINES_LABELS[k]) for k in range(top + 1)] + [(math.log10(2), "50%")]
    return line_chart(
        chart_id="percentile-chart",
        title="Latency by percentile (whole run)",
        x=xs,
        log_y=True,
        series=[Series("latency", ys, "#6a3d9a", width=2.2)],
        y_label="ms",
        x_label="percentile",
        x_ticks=ticks,
    )


def _charts(result: Result) -> list[str]:
    tl = result.timeline
    xs = [float(s.t) for s in tl]
    # a second without responses is a gap in the latency lines, not a zero
    has = [bool(s.hist) or s.max_ms > 0 for s in tl]

    def lat(pick: Callable[[Second], float]) -> list[float | None]:
        return [pick(s) if h else None for s, h in zip(tl, has, strict=True)]

    latency = [
        Series("max", lat(lambda s: s.max_ms), "#bbbbbb", width=1.2),
        Series("p99", lat(lambda s: s.p99_ms), "#d62728"),
        Series("p50", lat(lambda s: s.p50_ms), "#1f77b4"),
    ]
    rate = [Series("achieved", [float(s.sent) for s in tl], "#2ca02c")]
    if any(s.late for s in tl):
        rate.append(Series("late", [float(s.late) for s in tl], "#ff7f0e", width=1.2))
    if result.rate_target is not None:  # drawn last: the dashes stay visible on a matching line
        rate.append(Series("target", [s.rate_target for s in tl], "#444444", dashed=True, width=1.4))
    out = [
        "<h2>Latency over time</h2>",
        line_chart(chart_id="latency-chart", title="Latency per second (log scale)", x=xs,
                   series=latency, y_label="ms", log_y=True, x_pad=0.5),
        "<h2>Request rate</h2>",
        line_chart(chart_id="rate-chart", title="Requests sent per second", x=xs, series=rate,
                   y_label="req/s", x_pad=0.5),
        "<h2>Errors</h2>",
    ]  # fmt: skip
    if any(s.errors for s in tl):
        errors = [float(s.errors) for s in tl]
        out.append(bar_chart(chart_id="errors-chart", title="Errors per second", x=xs, values=errors,
                             color="#c62828", y_label="errors/s"))  # fmt: skip
    else:
        out.append('<p class="note">No errors.</p>')
    out += ["<h2>Latency distribution</h2>", _distribution_chart(merged_histogram(result))]
    return out


def _summary_html(rows: list[Row]) -> str:
    out = ['<div class="summary">']
    for group in ("run", "latency", "slo"):
        members = [r for r in rows if r.group == group]
        if not members:
            continue
        out.append(f'<table class="facts" id="summary-{group}">')
        for r in members:
            cls = ' class="indent"' if r.indent else ""
            tone = f' class="v {r.tone}"' if r.tone else ' class="v"'
            out.append(f'<tr{cls}><td class="k">{escape(r.label)}</td><td{tone}>{escape(r.value)}</td></tr>')
        out.append("</table>")
    out.append("</div>")
    return "\n".join(out)


def _steps_html(result: Result) -> str:
    out = [
        '<h2>Stress steps</h2><table class="steps" id="steps">',
        "<tr><th>target</th><th>achieved</th><th>p99</th><th>errors</th><th>SLO</th></tr>",
    ]
    for s in result.steps:
        verdict = '<td class="ok">PASS</td>' if s.ok else '<td class="bad">FAIL</td>'
        out.append(
            f"<tr><td>{escape(_rate(s.rate))}</td><td>{escape(_rate(s.achieved))}</td>"
            f"<td>{escape(fmt_ms(s.p99_ms))}</td><td>{s.error_rate:.2%}</td>{verdict}</tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def render_html(result: Result) -> str:
    """One self-contained HTML page: summary, latency/rate/error timelines and the distribution.

    No script and no external resource: charts are inline SVG and every string from the run (the URL
    above all) is HTML-escaped.

    >>> from pulsegate.loadtest.model import Latency
    >>> r = Result("closed", "http://h/?q=<script>", 1.0, 1, 1, {}, None, 1.0, Latency(), [])
    >>> page = render_html(r)
    >>> "<script>" in page, "&lt;script&gt;" in page
    (False, True)
    """
    title = f"pulsegate load test: {result.scenario} {result.url}"
    body = [
        f"<header><h1>Load test: {escape(result.scenario)}</h1>",
        f'<p class="url">{escape(result.url)}</p></header>',
        "<h2>Summary</h2>",
        _summary_html(summary_rows(result)),
    ]
    if result.steps:
        body.append(_steps_html(result))
    body += _charts(result)
    body.append(
        f"<footer>pulsegate load-test report, JSON schema {SCHEMA_VERSION}. Latencies are bucket "
        "midpoints of a log-linear histogram (within 1.6%).</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
