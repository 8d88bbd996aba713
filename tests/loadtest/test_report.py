"""Load-test reports: JSON round trip and schema, the terminal table, and the HTML page.

The HTML page is also opened in a real browser (Debian's chromium driven by playwright): no console
errors, the summary is visible, the charts are drawn with one point per second, and a screenshot is
taken. That test skips, saying why, when playwright or /usr/bin/chromium is missing.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import msgspec
import pytest

from pulsegate.loadtest.charts import Series, line_chart
from pulsegate.loadtest.model import Latency, Result, Second, StressStep
from pulsegate.loadtest.report import (
    SCHEMA_VERSION,
    merged_histogram,
    render_html,
    render_table,
    render_text,
    summary_rows,
    to_json,
)
from pulsegate.metrics.histogram import Histogram, bucket_mid, merge_into, percentiles

CHROMIUM = Path("/usr/bin/chromium")
SECONDS = 60
RATE = 500
SPIKE = range(25, 35)  # seconds with slow responses and timeouts


def synthetic_result(url: str = "http://127.0.0.1:8080/api/items?page=1") -> Result:
    """A spike run: 60 s at 500 req/s, ~2 ms lognormal latency, 10 s of 40x slower responses with
    timeouts and 5xx in the middle, and the generator falling a little behind during the spike."""
    rng = random.Random(5)
    timeline: list[Second] = []
    total: dict[int, int] = {}
    errors = {"timeout": 0, "status_5xx": 0}
    late_total = 0
    for t in range(SECONDS):
        h = Histogram()
        slow = t in SPIKE
        n_err = n_late = 0
        for _ in range(RATE):
            us = int(rng.lognormvariate(7.6, 0.35 if not slow else 0.6) * (40 if slow else 1))
            h.record(us)
            if slow and us > 200_000:
                errors["timeout"] += 1
                n_err += 1
            elif rng.random() < 0.0005:
                errors["status_5xx"] += 1
                n_err += 1
            if slow and rng.random() < 0.05:
                n_late += 1
        late_total += n_late
        mx = h.max
        hist = h.take()
        p50, p99 = percentiles(hist, [50, 99])
        timeline.append(
            Second(
                t=t, rate_target=float(RATE), sent=RATE, ok=RATE - n_err, errors=n_err, late=n_late,
                p50_ms=p50 / 1000, p99_ms=p99 / 1000, max_ms=mx / 1000, hist=hist,
            )
        )  # fmt: skip
        merge_into(total, hist)
    p50, p90, p99, p999, p100 = (v / 1000 for v in percentiles(total, [50, 90, 99, 99.9, 100]))
    mean = sum(bucket_mid(i) * c for i, c in total.items()) / sum(total.values()) / 1000
    n_err = sum(errors.values())
    return Result(
        scenario="spike", url=url, duration_s=float(SECONDS), requests=SECONDS * RATE,
        ok=SECONDS * RATE - n_err, errors=errors, rate_target=float(RATE), rate_achieved=499.2,
        latency_ms=Latency(p50=p50, p90=p90, p99=p99, p999=p999, max=p100, mean=mean), timeline=timeline,
        processes=2, connections=128, late_sends=late_total, missed_sends=3, recovery_s=4.0,
        slo={"p99<50ms": False, "errors<2%": True}, histogram=total,
    )  # fmt: skip


@pytest.fixture(scope="module")
def result() -> Result:
    return synthetic_result()


# ---------------------------------------------------------------------------------------------- JSON


def test_json_round_trips_into_result(result: Result) -> None:
    data = to_json(result)
    assert msgspec.json.decode(data, type=Result) == result


def test_json_has_schema_first_then_fields_in_order(result: Result) -> None:
    doc = msgspec.json.decode(to_json(result))
    assert SCHEMA_VERSION == 1
    assert list(doc) == ["schema", *Result.__struct_fields__]
    assert doc["schema"] == 1
    lat = doc["latency_ms"]
    assert list(lat) == ["p50", "p90", "p99", "p999", "max", "mean"]
    assert len(doc["timeline"]) == SECONDS
    assert list(doc["timeline"][0]) == list(Second.__struct_fields__)
    assert doc["recovery_s"] == 4.0
    # histogram keys are JSON strings (bucket indices), sorted numerically
    keys = list(doc["histogram"])
    assert keys == sorted(keys, key=int)


def test_json_is_byte_stable_across_dict_insertion_order(result: Result) -> None:
    shuffled = msgspec.structs.replace(
        result,
        errors=dict(reversed(result.errors.items())),
        slo=dict(reversed(result.slo.items())),
        histogram=dict(reversed(result.histogram.items())),
    )
    assert to_json(shuffled) == to_json(result)


def test_merged_histogram_falls_back_to_timeline(result: Result) -> None:
    no_total = msgspec.structs.replace(result, histogram={})
    assert merged_histogram(no_total) == result.histogram


# ------------------------------------------------------------------------------------------ terminal


def test_render_text_shows_the_summary(result: Result) -> None:
    text = render_text(result)
    for needle in (
        "spike", result.url, "30,000", "timeout", "status_5xx", "500.0 req/s", "499.2 req/s",
        "late sends", "missed sends", "p50", "p90", "p99", "p99.9", "max", "recovery", "4.0 s",
        "SLO p99<50ms", "FAIL", "SLO errors<2%", "PASS", "2 processes, 128 connections",
    ):  # fmt: skip
        assert needle in text, needle
    assert max(len(line) for line in text.splitlines()) <= 100
    p99 = next(r.value for r in summary_rows(result) if r.label == "p99")
    assert re.search(rf"p99\s+{re.escape(p99)}", text)


def test_render_table_is_a_rich_renderable(result: Result) -> None:
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=120, color_system="standard", force_terminal=True).print(render_table(result))
    # the failed SLO is bold red: SGR 1 (bold) and 31 (red) around it
    assert re.search(r"\x1b\[1;31m[^\x1b]*FAIL", out.getvalue())


def test_stress_and_closed_model_rows() -> None:
    stress = Result(
        scenario="stress", url="http://h/", duration_s=40.0, requests=20_000, ok=20_000, errors={},
        rate_target=1000.0, rate_achieved=500.0, latency_ms=Latency(p99=12.0), timeline=[],
        knee_rate=800.0, broke_at=1000.0,
        steps=[StressStep(800.0, 799.0, 9.0, 0.0, True), StressStep(1000.0, 940.0, 80.0, 0.02, False)],
    )  # fmt: skip
    text = render_text(stress)
    assert "knee rate" in text and "800.0 req/s" in text and "broke at" in text
    assert "stress steps" in text and "2.00%" in text
    page = render_html(stress)
    assert 'id="steps"' in page and "No errors." in page
    closed = msgspec.structs.replace(stress, scenario="closed", rate_target=None, steps=[])
    assert "closed model" in render_text(closed)
    assert "late sends" not in render_text(closed)


def test_empty_run_renders() -> None:
    empty = Result("sustained", "http://h/", 0.0, 0, 0, {}, 10.0, 0.0, Latency(), [], interrupted=True)
    assert "interrupted" in render_text(empty)
    assert render_html(empty).count("no data") == 3  # latency, rate, distribution


# ---------------------------------------------------------------------------------------------- HTML


def test_html_escapes_hostile_strings(result: Result) -> None:
    url = "http://evil/?q=\"><script>alert('x')</script><img src=x onerror=alert(1)>"
    hostile = msgspec.structs.replace(
        result, url=url, errors={"<script>kind</script>": 1}, slo={"<b>p99</b>": True}
    )
    page = render_html(hostile)
    assert "<script" not in page.lower()
    assert "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "onerror=alert(1)&gt;" in page


def test_html_is_self_contained(result: Result) -> None:
    page = render_html(result)
    assert page.startswith("<!DOCTYPE html>")
    # The only absolute URLs: the SVG namespace (an identifier, never fetched) and the run's URL.
    urls = set(re.findall(r"https?://[^\s\"'<)]+", page))
    assert urls == {"http://www.w3.org/2000/svg", result.url.replace("&", "&amp;")}
    for external in ("<link", "<script", " src=", "@import", "url("):
        assert external not in page


def test_line_chart_breaks_lines_at_gaps() -> None:
    svg = line_chart(
        chart_id="c", title="t", x=[0, 1, 2, 3, 4], y_label="ms",
        series=[Series("p50", [1.0, 2.0, None, 3.0, 4.0], "#000")], log_y=True,
    )  # fmt: skip
    runs = re.findall(r'<polyline points="([^"]*)"', svg)
    assert [len(r.split()) for r in runs] == [2, 2]


# ------------------------------------------------------------------------------------------- browser


def _points(page: object, selector: str) -> int:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    lines = page.locator(selector).all()
    return sum(len((pl.get_attribute("points") or "").split()) for pl in lines)


@pytest.mark.timeout(90)  # chromium's first start on a busy 2-core machine takes a few seconds
def test_html_in_chromium(result: Result, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    report = tmp_path / "report.html"
    report.write_text(render_html(result), encoding="utf-8")
    shot = tmp_path / "report.png"
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, timeout=45_000)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(20_000)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(report.as_uri(), wait_until="load")

            assert page.title() == f"pulsegate load test: spike {result.url}"
            summary = page.locator(".summary")
            assert summary.is_visible()
            text = summary.inner_text()
            for label in ("requests", "timeout", "p99", "p99.9", "recovery", "SLO p99<50ms"):
                assert label in text, label
            for row in summary_rows(result):
                assert row.value in text, row
            assert "30,000" in text and "FAIL" in text

            for chart in ("#latency-chart", "#rate-chart", "#errors-chart", "#percentile-chart"):
                box = page.locator(chart).bounding_box()
                assert box is not None and box["width"] > 500 and box["height"] > 100, chart
            for series in ("p50", "p99", "max"):
                assert _points(page, f'#latency-chart g[data-series="{series}"] polyline') == SECONDS
            assert _points(page, '#rate-chart g[data-series="target"] polyline') == SECONDS
            assert _points(page, '#rate-chart g[data-series="achieved"] polyline') == SECONDS
            assert _points(page, "#percentile-chart polyline") > 100
            with_errors = sum(1 for s in result.timeline if s.errors)
            assert page.locator("#errors-chart rect.bar").count() == with_errors > 0
            # the spike shows: p99 drawn higher (smaller y) inside the spike than before it
            pts = page.locator('#latency-chart g[data-series="p99"] polyline').first.get_attribute("points")
            ys = [float(p.split(",")[1]) for p in (pts or "").split()]
            assert min(ys[s] for s in SPIKE) < min(ys[: SPIKE.start]) - 50

            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert shot.stat().st_size > 10_000
