"""Service-level objectives for a load test: parse ``"p99<10ms,errors<0.1%"`` and check a result.

An SLO is comma-separated clauses ``<metric><op><value>``; whitespace between tokens is ignored and
metric names are case-insensitive. ``op`` is one of ``<``, ``<=``, ``>``, ``>=``.

- ``p50``, ``p90``, ``p99``, ``p999`` (also written ``p99.9``), ``max``, ``mean``: latency, a
  duration such as ``10ms``, ``1.5s`` or ``500us``. A bare number means *milliseconds* (unlike
  config durations, where it means seconds), since latency objectives are thought of in ms.
  :attr:`Objective.value` is in milliseconds.
- ``errors`` with ``%``: the share of failed requests among all requests; ``errors<0.1%`` has
  metric ``errors`` and value ``0.001`` (a fraction).
- ``errors`` with a whole number: the absolute count of failed requests; ``errors<5`` has metric
  ``error_count`` and value ``5.0``. A fraction without ``%`` is refused as ambiguous.
- ``rate``: achieved requests/s, as ``1900`` or ``1900/s``.

:attr:`Objective.text` is the clause normalised (lower-case metric, no spaces, ``ms`` added to a
bare latency), and keys the dict :func:`evaluate` returns.

Example:
    >>> objectives = parse_slo(" P99 < 10, errors<0.1% ,rate>=1900/s")
    >>> for o in objectives:
    ...     print(o.text, o.metric, o.op, o.value)
    p99<10ms p99 < 10.0
    errors<0.1% errors < 0.001
    rate>=1900/s rate >= 1900.0
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pulsegate.config.units import parse_duration
from pulsegate.loadtest.model import Result

__all__ = ["LATENCY_METRICS", "METRICS", "OPERATORS", "Objective", "evaluate", "parse_slo"]

LATENCY_METRICS: tuple[str, ...] = ("p50", "p90", "p99", "p999", "max", "mean")
#: Every ``Objective.metric``; ``error_count`` is what ``errors<N`` (no ``%``) parses to.
METRICS: tuple[str, ...] = (*LATENCY_METRICS, "errors", "error_count", "rate")
OPERATORS: tuple[str, ...] = ("<", "<=", ">", ">=")

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_WRITTEN_METRICS = (*LATENCY_METRICS, "errors", "rate")  # what a user may write
_ALIASES = {"p99.9": "p999"}
# Deliberately loose: a clause that splits into these three parts gets a specific complaint about
# the part that is wrong, rather than a generic "syntax error".
_CLAUSE_RE = re.compile(r"\s*([A-Za-z][\w.-]*)\s*([<>=!]*)\s*(.*?)\s*", re.DOTALL)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_COUNT_RE = re.compile(r"\d+")
_FORM = "expected <metric><op><value>, e.g. p99<10ms"


@dataclass(frozen=True, slots=True)
class Objective:
    """One clause: ``metric op value``; see the module docstring for the units of ``value``."""

    text: str
    metric: str
    op: str
    value: float


def parse_slo(text: str) -> list[Objective]:
    """Parse an SLO string into objectives, in the order written.

    Raises ``ValueError`` with a one-line message naming the offending clause.

    >>> [o.text for o in parse_slo("p99.9<=1.5s, MAX<2s, errors<5")]
    ['p999<=1.5s', 'max<2s', 'errors<5']
    >>> parse_slo("p99<>10")
    Traceback (most recent call last):
    ...
    ValueError: invalid SLO "p99<>10": unknown operator '<>' (use <, <=, > or >=)
    >>> parse_slo("errors<0.001")
    Traceback (most recent call last):
    ...
    ValueError: invalid SLO "errors<0.001": an error count must be a whole number (write a share as a \
percentage, e.g. errors<0.1%)
    """
    if not text.strip():
        raise ValueError(f"invalid SLO {_quote(text)}: no objectives")
    objectives: list[Objective] = []
    for clause in text.split(","):
        if not clause.strip():
            raise ValueError(f"invalid SLO {_quote(text)}: empty clause (stray comma?)")
        try:
            objective = _parse_clause(clause)
        except ValueError as exc:
            raise ValueError(f"invalid SLO {_quote(clause.strip())}: {exc}") from None
        if any(o.text == objective.text for o in objectives):
            raise ValueError(f"invalid SLO {_quote(clause.strip())}: duplicate objective")
        objectives.append(objective)
    return objectives


def evaluate(objectives: Sequence[Objective], result: Result) -> dict[str, bool]:
    """Whether ``result`` meets each objective, keyed by :attr:`Objective.text`.

    Latency comes from ``result.latency_ms``, the error share is ``sum(result.errors.values()) /
    result.requests``, the rate is ``result.rate_achieved``. A run that made no requests measured
    nothing, so it meets no latency or error objective (a ``rate`` objective is still checked).

    >>> from pulsegate.loadtest.model import Latency
    >>> result = Result(scenario="sustained", url="http://127.0.0.1/", duration_s=10.0, requests=2000,
    ...                 ok=1999, errors={"timeout": 1}, rate_target=200.0, rate_achieved=200.0,
    ...                 latency_ms=Latency(p99=12.5), timeline=[])
    >>> evaluate(parse_slo("p99<10ms,errors<0.1%,errors<2,rate>=200"), result)
    {'p99<10ms': False, 'errors<0.1%': True, 'errors<2': True, 'rate>=200': True}
    """
    failed = sum(result.errors.values())
    verdicts: dict[str, bool] = {}
    for objective in objectives:
        actual: float
        if objective.metric == "rate":
            actual = result.rate_achieved
        elif result.requests <= 0:
            verdicts[objective.text] = False
            continue
        elif objective.metric == "errors":
            actual = failed / result.requests
        elif objective.metric == "error_count":
            actual = float(failed)
        else:
            actual = float(getattr(result.latency_ms, objective.metric))
        verdicts[objective.text] = _COMPARE[objective.op](actual, objective.value)
    return verdicts


# --- internals ----------------------------------------------------------------------------------


def _parse_clause(clause: str) -> Objective:
    match = _CLAUSE_RE.fullmatch(clause)
    if match is None:
        raise ValueError(_FORM)
    written, op, raw = match.groups()
    metric = _ALIASES.get(written.lower(), written.lower())
    if metric not in _WRITTEN_METRICS:
        raise ValueError(f"unknown metric '{written}' (known: {', '.join(_WRITTEN_METRICS)})")
    if not op:
        raise ValueError(_FORM)
    if op not in OPERATORS:
        raise ValueError(f"unknown operator '{op}' (use <, <=, > or >=)")
    value = "".join(raw.split()).removeprefix("+")
    if not value:
        raise ValueError(f"missing a value after '{op}'")
    if metric in LATENCY_METRICS:
        if _NUMBER_RE.fullmatch(value):
            ms, value = _amount(value, "latency"), value + "ms"
        else:
            # Through the float's shortest repr so that "1.1ms" is 1.1, not 1.1000000000000001.
            ms = Decimal(repr(parse_duration(value))) * 1000
        return Objective(f"{metric}{op}{value}", metric, op, _finite(ms))
    if metric == "errors":
        if value.endswith("%"):
            percent = _amount(value[:-1], "error share")
            if percent > 100:
                raise ValueError(f"an error share must be at most 100%, got {value}")
            return Objective(f"errors{op}{value}", "errors", op, _finite(percent / 100))
        if not _COUNT_RE.fullmatch(value):
            _amount(value, "error count")  # a better message for "-1" or "x" than the one below
            raise ValueError(
                "an error count must be a whole number (write a share as a percentage, e.g. errors<0.1%)"
            )
        return Objective(f"errors{op}{value}", "error_count", op, _finite(Decimal(value)))
    number = value.removesuffix("/s")
    return Objective(f"rate{op}{value}", "rate", op, _finite(_amount(number, "rate")))


def _amount(text: str, what: str) -> Decimal:
    if not _NUMBER_RE.fullmatch(text):
        raise ValueError(f"invalid {what} '{text}': expected a number")
    amount = Decimal(text)
    if amount < 0:
        raise ValueError(f"invalid {what} '{text}': must not be negative")
    return amount


def _finite(amount: Decimal) -> float:
    value = float(amount)
    if not math.isfinite(value):
        raise ValueError("value is too large")
    return value


def _quote(text: str) -> str:
    # JSON quoting escapes newlines and other control characters: the message stays one line.
    return json.dumps(text, ensure_ascii=False)
