"""Load-test scenarios: the rate plans behind ``pulsegate load`` and the YAML scenario file.

:func:`sustained`, :func:`spike`, :func:`stress_steps` and :func:`closed` build the plans of the
built-in scenarios (``ValueError`` for an argument that is not a positive finite number);
:func:`load_scenario` reads a file with k6-like stages::

    name: checkout-ramp                      # default: the file name without its extension
    url: http://127.0.0.1:8080/api/items     # the request, or the default url of `requests:` entries
    requests:                                # optional weighted mix; all to one host and port
      - {method: GET, url: http://127.0.0.1:8080/api/items, weight: 9}
      - {method: POST, url: http://127.0.0.1:8080/api/orders, body: '{"id": 1}',
         headers: {Content-Type: application/json}, weight: 1}
    connections: 64                          # default 64
    stages:                                  # required; 24h in total at most
      - {duration: 30s, target: 500}         # ramp from 0 (or the previous target) to 500/s
      - {duration: 1m, target: 500}          # hold
      - {duration: 10s, target: 0}
    slo: "p99<10ms,errors<0.1%"              # optional, see pulsegate.loadtest.slo

Request entries take ``url``, ``method`` (default GET), ``headers`` (a mapping of strings),
``body`` (text, sent UTF-8 encoded) and ``weight`` (default 1). :func:`load_mix` reads a file that
is just such a list. Every problem is one line, ``{file}: {key path}: {reason}``, as in config files.

Example:
    >>> sc = load_scenario("ramp.yaml", text="url: http://h:8080/\\nstages: [{duration: 10s, target: 99}]")
    >>> sc.name, sc.plan.stages, sc.requests[0].method
    ('ramp', [Stage(duration=10.0, start=0.0, end=99.0)], 'GET')
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# The config's YAML reading, error rendering and request checks, so that scenario and config problems
# read alike (line:column for YAML, key paths such as requests[1].url, the same short reasons).
from pulsegate.config.loader import ConfigError, _key_path, _parse_yaml, _problem_line, _reason
from pulsegate.config.model import _check_header_name, _check_header_value, _check_method
from pulsegate.config.units import Duration, format_duration
from pulsegate.loadtest.model import Plan, RequestSpec, Stage
from pulsegate.loadtest.slo import parse_slo

MAX_DURATION = 86400.0  # a scenario file's stages may last 24h in total
_T = TypeVar("_T")


class ScenarioError(ConfigError, ValueError):
    """A scenario or mix file that cannot be used; ``problems`` holds one line per problem."""


@dataclass
class ScenarioFile:
    plan: Plan
    requests: list[RequestSpec]
    slo: str | None  # normalised ("p99<10ms,errors<0.1%"), ready for slo.parse_slo()
    name: str


def parse_url(url: str) -> tuple[str, int, str, str]:
    """Split an ``http://`` URL into ``(host, port, request target, Host header)``.

    The port defaults to 80 and the path to ``/``; the query stays in the target, a fragment is
    dropped. Raises ``ValueError("invalid URL 'x': ...")``.

    >>> parse_url("http://127.0.0.1:8080/api/items?page=2")
    ('127.0.0.1', 8080, '/api/items?page=2', '127.0.0.1:8080')
    >>> parse_url("http://Example.com"), parse_url("http://[::1]:81")
    (('example.com', 80, '/', 'example.com'), ('::1', 81, '/', '[::1]:81'))
    >>> parse_url("https://example.com/")
    Traceback (most recent call last):
    ...
    ValueError: invalid URL 'https://example.com/': https is not supported (plain http only)
    """
    match = _URL_RE.fullmatch(url)
    port = int(match["port"] or 80) if match else 0
    host = (match["host"] or match["ipv6"] or "").lower() if match else ""
    reason = None
    if url[:8].lower() == "https://":
        reason = "https is not supported (plain http only)"
    elif not url.isascii() or _CONTROL_RE.search(url) or " " in url:
        reason = "must be ASCII without spaces or control characters (percent-encode them)"
    elif match is None:
        reason = "expected http://host[:port][/path]"
    elif not 1 <= port <= 65535:
        reason = "port must be from 1 to 65535"
    elif match["ipv6"]:
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            reason = f"bad IPv6 address '{host}'"
    if reason is not None or match is None:
        raise ValueError(f"invalid URL '{_CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], url)}': {reason}")
    named = f"[{host}]" if match["ipv6"] else host
    target = (match["path"] or "/") + (f"?{match['query']}" if match["query"] else "")
    return host, port, target, named if port == 80 else f"{named}:{port}"


def sustained(rate: float, duration: float, connections: int) -> Plan:
    """A constant ``rate`` requests/s for ``duration`` seconds.

    >>> sustained(2000, 30, 64).stages
    [Stage(duration=30.0, start=2000.0, end=2000.0)]
    """
    _positive(rate=rate, duration=duration, connections=connections)
    return Plan(kind="sustained", stages=[_hold(duration, rate)], connections=connections)


def spike(
    rate: float,
    factor: float,
    spike_duration: float,
    duration: float,
    connections: int,
    *,
    spike_at: float | None = None,
) -> Plan:
    """Baseline ``rate``, then ``rate * factor`` for ``spike_duration`` seconds from ``spike_at``
    (default ``duration / 3``), then the baseline until ``duration`` seconds in total: always three
    stages, none empty (a baseline to measure recovery against, and time to recover in).

    >>> [(s.duration, s.start) for s in spike(100, 10, 5, 30, 64).stages]
    [(10.0, 100.0), (5.0, 1000.0), (15.0, 100.0)]
    """
    start = duration / 3 if spike_at is None else spike_at
    _positive(rate=rate, factor=factor, spike_duration=spike_duration, duration=duration, spike_at=start)
    _positive(connections=connections)
    if (after := duration - start - spike_duration) <= 0:
        raise ValueError(
            f"the spike ({spike_duration:g}s at {start:g}s) must end before the run ({duration:g}s)"
        )
    stages = [_hold(start, rate), _hold(spike_duration, rate * factor), _hold(after, rate)]
    return Plan(kind="spike", stages=stages, connections=connections)


def stress_steps(
    start: float, step: float, step_duration: float, max_rate: float | None, max_steps: int
) -> list[Stage]:
    """Hold stages at ``start``, ``start + step``, ... up to ``max_rate`` (when given), at most
    ``max_steps`` of them; the runner runs them one by one and stops at the knee.

    >>> [s.start for s in stress_steps(100, 50, 10, 260, 10)]
    [100.0, 150.0, 200.0, 250.0]
    """
    _positive(start=start, step=step, step_duration=step_duration, max_steps=max_steps)
    if max_rate is not None and not (math.isfinite(max_rate) and max_rate >= start):
        raise ValueError(f"max_rate must be at least the start rate ({start:g}), got {max_rate!r}")
    rates = [start + i * step for i in range(max_steps)]  # not a running sum, which drifts
    if max_rate is not None:  # with slack for rounding: 0.1 + 2 * 0.1 > 0.3
        rates = [min(rate, max_rate) for rate in rates if rate <= max_rate * (1 + 1e-9)]
    return [_hold(step_duration, rate) for rate in rates]


def closed(connections: int, duration: float) -> Plan:
    """The closed model: ``connections`` each send their next request when the last one ended.

    >>> closed(32, 60).closed_duration
    60.0
    """
    _positive(connections=connections, duration=duration)
    return Plan(kind="closed", connections=connections, closed_duration=float(duration))


def load_scenario(path: str, *, text: str | None = None) -> ScenarioFile:
    """Read and validate a scenario file, or ``text`` when given (``path`` then only names it in
    messages); raises :class:`ScenarioError`, a ``ValueError`` with one line per problem.

    >>> load_scenario("s.yaml", text="stages: [{duration: 0s, target: -1}]")
    Traceback (most recent call last):
    ...
    pulsegate.loadtest.scenario.ScenarioError: s.yaml: stages[0].duration: must be greater than 0
    s.yaml: stages[0].target: must be at least 0
    """
    data = _load(path, text)
    if not isinstance(data, dict):
        raise ScenarioError([f"{path}: top level must be a mapping"])
    model = _validate(_SCENARIO, data, path)
    if (total := sum(s.duration for s in model.stages)) > MAX_DURATION:
        raise ScenarioError([f"{path}: stages: {format_duration(total)} in total, over the 24h limit"])
    entries = model.requests or [_Request(url=model.url)]
    requests = _requests(path, entries, model.url, "requests" if model.requests else None)
    starts = [0.0, *(s.target for s in model.stages)]  # each stage ramps from the previous target
    stages = [Stage(s.duration, start, s.target) for s, start in zip(model.stages, starts, strict=False)]
    plan = Plan(kind="run", stages=stages, connections=model.connections)
    return ScenarioFile(plan, requests, model.slo, name=model.name or Path(path).stem)


def load_mix(path: str, *, text: str | None = None) -> list[RequestSpec]:
    """Read a weighted request mix, a YAML list of request entries; ``text`` as for :func:`load_scenario`.

    >>> [(r.method, r.weight) for r in load_mix("mix.yaml", text="[{url: 'http://h/', weight: 3}]")]
    [('GET', 3.0)]
    >>> load_mix("mix.yaml", text="- {url: 'http://h/'}\\n- {method: POST, weight: 0}")
    Traceback (most recent call last):
    ...
    pulsegate.loadtest.scenario.ScenarioError: mix.yaml: [1].weight: must be greater than 0
    """
    data = _load(path, text)
    return _requests(path, _validate(_MIX, data, path), None, "")


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_URL_RE = re.compile(
    r"(?i:http)://(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))(?::(?P<port>\d{1,5}))?"
    r"(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?(?:#.*)?"
)


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def _hold(duration: float, rate: float) -> Stage:
    return Stage(duration=float(duration), start=float(rate), end=float(rate))


def _load(path: str, text: str | None) -> object:
    try:
        return _parse_yaml(Path(path).read_text(encoding="utf-8") if text is None else text, path)
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise ScenarioError([f"{path}: cannot read: {reason}"]) from None
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except ConfigError as exc:  # invalid YAML, already one line with line:column
        raise ScenarioError(exc.problems) from None


def _validate(adapter: TypeAdapter[_T], data: object, source: str) -> _T:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        problems = [_problem_line(source, _key_path(e["loc"], data), _reason(e)) for e in exc.errors()]
        raise ScenarioError(list(dict.fromkeys(problems))) from None  # dedupe, keeping document order


def _requests(
    source: str, entries: list[_Request], fallback: str | None, prefix: str | None
) -> list[RequestSpec]:
    """The entries as specs. Each needs a url (its own or ``fallback``), all to one host and port
    since the generator keeps one connection pool per run. ``prefix`` None: the top-level request."""
    problems, specs, first = [], [], None
    for i, e in enumerate(entries):
        url = e.url or fallback
        key = f"{prefix}[{i}].url" if prefix is not None and (e.url or not fallback) else "url"
        where = f"{source}: {key}"
        if url is None:
            problems.append(f"{where}: required" + (" (or a requests: list)" if prefix is None else ""))
            continue
        first = first or parse_url(url)[:2]
        if parse_url(url)[:2] != first:
            problems.append(f"{where}: not the host and port of the first request ({first[0]}:{first[1]})")
        specs.append(RequestSpec(url, e.method.upper(), list(e.headers.items()), e.body.encode(), e.weight))
    if problems:
        raise ScenarioError(problems)
    return specs


_Str = Annotated[str, Field(strict=True)]
_Url = Annotated[_Str, AfterValidator(lambda v: parse_url(v) and v)]  # parse_url raises or is truthy
_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_HeaderName = Annotated[_Str, AfterValidator(_check_header_name)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Request(_Model):
    url: _Url | None = None
    method: Annotated[_Str, AfterValidator(_check_method)] = "GET"
    headers: dict[_HeaderName, Annotated[_Str, AfterValidator(_check_header_value)]] = {}
    body: _Str = ""
    weight: Annotated[_Number, Field(gt=0)] = 1.0


class _Stage(_Model):
    duration: Annotated[Duration, Field(gt=0)]
    target: Annotated[_Number, Field(ge=0)]


class _Scenario(_Model):
    name: Annotated[_Str, Field(min_length=1)] | None = None
    url: _Url | None = None
    requests: Annotated[list[_Request], Field(min_length=1)] | None = None
    connections: Annotated[int, Field(strict=True, ge=1)] = 64
    stages: Annotated[list[_Stage], Field(min_length=1)]
    slo: Annotated[_Str, AfterValidator(lambda v: ",".join(o.text for o in parse_slo(v)))] | None = None


_SCENARIO = TypeAdapter(_Scenario)
_MIX: TypeAdapter[list[_Request]] = TypeAdapter(Annotated[list[_Request], Field(min_length=1)])
