"""Plans, URLs, scenario and mix files: every accepted and rejected input, with exact one-line messages."""

from __future__ import annotations

import doctest
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pulsegate.config.loader import ConfigError
from pulsegate.loadtest import scenario as scenario_module
from pulsegate.loadtest.model import Plan, RequestSpec, Stage
from pulsegate.loadtest.scenario import (
    MAX_DURATION,
    ScenarioError,
    closed,
    load_mix,
    load_scenario,
    parse_url,
    spike,
    stress_steps,
    sustained,
)

# --- parse_url ------------------------------------------------------------------------------------

URLS: list[tuple[str, tuple[str, int, str, str]]] = [
    ("http://127.0.0.1:8080/api/items", ("127.0.0.1", 8080, "/api/items", "127.0.0.1:8080")),
    ("http://127.0.0.1:8080", ("127.0.0.1", 8080, "/", "127.0.0.1:8080")),
    ("http://example.com", ("example.com", 80, "/", "example.com")),
    ("http://example.com:80/", ("example.com", 80, "/", "example.com")),  # default port left out
    ("HTTP://Example.COM:8080/A/b", ("example.com", 8080, "/A/b", "example.com:8080")),
    ("http://h/a/b?c=d&e=f", ("h", 80, "/a/b?c=d&e=f", "h")),
    ("http://h?x=1", ("h", 80, "/?x=1", "h")),
    ("http://h/p#fragment", ("h", 80, "/p", "h")),
    ("http://h/p?#", ("h", 80, "/p", "h")),
    ("http://h/%20x", ("h", 80, "/%20x", "h")),
    ("http://my_host.local:1/", ("my_host.local", 1, "/", "my_host.local:1")),
    ("http://h:65535/", ("h", 65535, "/", "h:65535")),
    ("http://[::1]/", ("::1", 80, "/", "[::1]")),
    ("http://[::1]:8080/x", ("::1", 8080, "/x", "[::1]:8080")),
    ("http://[0:0:0:0:0:0:0:1]:81", ("::1", 81, "/", "[::1]:81")),
    ("http://[::FFFF:127.0.0.1]/", ("::ffff:7f00:1", 80, "/", "[::ffff:7f00:1]")),
]


@pytest.mark.parametrize(("url", "expected"), URLS, ids=[u for u, _ in URLS])
def test_parse_url(url: str, expected: tuple[str, int, str, str]) -> None:
    assert parse_url(url) == expected


_FORM = "expected http://host[:port][/path]"
_ASCII = "must be ASCII without spaces or control characters (percent-encode them)"

BAD_URLS: list[tuple[str, str]] = [
    ("https://example.com/", "https is not supported (plain http only)"),
    ("HTTPS://example.com/", "https is not supported (plain http only)"),
    ("ftp://h/", _FORM),
    ("h:8080", _FORM),
    ("127.0.0.1:8080/x", _FORM),
    ("", _FORM),
    ("http://", _FORM),
    ("http:///p", _FORM),
    ("http:/h/", _FORM),
    ("http://h:/", _FORM),
    ("http://h:x/", _FORM),
    ("http://h:123456/", _FORM),
    ("http://user:pw@h/", _FORM),
    ("http://[zz::1]/", _FORM),
    ("http://h:0/", "port must be from 1 to 65535"),
    ("http://h:65536/", "port must be from 1 to 65535"),
    ("http://[:::1]/", "bad IPv6 address ':::1'"),
    ("http://h/a b", _ASCII),
    (" http://h/", _ASCII),
    ("http://hé/", _ASCII),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS, ids=[repr(u) for u, _ in BAD_URLS])
def test_parse_url_rejects(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_url(url)
    assert str(info.value) == f"invalid URL '{url}': {reason}"


@pytest.mark.parametrize(
    ("url", "shown"), [("http://h/\nx", "http://h/\\nx"), ("http://h/\t", "http://h/\\t")]
)
def test_parse_url_message_escapes_control_characters(url: str, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_url(url)
    assert str(info.value) == f"invalid URL '{shown}': {_ASCII}"


# --- plan builders --------------------------------------------------------------------------------


def test_sustained() -> None:
    plan = sustained(2000, 30, 64)
    assert plan == Plan(kind="sustained", stages=[Stage(30.0, 2000.0, 2000.0)], connections=64)
    assert plan.duration == 30.0
    assert plan.planned_requests() == 60000.0


def test_spike_default_start_is_a_third() -> None:
    plan = spike(100, 10, 5, 30, 16)
    assert plan.kind == "spike" and plan.connections == 16
    assert plan.stages == [Stage(10.0, 100.0, 100.0), Stage(5.0, 1000.0, 1000.0), Stage(15.0, 100.0, 100.0)]
    assert plan.duration == 30.0
    assert [plan.rate_at(t) for t in (0, 9.9, 10, 14.9, 15, 29.9, 30)] == [100, 100, 1000, 1000, 100, 100, 0]


def test_spike_at() -> None:
    plan = spike(50, 8, 1.0, 9.0, 64, spike_at=2.0)
    assert plan.stages == [Stage(2.0, 50.0, 50.0), Stage(1.0, 400.0, 400.0), Stage(6.0, 50.0, 50.0)]


def test_spike_factor_below_one_is_a_dip() -> None:
    assert spike(100, 0.5, 1, 3, 4).stages[1] == Stage(1.0, 50.0, 50.0)


def test_stress_steps() -> None:
    assert stress_steps(100, 50, 10, None, 3) == [
        Stage(10.0, 100.0, 100.0),
        Stage(10.0, 150.0, 150.0),
        Stage(10.0, 200.0, 200.0),
    ]
    assert [s.start for s in stress_steps(100, 50, 10, 260, 100)] == [100, 150, 200, 250]
    assert [s.start for s in stress_steps(100, 50, 10, 250, 100)] == [100, 150, 200, 250]
    assert [s.start for s in stress_steps(100, 50, 10, 100, 100)] == [100]
    assert [s.start for s in stress_steps(100, 50, 10, 1000, 2)] == [100, 150]


def test_stress_steps_do_not_drift() -> None:
    rates = [s.start for s in stress_steps(0.1, 0.1, 1, 0.3, 10)]
    assert rates == [0.1, 0.2, 0.3]  # 0.1 + 2 * 0.1 is 0.30000000000000004: capped, not dropped
    rates = [s.start for s in stress_steps(1, 0.1, 1, None, 1001)]
    assert rates[-1] == pytest.approx(101.0, abs=1e-12)


def test_closed() -> None:
    plan = closed(32, 60)
    assert plan == Plan(kind="closed", connections=32, closed_duration=60.0)
    assert plan.duration == 60.0 and plan.stages == []


_POS = "must be a positive number, got"
_MAX = "max_rate must be at least the start rate (10), got"

BAD_PLANS: list[tuple[Callable[[], object], str]] = [
    (lambda: sustained(0, 10, 1), f"rate {_POS} 0"),
    (lambda: sustained(-5, 10, 1), f"rate {_POS} -5"),
    (lambda: sustained(10, math.inf, 1), f"duration {_POS} inf"),
    (lambda: sustained(10, math.nan, 1), f"duration {_POS} nan"),
    (lambda: sustained(10, 10, 0), f"connections {_POS} 0"),
    (lambda: spike(0, 2, 1, 10, 1), f"rate {_POS} 0"),
    (lambda: spike(10, 0, 1, 10, 1), f"factor {_POS} 0"),
    (lambda: spike(10, 2, 0, 10, 1), f"spike_duration {_POS} 0"),
    (lambda: spike(10, 2, 1, 0, 1), f"duration {_POS} 0"),
    (lambda: spike(10, 2, 1, 10, 1, spike_at=0), f"spike_at {_POS} 0"),
    (lambda: spike(10, 2, 1, 10, 0), f"connections {_POS} 0"),
    (lambda: spike(10, 2, 9, 10, 1, spike_at=1), "the spike (9s at 1s) must end before the run (10s)"),
    (lambda: spike(10, 2, 8, 12, 1), "the spike (8s at 4s) must end before the run (12s)"),
    (lambda: stress_steps(0, 10, 1, None, 5), f"start {_POS} 0"),
    (lambda: stress_steps(10, 0, 1, None, 5), f"step {_POS} 0"),
    (lambda: stress_steps(10, 1, 0, None, 5), f"step_duration {_POS} 0"),
    (lambda: stress_steps(10, 1, 1, None, 0), f"max_steps {_POS} 0"),
    (lambda: stress_steps(10, 1, 1, 5, 3), f"{_MAX} 5"),
    (lambda: stress_steps(10, 1, 1, math.nan, 3), f"{_MAX} nan"),
    (lambda: closed(0, 10), f"connections {_POS} 0"),
    (lambda: closed(1, -1), f"duration {_POS} -1"),
]


@pytest.mark.parametrize(("build", "message"), BAD_PLANS, ids=[m for _, m in BAD_PLANS])
def test_plan_builders_reject(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value) == message


# --- scenario files: accepted ---------------------------------------------------------------------

EXAMPLE = """\
name: checkout-ramp
url: http://127.0.0.1:8080/api/items     # default request (or `requests:` a weighted list)
requests:                                  # optional mix
  - {method: GET, url: http://127.0.0.1:8080/api/items, weight: 9}
  - {method: POST, url: http://127.0.0.1:8080/api/orders, body: '{"id": 1}', headers: {Content-Type: application/json}, weight: 1}
connections: 64
stages:
  - {duration: 30s, target: 500}     # ramp from 0 (or the previous target) to 500/s
  - {duration: 1m, target: 500}      # hold
  - {duration: 10s, target: 0}
slo: "p99<10ms,errors<0.1%"
"""  # noqa: E501  (the example of the brief, verbatim)


def test_the_documented_example(tmp_path: Path) -> None:
    path = tmp_path / "checkout.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    sc = load_scenario(str(path))
    assert sc.name == "checkout-ramp"
    assert sc.slo == "p99<10ms,errors<0.1%"
    assert sc.plan == Plan(
        kind="run",
        stages=[Stage(30.0, 0.0, 500.0), Stage(60.0, 500.0, 500.0), Stage(10.0, 500.0, 0.0)],
        connections=64,
    )
    assert sc.requests == [
        RequestSpec("http://127.0.0.1:8080/api/items", "GET", [], b"", 9.0),
        RequestSpec(
            "http://127.0.0.1:8080/api/orders",
            "POST",
            [("content-type", "application/json")],
            b'{"id": 1}',
            1.0,
        ),
    ]


def test_the_module_docstring_example_is_valid() -> None:
    doc = scenario_module.__doc__ or ""
    yaml_text = "\n".join(line[4:] for line in doc.split("::\n\n", 1)[1].split("\n\n", 1)[0].splitlines())
    sc = load_scenario("doc.yaml", text=yaml_text)
    assert sc.name == "checkout-ramp" and len(sc.requests) == 2 and len(sc.plan.stages) == 3


_STAGE = "stages: [{duration: 10s, target: 100}]"
_U = "url: http://h/\n"


def _stages(stages: str) -> str:
    return f"{_U}stages: [{stages}]"


def _entry(fields: str) -> str:
    """A scenario with one request entry: url http://h/ plus ``fields``."""
    return f"requests: [{{url: 'http://h/', {fields}}}]\n{_STAGE}"


ACCEPTED: list[tuple[str, str, object]] = [
    # (what is checked, scenario text, expected value of that thing)
    ("name", f"{_U}{_STAGE}", "sc"),  # default: the file name without extension
    ("name", f"name: ramp 1\n{_U}{_STAGE}", "ramp 1"),
    ("connections", f"{_U}{_STAGE}", 64),
    ("connections", f"{_U}connections: 1\n{_STAGE}", 1),
    ("slo", f"{_U}{_STAGE}", None),
    ("slo", f"{_U}slo: ' P99 < 10 , errors<5 '\n{_STAGE}", "p99<10ms,errors<5"),
    ("stages", _stages("{duration: 1.5, target: 0}"), [Stage(1.5, 0.0, 0.0)]),
    ("stages", _stages("{duration: 500ms, target: 2.5}"), [Stage(0.5, 0.0, 2.5)]),
    (
        "stages",
        _stages("{duration: 1m, target: 10}, {duration: 1m, target: 10}, {duration: 2m, target: 0}"),
        [Stage(60.0, 0.0, 10.0), Stage(60.0, 10.0, 10.0), Stage(120.0, 10.0, 0.0)],
    ),
    ("stages", _stages("{duration: 24h, target: 1}"), [Stage(86400.0, 0.0, 1.0)]),
    (
        "stages",
        _stages("{duration: 12h, target: 1}, {duration: 12h, target: 1}"),
        [Stage(43200.0, 0.0, 1.0), Stage(43200.0, 1.0, 1.0)],
    ),
    ("requests", f"url: http://h:81/x?y=1\n{_STAGE}", [RequestSpec("http://h:81/x?y=1")]),
    # A top-level url is the default of entries that have none.
    (
        "requests",
        f"{_U}requests: [{{method: post}}, {{url: 'http://h/b', weight: 0.5}}]\n{_STAGE}",
        [RequestSpec("http://h/", "POST"), RequestSpec("http://h/b", "GET", weight=0.5)],
    ),
    # A top-level url that every entry overrides may name another host.
    ("requests", f"url: http://g/\nrequests: [{{url: 'http://h/'}}]\n{_STAGE}", [RequestSpec("http://h/")]),
    (
        "requests",
        "requests:\n  - url: http://h/\n    headers: {X-A: '1', Accept: '*/*'}\n    body: |\n      hé\n"
        + _STAGE,
        [RequestSpec("http://h/", "GET", [("x-a", "1"), ("accept", "*/*")], "hé\n".encode())],
    ),
]


@pytest.mark.parametrize(
    ("field", "text", "expected"), ACCEPTED, ids=[f"{f}:{t!r}"[:50] for f, t, _ in ACCEPTED]
)
def test_scenario_accepts(field: str, text: str, expected: object) -> None:
    sc = load_scenario("dir/sc.yaml", text=text)
    value = {
        "name": sc.name,
        "connections": sc.plan.connections,
        "slo": sc.slo,
        "stages": sc.plan.stages,
        "requests": sc.requests,
    }[field]
    assert value == expected
    assert sc.plan.kind == "run"


# --- scenario files: rejected ---------------------------------------------------------------------

_DUR = "expected a number with unit us, ms, s, m, h or d"
_HTTPS = "invalid URL 'https://h/': https is not supported (plain http only)"
_OTHER_HOST = "not the host and port of the first request (h:80)"

REJECTED: list[tuple[str, list[str]]] = [
    # Structure.
    ("", ["top level must be a mapping"]),
    ("- 1", ["top level must be a mapping"]),
    ("just text", ["top level must be a mapping"]),
    (f"{_U}{_STAGE}\nbogus: 1", ["bogus: unknown key"]),
    (f"{_U}{_STAGE}\nStages: 1", ["Stages: unknown key"]),
    (f"{_U}{_STAGE}\n1: x", ["1: unknown key"]),
    (_U, ["stages: required"]),
    (f"{_U}stages: []", ["stages: must not be empty"]),
    (f"{_U}stages: 5", ["stages: must be a list"]),
    (_stages("5"), ["stages[0]: must be a mapping"]),
    # Stages.
    (_stages("{duration: 0s, target: 1}"), ["stages[0].duration: must be greater than 0"]),
    (_stages("{duration: 0, target: 1}"), ["stages[0].duration: must be greater than 0"]),
    (
        _stages("{duration: -1s, target: 1}"),
        ["stages[0].duration: invalid duration '-1s': must not be negative"],
    ),
    (_stages("{duration: 1x, target: 1}"), [f"stages[0].duration: invalid duration '1x': {_DUR}"]),
    (_stages("{duration: yes, target: 1}"), [f"stages[0].duration: invalid duration 'true': {_DUR}"]),
    (_stages("{target: 1}"), ["stages[0].duration: required"]),
    (_stages("{duration: 1s}"), ["stages[0].target: required"]),
    (_stages("{duration: 1s, target: -1}"), ["stages[0].target: must be at least 0"]),
    (_stages("{duration: 1s, target: '5'}"), ["stages[0].target: must be a number"]),
    (_stages("{duration: 1s, target: true}"), ["stages[0].target: must be a number"]),
    (_stages("{duration: 1s, target: .nan}"), ["stages[0].target: must be a finite number"]),
    (_stages("{duration: 1s, target: 1, ramp: x}"), ["stages[0].ramp: unknown key"]),
    (
        _stages("{duration: 24h, target: 1}, {duration: 1s, target: 1}"),
        ["stages: 86401s in total, over the 24h limit"],
    ),
    (_stages("{duration: 2d, target: 1}"), ["stages: 2d in total, over the 24h limit"]),
    # Other scalars.
    (f"{_U}connections: 0\n{_STAGE}", ["connections: must be at least 1"]),
    (f"{_U}connections: -3\n{_STAGE}", ["connections: must be at least 1"]),
    (f"{_U}connections: 2.5\n{_STAGE}", ["connections: must be an integer"]),
    (f"{_U}connections: '8'\n{_STAGE}", ["connections: must be an integer"]),
    (f"{_U}name: ''\n{_STAGE}", ["name: must not be empty"]),
    (f"{_U}name: 5\n{_STAGE}", ["name: must be a string"]),
    (f"{_U}slo: 5\n{_STAGE}", ["slo: must be a string"]),
    (
        f"{_U}slo: p99<>10\n{_STAGE}",
        ["slo: invalid SLO \"p99<>10\": unknown operator '<>' (use <, <=, > or >=)"],
    ),
    (f"{_U}slo: ''\n{_STAGE}", ['slo: invalid SLO "": no objectives']),
    # URLs.
    (_STAGE, ["url: required (or a requests: list)"]),
    (f"url: null\n{_STAGE}", ["url: required (or a requests: list)"]),
    (f"url: [1]\n{_STAGE}", ["url: must be a string"]),
    (f"url: https://h/\n{_STAGE}", [f"url: {_HTTPS}"]),
    (f"url: h:80\n{_STAGE}", ["url: invalid URL 'h:80': expected http://host[:port][/path]"]),
    (f"requests: [{{url: 'http://h/'}}, {{method: POST}}]\n{_STAGE}", ["requests[1].url: required"]),
    (f"requests: []\n{_U}{_STAGE}", ["requests: must not be empty"]),
    (f"requests: {{url: 'http://h/'}}\n{_STAGE}", ["requests: must be a list"]),
    (
        f"requests: [{{url: 'http://h/'}}, {{url: 'http://h:81/'}}]\n{_STAGE}",
        [f"requests[1].url: {_OTHER_HOST}"],
    ),
    (f"url: http://g/\nrequests: [{{url: 'http://h/'}}, {{}}]\n{_STAGE}", [f"url: {_OTHER_HOST}"]),
    # Request entries.
    (_entry("weight: 0"), ["requests[0].weight: must be greater than 0"]),
    (_entry("weight: -1"), ["requests[0].weight: must be greater than 0"]),
    (_entry("weight: x"), ["requests[0].weight: must be a number"]),
    (_entry("weight: .inf"), ["requests[0].weight: must be a finite number"]),
    (_entry("method: 'G T'"), ["requests[0].method: invalid method 'G T': expected an HTTP token like GET"]),
    (_entry("headers: {'a b': x}"), ["requests[0].headers['a b']: invalid header name 'a b'"]),
    (_entry('headers: {X: "a\\nb"}'), ["requests[0].headers.X: header value must not contain CR, LF or NUL"]),
    (_entry("headers: {X: 5}"), ["requests[0].headers.X: must be a string"]),
    (_entry("headers: [X]"), ["requests[0].headers: must be a mapping"]),
    (_entry("body: 5"), ["requests[0].body: must be a string"]),
    (_entry("cookie: x"), ["requests[0].cookie: unknown key"]),
    # YAML.
    (f"{_U}stages: [", ["2:10: invalid YAML: expected the node content, but found '<stream end>'"]),
    ("a: 1: 2", ["1:5: invalid YAML: mapping values are not allowed here"]),
    (
        f"{_U}stages:\n  - duration: 1s\n   target: 2",
        ["4:4: invalid YAML: expected <block end>, but found '<block mapping start>'"],
    ),
    # Several problems: all reported, one line each, in document order.
    (
        f"{_U}connections: 0\nstages: [{{duration: 0s, target: -1}}]\nextra: 1",
        [
            "connections: must be at least 1",
            "stages[0].duration: must be greater than 0",
            "stages[0].target: must be at least 0",
            "extra: unknown key",
        ],
    ),
]

_YAML_PLACE = re.compile(r"\d+:\d+: ")


def _lines(source: str, problems: list[str]) -> list[str]:
    # A YAML problem is placed by line:column ("sc.yaml:2:10: ..."), any other by key path.
    return [f"{source}{'' if _YAML_PLACE.match(p) else ' '}{p}" for p in problems]


@pytest.mark.parametrize(("text", "problems"), REJECTED, ids=[repr(t)[:60] for t, _ in REJECTED])
def test_scenario_rejects(text: str, problems: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("sc.yaml", text=text)
    expected = _lines("sc.yaml:", problems)
    assert info.value.problems == expected
    assert str(info.value) == "\n".join(expected)


def test_scenario_error_is_a_value_error_and_a_config_error() -> None:
    # The CLI catches ValueError around loading; config tooling catches ConfigError.
    with pytest.raises(ScenarioError) as info:
        load_scenario("sc.yaml", text="")
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)


def test_problem_lines_stay_one_line() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("sc.yaml", text=f'url: "http://h/\\nx"\nslo: "p99\\n<>1"\n{_STAGE}')
    assert len(info.value.problems) == 2
    assert all("\n" not in p for p in info.value.problems)


# --- files ----------------------------------------------------------------------------------------


def test_load_scenario_from_a_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "ramp.yml"
    path.write_text(f"url: http://h/\n{_STAGE}\nbogus: 1\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert str(info.value) == f"{path}: bogus: unknown key"
    path.write_text(f"url: http://h/\n{_STAGE}\n", encoding="utf-8")
    assert load_scenario(str(path)).name == "ramp"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    for load in (load_scenario, load_mix):
        with pytest.raises(ScenarioError) as info:
            load(str(path))
        assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: cannot read: Is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"url: \xff\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert str(info.value) == f"{path}: cannot read: not UTF-8 text (invalid start byte at byte 5)"


# --- mix files ------------------------------------------------------------------------------------

MIXES: list[tuple[str, list[RequestSpec]]] = [
    ("[{url: 'http://h/'}]", [RequestSpec("http://h/")]),
    (
        "- {url: 'http://h/a', weight: 9}\n- {method: delete, url: 'http://h/b', body: x, weight: 1}",
        [RequestSpec("http://h/a", weight=9.0), RequestSpec("http://h/b", "DELETE", [], b"x", 1.0)],
    ),
    (
        "- url: http://h:8080/\n  headers: {Authorization: Bearer x}",
        [RequestSpec("http://h:8080/", "GET", [("authorization", "Bearer x")])],
    ),
]


@pytest.mark.parametrize(("text", "expected"), MIXES, ids=[t[:40] for t, _ in MIXES])
def test_mix_accepts(text: str, expected: list[RequestSpec]) -> None:
    assert load_mix("mix.yaml", text=text) == expected


def test_mix_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("- {url: 'http://h/', weight: 2}\n", encoding="utf-8")
    assert load_mix(str(path)) == [RequestSpec("http://h/", weight=2.0)]


MIX_REJECTED: list[tuple[str, list[str]]] = [
    ("", ["must be a list"]),
    ("[]", ["must not be empty"]),
    ("{url: 'http://h/'}", ["must be a list"]),
    ("- 5", ["[0]: must be a mapping"]),
    ("- {method: GET}", ["[0].url: required"]),
    ("- {url: 'http://h/'}\n- {url: 'http://g/'}", [f"[1].url: {_OTHER_HOST}"]),
    ("- {url: 'https://h/'}", [f"[0].url: {_HTTPS}"]),
    (
        "- {url: 'http://h/', weight: 0}\n- {url: 'http://h/', weight: -2, extra: 1}",
        [
            "[0].weight: must be greater than 0",
            "[1].weight: must be greater than 0",
            "[1].extra: unknown key",
        ],
    ),
    ("- {url: 'http://h/'", ["1:20: invalid YAML: expected ',' or '}', but got '<stream end>'"]),
]


@pytest.mark.parametrize(("text", "problems"), MIX_REJECTED, ids=[repr(t)[:40] for t, _ in MIX_REJECTED])
def test_mix_rejects(text: str, problems: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        load_mix("mix.yaml", text=text)
    assert info.value.problems == _lines("mix.yaml:", problems)


# --- docstring examples ---------------------------------------------------------------------------


def test_max_duration_is_a_day() -> None:
    assert MAX_DURATION == 24 * 3600


def test_docstring_examples() -> None:
    result = doctest.testmod(scenario_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
