"""Config sections that keep traffic flowing when things fail: active health checks, passive outlier
ejection, retries with a budget, circuit breaking (per upstream) and rate limits (per route).

Example:
    >>> h = HealthConfig.model_validate({"path": "/healthz", "expect_status": "2xx"})
    >>> h.interval, h.timeout, h.expect_status, h.rise, h.fall
    (5.0, 1.0, (200, 299), 2, 3)
    >>> RetriesConfig().attempts, RetriesConfig().budget
    (3, 0.2)
    >>> RateLimitConfig.model_validate({"rate": "6000/m"}).rate, RateLimitConfig.model_validate(
    ...     {"rate": "100/s"}).burst
    (100.0, 100)
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Self

from pydantic import AfterValidator, BeforeValidator, Field, field_serializer, model_validator

from pulsegate.config.sections import Section
from pulsegate.config.units import Duration
from pulsegate.health.checker import parse_expect
from pulsegate.health.ratelimit import parse_rate

__all__ = [
    "CircuitBreakerConfig",
    "HealthConfig",
    "OutlierConfig",
    "RateLimitConfig",
    "RetriesConfig",
    "parse_percent",
]

Count = Annotated[int, Field(strict=True)]
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_percent(value: object) -> float:
    """``"20%"`` or a fraction (``0.2``) as a fraction in [0, 1].

    >>> parse_percent("20%"), parse_percent(0.5), parse_percent("100%")
    (0.2, 0.5, 1.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like '20%', got '{value}'")
    if isinstance(value, str):
        text = value.strip()
        if not text.endswith("%"):
            raise ValueError(f"expected a percentage like '20%' or a fraction like 0.2, got '{value}'")
        try:
            fraction = float(text[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected a percentage like '20%', got '{value}'") from None
    elif isinstance(value, int | float):
        fraction = float(value)
    else:
        raise ValueError(f"expected a percentage like '20%', got '{value}'")
    if not (0.0 <= fraction <= 1.0) or math.isnan(fraction):
        raise ValueError(f"must be between 0% and 100%, got '{value}'")
    return fraction


def _expect_input(value: object) -> object:
    return parse_expect(value)  # type: ignore[arg-type]  # parse_expect rejects other types itself


def _rate_input(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"expected a rate like '100/s', got '{value}'")
    rate = parse_rate(value)  # type: ignore[arg-type]  # parse_rate rejects other types itself
    if rate <= 0:
        raise ValueError(f"rate must be positive, got '{value}'")
    return rate


def _check_key(value: str) -> str:
    if value in ("client_ip", "route"):
        return value
    kind, sep, name = value.partition(":")
    if kind == "header" and sep and _TOKEN_RE.fullmatch(name):
        return f"header:{name.lower()}"
    raise ValueError(f"invalid key '{value}': expected client_ip, route or header:NAME")


Percent = Annotated[float, BeforeValidator(parse_percent)]


def _below_100(value: float) -> float:
    if value >= 1.0:
        raise ValueError("must be below 100%")
    return value


class HealthConfig(Section):
    """Active HTTP checks of every target of an upstream (off unless the section is present).

    A target turns unhealthy after ``fall`` failed checks in a row and healthy again after ``rise``
    passing ones; each wait is ``interval`` +/- ``jitter`` so checks of many targets spread out.
    """

    #: Visible ASCII only: it goes on the request line as is.
    path: Annotated[str, Field(strict=True, pattern=r"^/[\x21-\x7e]*$")] = "/healthz"
    interval: Annotated[Duration, Field(gt=0)] = 5.0
    timeout: Annotated[Duration, Field(gt=0)] = 1.0
    #: ``200``, ``"200-399"``, ``"2xx"`` or a list of statuses.
    expect_status: Annotated[frozenset[int] | tuple[int, int], BeforeValidator(_expect_input)] = (200, 399)
    rise: Annotated[Count, Field(ge=1)] = 2
    fall: Annotated[Count, Field(ge=1)] = 3
    #: Below 100 %: a wait of zero would probe back to back.
    jitter: Annotated[Percent, AfterValidator(_below_100)] = 0.1
    #: Host header of the check; the target address when unset.
    host: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")] | None = None

    @field_serializer("expect_status")
    def _show_expect(self, value: frozenset[int] | tuple[int, int]) -> str | list[int]:
        # Dumped config is parsed again by workers: a range must not come back as a 2-status set.
        return f"{value[0]}-{value[1]}" if isinstance(value, tuple) else sorted(value)


class OutlierConfig(Section):
    """Passive ejection: targets failing live traffic leave the rotation for a while.

    ``consecutive_failures`` counts connect failures, resets and timeouts; ``consecutive_5xx``
    counts 5xx answers (either set to 0 turns that detector off). The n-th ejection in a row lasts
    ``n * base_ejection_time`` up to ``max_ejection_time``; at most ``max_ejected_percent`` of an
    upstream's targets (but always at least one) are ejected at once.
    """

    enabled: Annotated[bool, Field(strict=True)] = True
    consecutive_5xx: Annotated[Count, Field(ge=0)] = 5
    consecutive_failures: Annotated[Count, Field(ge=0)] = 5
    base_ejection_time: Annotated[Duration, Field(gt=0)] = 30.0
    max_ejection_time: Annotated[Duration, Field(gt=0)] = 300.0
    max_ejected_percent: Percent = 0.5

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        if data is False:  # `outlier: off`
            return {"enabled": False}
        # The key says percent: `max_ejected_percent: 50` is 50 % (and 1 is 1 %).
        if isinstance(data, dict):
            v = data.get("max_ejected_percent")
            if isinstance(v, int | float) and not isinstance(v, bool):
                return {**data, "max_ejected_percent": f"{v}%"}
        return data

    @field_serializer("max_ejected_percent")
    def _show_percent(self, value: float) -> str:
        return f"{value * 100:.15g}%"


class RetriesConfig(Section):
    """Retries on another target. Connect failures are retried for any method (nothing was sent);
    resets, per-try timeouts and 502/503/504 answers only for idempotent methods.

    ``attempts`` counts the first try (1 = no retries). ``budget`` caps retries at that share of
    requests (over a 10 s window) plus ``min_per_second``, so a failing upstream cannot cause a
    retry storm.
    """

    attempts: Annotated[Count, Field(ge=1, le=10)] = 3
    #: Time allowed for each attempt's response head; unset: the upstream's read timeout.
    per_try_timeout: Annotated[Duration, Field(gt=0)] | None = None
    budget: Percent = 0.2
    min_per_second: Annotated[float, Field(ge=0)] = 3.0


class CircuitBreakerConfig(Section):
    """Upstream-wide limits; beyond them the gateway answers 503 with ``Retry-After`` at once.

    ``max_connections``: connections to the upstream's targets (a request needing a new connection
    beyond it waits as pending); ``max_pending``: requests waiting for a connection;
    ``max_in_flight``: requests being served. With N workers each enforces ``ceil(limit / N)``.
    """

    max_connections: Annotated[Count, Field(ge=1)] | None = None
    max_pending: Annotated[Count, Field(ge=0)] | None = None
    max_in_flight: Annotated[Count, Field(ge=1)] | None = None
    retry_after: Annotated[Duration, Field(gt=0)] = 1.0


class RateLimitConfig(Section):
    """A token bucket per key on one route: ``rate`` tokens per second, up to ``burst`` stored.

    ``key``: ``client_ip`` (default), ``route`` (one bucket for the route) or ``header:NAME``
    (requests without the header share one bucket). The limit holds for the whole gateway, across
    workers.
    """

    #: Bounded so state and headers stay plain 64-bit numbers.
    rate: Annotated[float, BeforeValidator(_rate_input), Field(le=1e9)]
    burst: Annotated[Count, Field(ge=1, le=10**12)] | None = None
    key: Annotated[str, Field(strict=True), AfterValidator(_check_key)] = "client_ip"

    @model_validator(mode="after")
    def _default_burst(self) -> Self:
        if self.burst is None:
            # One second's worth, and at least one request.
            object.__setattr__(self, "burst", max(1, math.ceil(self.rate)))
        return self
