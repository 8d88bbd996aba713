"""The load tester's data: what to send, the rate plan, and the result every report reads.

A run is a *plan* (target arrival rate as a function of time, or N connections for the closed
model) executed by one generator process per core; each process records latencies into the
gateway's own log-linear histograms (:mod:`pulsegate.metrics.histogram`), per second, and the
parent merges them by adding bucket counts. :class:`Result` is the merged outcome: the JSON report
is ``msgspec.json.encode(result)`` (schema documented in docs/loadtest.md), and the table and HTML
reports are rendered from it.

Example:
    >>> plan = Plan(kind="sustained", stages=[Stage(duration=10.0, start=100.0, end=100.0)])
    >>> plan.duration, plan.rate_at(5.0)
    (10.0, 100.0)
    >>> ramp = Plan(kind="run", stages=[Stage(10.0, 0.0, 100.0), Stage(5.0, 100.0, 100.0)])
    >>> ramp.rate_at(2.5), ramp.rate_at(12.0), ramp.planned_requests()
    (25.0, 100.0, 1000.0)
"""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["closed", "sustained", "spike", "stress", "run"]


class RequestSpec(msgspec.Struct, frozen=True):
    """One request shape; ``weight`` picks it from a mix in proportion."""

    url: str
    method: str = "GET"
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    weight: float = 1.0


class Stage(msgspec.Struct, frozen=True):
    """``duration`` seconds whose target rate moves linearly from ``start`` to ``end`` requests/s
    (equal for a hold), as k6's stages."""

    duration: float
    start: float
    end: float


class Plan(msgspec.Struct, frozen=True):
    """The arrival-rate shape of an open-model run (empty ``stages`` for the closed model)."""

    kind: Kind
    stages: list[Stage] = []
    #: Closed model: connections kept busy; open model: connections available to the generator.
    connections: int = 64
    #: Closed model only: how long to run.
    closed_duration: float = 0.0

    @property
    def duration(self) -> float:
        if self.kind == "closed":
            return self.closed_duration
        return sum(s.duration for s in self.stages)

    def rate_at(self, t: float) -> float:
        """Target requests/s at ``t`` seconds into the run (0 past the end)."""
        for s in self.stages:
            if t < s.duration:
                return s.start + (s.end - s.start) * (t / s.duration) if s.duration else s.end
            t -= s.duration
        return 0.0

    def planned_requests(self) -> float:
        """Requests the plan schedules in total (the integral of the rate)."""
        return sum((s.start + s.end) / 2 * s.duration for s in self.stages)

    def planned_between(self, a: float, b: float) -> float:
        """Requests the plan schedules in ``[a, b)`` seconds.

        >>> Plan(kind="run", stages=[Stage(10.0, 0.0, 100.0)]).planned_between(0.0, 5.0)
        125.0
        """
        return self._integral(b) - self._integral(a)

    def _integral(self, t: float) -> float:
        total = 0.0
        for s in self.stages:
            if t <= 0:
                break
            d = min(t, s.duration)
            rate_at_d = s.start + (s.end - s.start) * (d / s.duration) if s.duration else s.end
            total += (s.start + rate_at_d) / 2 * d
            t -= s.duration
        return total


class Second(msgspec.Struct):
    """One second of the run, as merged over generator processes."""

    t: int
    rate_target: float = 0.0
    #: Requests whose (intended) send time fell in this second, and how they ended.
    sent: int = 0
    ok: int = 0
    errors: int = 0
    #: Sends that left more than the lateness allowance after their intended time.
    late: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    #: Sparse log-linear histogram of latencies in microseconds (for merging and re-summarizing).
    hist: dict[int, int] = {}


class Latency(msgspec.Struct):
    p50: float = 0.0
    p90: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    max: float = 0.0
    mean: float = 0.0


class StressStep(msgspec.Struct):
    rate: float
    achieved: float
    p99_ms: float
    error_rate: float
    ok: bool


class Result(msgspec.Struct):
    """Everything a run measured; the JSON report is this struct."""

    scenario: Kind
    url: str
    duration_s: float
    requests: int
    ok: int
    #: Failures by kind: ``connect``, ``timeout``, ``reset``, ``status_5xx``, ``status_4xx``, ``protocol``.
    errors: dict[str, int]
    rate_target: float | None
    rate_achieved: float
    latency_ms: Latency
    timeline: list[Second]
    processes: int = 1
    connections: int = 0
    #: Open model: sends that could not go out on time (the generator fell behind), and sends
    #: never made because the plan outran the connections.
    late_sends: int = 0
    missed_sends: int = 0
    #: Spike: seconds after the spike ended until p99 was back within the baseline's.
    recovery_s: float | None = None
    #: Stress: the highest step rate that met the SLO, the rate where it broke, and every step.
    knee_rate: float | None = None
    broke_at: float | None = None
    steps: list[StressStep] = []
    #: SLO checks: ``{"p99<10ms": true, ...}``.
    slo: dict[str, bool] = {}
    interrupted: bool = False
    histogram: dict[int, int] = {}
