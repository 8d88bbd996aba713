"""The instruments the data path records into: plain integer fields and histograms.

One :class:`RouteStats` per configured route and one :class:`TargetStats` per upstream target,
owned by the worker's :class:`~pulsegate.metrics.registry.Registry` and kept across config reloads
(keyed by name, so cardinality comes from the config, never from request paths). Recording is
attribute arithmetic and one bucket increment per latency; the registry takes per-interval deltas.

Example:
    >>> r = RouteStats("api")
    >>> r.finish(200, 100, 2048, 350, 300)
    >>> r.requests, r.status[2], r.bytes_out, r.total.count
    (1, 1, 2048, 1)
"""

from __future__ import annotations

from typing import Final

from pulsegate.metrics.histogram import Histogram

#: ``status[i]`` counts responses with ``status // 100 == i`` (index 0 unused: the class is the index).
STATUS_SLOTS: Final = 6
#: The route name for requests that matched no route (404) or never parsed (400s).
UNROUTED: Final = "(none)"


def status_slot(status: int) -> int:
    """The ``status`` list index for an HTTP status (clamped into 1..5).

    >>> status_slot(204), status_slot(499), status_slot(99), status_slot(600)
    (2, 4, 1, 5)
    """
    slot = status // 100
    if slot < 1:
        return 1
    if slot > 5:
        return 5
    return slot


class RouteStats:
    """Counters and latency histograms of one route (or of unrouted requests)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0
        self.status = [0] * STATUS_SLOTS
        self.bytes_in = 0
        self.bytes_out = 0
        #: Gauge: exchanges started and not finished.
        self.in_flight = 0
        #: Microseconds from request head to response end, upstream attempt(s), and the difference.
        self.total = Histogram()
        self.upstream = Histogram()
        self.overhead = Histogram()

    def finish(self, status: int, bytes_in: int, bytes_out: int, total_us: int, upstream_us: int) -> None:
        """Count one finished exchange (``upstream_us`` 0 when no upstream answered)."""
        self.requests += 1
        self.status[status_slot(status)] += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.total.record(total_us)
        if upstream_us:
            self.upstream.record(upstream_us)
            self.overhead.record(total_us - upstream_us if total_us > upstream_us else 0)
        else:
            self.overhead.record(total_us)


class TargetStats:
    """Counters of one upstream target (its in-flight gauge is ``Target.inflight``)."""

    def __init__(self, upstream: str, address: str) -> None:
        self.upstream = upstream
        self.address = address
        self.requests = 0
        self.status = [0] * STATUS_SLOTS
        self.bytes_in = 0
        self.bytes_out = 0
        self.connect_failures = 0
        self.timeouts = 0

    def response(self, status: int, bytes_in: int, bytes_out: int) -> None:
        """One response received from the target: request body bytes sent to it, response bytes
        relayed from it."""
        self.requests += 1
        self.status[status_slot(status)] += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out


class GatewayStats:
    """Per-process totals that belong to no route: connections."""

    def __init__(self) -> None:
        self.accepted = 0
