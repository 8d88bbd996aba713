"""SLO strings: every accepted form, every rejection (exact messages), and evaluation against a result."""

from __future__ import annotations

import doctest

import pytest

from pulsegate.loadtest import slo as slo_module
from pulsegate.loadtest.model import Latency, Result
from pulsegate.loadtest.slo import Objective, evaluate, parse_slo

# --- parsing: accepted ----------------------------------------------------------------------------

ACCEPTED: list[tuple[str, list[Objective]]] = [
    ("p99<10ms", [Objective("p99<10ms", "p99", "<", 10.0)]),
    ("p50<=1.5s", [Objective("p50<=1.5s", "p50", "<=", 1500.0)]),
    ("p90<500us", [Objective("p90<500us", "p90", "<", 0.5)]),
    ("p999<1m", [Objective("p999<1m", "p999", "<", 60000.0)]),
    ("p99.9<20ms", [Objective("p999<20ms", "p999", "<", 20.0)]),
    ("max<2s", [Objective("max<2s", "max", "<", 2000.0)]),
    ("mean>=0.1ms", [Objective("mean>=0.1ms", "mean", ">=", 0.1)]),
    ("p99<1.1ms", [Objective("p99<1.1ms", "p99", "<", 1.1)]),  # exact, not 1.1000000000000001
    # A bare latency is milliseconds, and the normalised text says so.
    ("p99<10", [Objective("p99<10ms", "p99", "<", 10.0)]),
    ("p99<0.25", [Objective("p99<0.25ms", "p99", "<", 0.25)]),
    ("p99<+5", [Objective("p99<5ms", "p99", "<", 5.0)]),
    ("p99<0", [Objective("p99<0ms", "p99", "<", 0.0)]),
    # Whitespace anywhere between tokens, and case-insensitive metric names.
    ("  P99  <  10 ms  ", [Objective("p99<10ms", "p99", "<", 10.0)]),
    ("MAX>1s", [Objective("max>1s", "max", ">", 1000.0)]),
    ("P99.9 <= 3ms", [Objective("p999<=3ms", "p999", "<=", 3.0)]),
    ("p99\t<\t10ms", [Objective("p99<10ms", "p99", "<", 10.0)]),
    # errors: a percentage is a share (a fraction), a whole number a count.
    ("errors<0.1%", [Objective("errors<0.1%", "errors", "<", 0.001)]),
    ("errors<=1%", [Objective("errors<=1%", "errors", "<=", 0.01)]),
    ("errors<100%", [Objective("errors<100%", "errors", "<", 1.0)]),
    ("errors<0%", [Objective("errors<0%", "errors", "<", 0.0)]),
    ("Errors < 0.5 %", [Objective("errors<0.5%", "errors", "<", 0.005)]),
    ("errors<5", [Objective("errors<5", "error_count", "<", 5.0)]),
    ("errors<=0", [Objective("errors<=0", "error_count", "<=", 0.0)]),
    # rate: achieved requests/s.
    ("rate>1900", [Objective("rate>1900", "rate", ">", 1900.0)]),
    ("rate>=1900/s", [Objective("rate>=1900/s", "rate", ">=", 1900.0)]),
    ("RATE > 99.5", [Objective("rate>99.5", "rate", ">", 99.5)]),
    (
        "p99<10ms,errors<0.1%",
        [Objective("p99<10ms", "p99", "<", 10.0), Objective("errors<0.1%", "errors", "<", 0.001)],
    ),
    (
        " p50 < 1ms , p99<5ms ,rate>10 ",
        [
            Objective("p50<1ms", "p50", "<", 1.0),
            Objective("p99<5ms", "p99", "<", 5.0),
            Objective("rate>10", "rate", ">", 10.0),
        ],
    ),
    # Same metric, different bounds: both kept (a band).
    ("p99<10ms,p99>1ms", [Objective("p99<10ms", "p99", "<", 10.0), Objective("p99>1ms", "p99", ">", 1.0)]),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_parse_accepts(text: str, expected: list[Objective]) -> None:
    assert parse_slo(text) == expected


def test_normalised_text_parses_back_to_the_same_objectives() -> None:
    for text, expected in ACCEPTED:
        assert parse_slo(",".join(o.text for o in expected)) == expected, text


# --- parsing: rejected ----------------------------------------------------------------------------

_KNOWN = "p50, p90, p99, p999, max, mean, errors, rate"
_DURATION = "expected a number with unit us, ms, s, m, h or d"
_COUNT = "an error count must be a whole number (write a share as a percentage, e.g. errors<0.1%)"

REJECTED: list[tuple[str, str]] = [
    ("", 'invalid SLO "": no objectives'),
    ("   ", 'invalid SLO "   ": no objectives'),
    ("p99<10ms,", 'invalid SLO "p99<10ms,": empty clause (stray comma?)'),
    (",p99<10ms", 'invalid SLO ",p99<10ms": empty clause (stray comma?)'),
    ("p99<10ms,,errors<1%", 'invalid SLO "p99<10ms,,errors<1%": empty clause (stray comma?)'),
    ("p99<>10", "invalid SLO \"p99<>10\": unknown operator '<>' (use <, <=, > or >=)"),
    ("p99=10", "invalid SLO \"p99=10\": unknown operator '=' (use <, <=, > or >=)"),
    ("p99==10", "invalid SLO \"p99==10\": unknown operator '==' (use <, <=, > or >=)"),
    ("p99!=10", "invalid SLO \"p99!=10\": unknown operator '!=' (use <, <=, > or >=)"),
    ("p99=<10", "invalid SLO \"p99=<10\": unknown operator '=<' (use <, <=, > or >=)"),
    ("p99 10ms", 'invalid SLO "p99 10ms": expected <metric><op><value>, e.g. p99<10ms'),
    ("p99", 'invalid SLO "p99": expected <metric><op><value>, e.g. p99<10ms'),
    ("<10ms", 'invalid SLO "<10ms": expected <metric><op><value>, e.g. p99<10ms'),
    ("99<10ms", 'invalid SLO "99<10ms": expected <metric><op><value>, e.g. p99<10ms'),
    ("p99<", "invalid SLO \"p99<\": missing a value after '<'"),
    ("p99 <=  ", "invalid SLO \"p99 <=\": missing a value after '<='"),
    ("p95<10ms", f"invalid SLO \"p95<10ms\": unknown metric 'p95' (known: {_KNOWN})"),
    ("latency<10ms", f"invalid SLO \"latency<10ms\": unknown metric 'latency' (known: {_KNOWN})"),
    ("error_count<5", f"invalid SLO \"error_count<5\": unknown metric 'error_count' (known: {_KNOWN})"),
    ("p99<10xs", f"invalid SLO \"p99<10xs\": invalid duration '10xs': {_DURATION}"),
    ("p99<fast", f"invalid SLO \"p99<fast\": invalid duration 'fast': {_DURATION}"),
    ("p99<10MS", f"invalid SLO \"p99<10MS\": invalid duration '10MS': {_DURATION}"),
    ("p99<-1", "invalid SLO \"p99<-1\": invalid latency '-1': must not be negative"),
    ("p99<-1ms", "invalid SLO \"p99<-1ms\": invalid duration '-1ms': must not be negative"),
    ("p99<" + "9" * 400, f'invalid SLO "p99<{"9" * 400}": value is too large'),
    ("errors<0.001", f'invalid SLO "errors<0.001": {_COUNT}'),
    ("errors<1.0", f'invalid SLO "errors<1.0": {_COUNT}'),
    ("errors<-1", "invalid SLO \"errors<-1\": invalid error count '-1': must not be negative"),
    ("errors<x", "invalid SLO \"errors<x\": invalid error count 'x': expected a number"),
    ("errors<1e3", "invalid SLO \"errors<1e3\": invalid error count '1e3': expected a number"),
    ("errors<101%", 'invalid SLO "errors<101%": an error share must be at most 100%, got 101%'),
    ("errors<-1%", "invalid SLO \"errors<-1%\": invalid error share '-1': must not be negative"),
    ("errors<%", "invalid SLO \"errors<%\": invalid error share '': expected a number"),
    ("errors<1%%", "invalid SLO \"errors<1%%\": invalid error share '1%': expected a number"),
    ("rate>fast", "invalid SLO \"rate>fast\": invalid rate 'fast': expected a number"),
    ("rate>-5", "invalid SLO \"rate>-5\": invalid rate '-5': must not be negative"),
    ("rate>5rps", "invalid SLO \"rate>5rps\": invalid rate '5rps': expected a number"),
    ("p99<10ms,P99 < 10 ms", 'invalid SLO "P99 < 10 ms": duplicate objective'),
    ("p99<10,p99<10ms", 'invalid SLO "p99<10ms": duplicate objective'),
    # The offending clause is quoted on its own; control characters are escaped.
    ("p99<10ms, p95<1ms", f"invalid SLO \"p95<1ms\": unknown metric 'p95' (known: {_KNOWN})"),
    ("p99<\x0010ms", f"invalid SLO \"p99<\\u000010ms\": invalid duration '\x0010ms': {_DURATION}"),
]


@pytest.mark.parametrize(("text", "message"), REJECTED, ids=[repr(t)[:40] for t, _ in REJECTED])
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_slo(text)
    assert str(info.value) == message


def test_rejections_are_one_line() -> None:
    for text in ("p99<10ms\n,\n", "p99\n<>10", "p95\r<1", "\n"):
        with pytest.raises(ValueError) as info:
            parse_slo(text)
        assert "\n" not in str(info.value) and "\r" not in str(info.value)


# --- evaluation -----------------------------------------------------------------------------------


def _result(
    requests: int = 1000,
    errors: dict[str, int] | None = None,
    rate: float = 100.0,
    latency: Latency | None = None,
) -> Result:
    errors = {} if errors is None else errors
    return Result(
        scenario="sustained",
        url="http://127.0.0.1:8080/",
        duration_s=10.0,
        requests=requests,
        ok=requests - sum(errors.values()),
        errors=errors,
        rate_target=100.0,
        rate_achieved=rate,
        latency_ms=latency or Latency(p50=1.0, p90=4.0, p99=9.0, p999=20.0, max=50.0, mean=2.0),
        timeline=[],
    )


EVALUATED: list[tuple[str, Result, dict[str, bool]]] = [
    ("p99<10ms", _result(), {"p99<10ms": True}),
    ("p99<9ms", _result(), {"p99<9ms": False}),  # strict bound: 9.0 is not < 9
    ("p99<=9ms", _result(), {"p99<=9ms": True}),
    ("p99>9ms", _result(), {"p99>9ms": False}),
    ("p99>=9ms", _result(), {"p99>=9ms": True}),
    (
        "p50<1.5,p90<5,p999<20ms,max<0.05s,mean<2ms",
        _result(),
        {"p50<1.5ms": True, "p90<5ms": True, "p999<20ms": False, "max<0.05s": False, "mean<2ms": False},
    ),
    ("p999<=20ms", _result(), {"p999<=20ms": True}),
    # Error share: failures of every kind over all requests.
    ("errors<0.1%", _result(errors={"timeout": 1}), {"errors<0.1%": False}),  # 0.001 is not < 0.001
    ("errors<=0.1%", _result(errors={"timeout": 1}), {"errors<=0.1%": True}),
    ("errors<1%", _result(errors={"timeout": 5, "status_5xx": 6}), {"errors<1%": False}),
    ("errors<2%", _result(errors={"timeout": 5, "status_5xx": 6}), {"errors<2%": True}),
    ("errors<0.1%", _result(), {"errors<0.1%": True}),
    # Error count.
    ("errors<5", _result(errors={"connect": 2, "reset": 2}), {"errors<5": True}),
    ("errors<5", _result(errors={"connect": 3, "reset": 2}), {"errors<5": False}),
    ("errors<=0", _result(), {"errors<=0": True}),
    # Achieved rate.
    ("rate>=100", _result(rate=100.0), {"rate>=100": True}),
    ("rate>100/s", _result(rate=100.0), {"rate>100/s": False}),
    ("rate<50", _result(rate=49.9), {"rate<50": True}),
    # A run that made no requests meets no latency or error objective; rate is still checked.
    (
        "p99<10ms,errors<1%,errors<5,rate<1,rate>1",
        _result(requests=0, rate=0.0, latency=Latency()),
        {"p99<10ms": False, "errors<1%": False, "errors<5": False, "rate<1": True, "rate>1": False},
    ),
]


@pytest.mark.parametrize(("text", "result", "expected"), EVALUATED, ids=[t for t, _, _ in EVALUATED])
def test_evaluate(text: str, result: Result, expected: dict[str, bool]) -> None:
    verdicts = evaluate(parse_slo(text), result)
    assert verdicts == expected
    assert list(verdicts) == list(expected)  # in the order written, keyed by the normalised text


def test_evaluate_nothing() -> None:
    assert evaluate([], _result()) == {}


def test_metrics_cover_every_latency_field() -> None:
    assert set(slo_module.LATENCY_METRICS) == set(Latency.__struct_fields__)


# --- docstring examples ---------------------------------------------------------------------------


def test_docstring_examples() -> None:
    result = doctest.testmod(slo_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
