"""Circuit breaking per upstream (Envoy's ``circuit_breakers`` thresholds): bounds on connections,
pending requests and requests in flight. Past a bound the gateway answers 503 with ``Retry-After``
at once instead of queueing work the upstream cannot take.

The counts are summed over the upstream's target pools when needed rather than maintained on every
request, so an upstream without limits pays nothing. With N workers each enforces ``ceil(limit / N)``:
the whole gateway then stays within ``limit + N - 1``.

Example:
    >>> from pulsegate.config.resilience import CircuitBreakerConfig
    >>> b = Breaker(CircuitBreakerConfig(max_in_flight=10), workers=4)
    >>> b.max_in_flight, b.max_pending, b.retry_after
    (3, None, b'1')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from pulsegate.config.resilience import CircuitBreakerConfig

if TYPE_CHECKING:
    from pulsegate.proxy.pool import TargetPool


def _share(limit: int | None, workers: int) -> int | None:
    return None if limit is None else max(1, math.ceil(limit / workers)) if limit else 0


class Breaker:
    """The thresholds of one upstream in one worker, and the pools they apply to."""

    __slots__ = ("max_connections", "max_in_flight", "max_pending", "on_trip", "pools", "retry_after")

    def __init__(self, cfg: CircuitBreakerConfig, workers: int = 1) -> None:
        self.max_connections = _share(cfg.max_connections, workers)
        self.max_pending = _share(cfg.max_pending, workers)
        self.max_in_flight = _share(cfg.max_in_flight, workers)
        self.retry_after = b"%d" % max(1, math.ceil(cfg.retry_after))
        self.pools: list[TargetPool] = []
        #: Hears each trip, by kind: "connections", "pending" or "in_flight" (for metrics).
        self.on_trip: Callable[[str], None] | None = None

    def trip(self, kind: str) -> None:
        if self.on_trip is not None:
            self.on_trip(kind)

    def in_flight(self) -> int:
        return sum(p.target.inflight for p in self.pools)

    def pending(self) -> int:
        return sum(len(p.waiters) for p in self.pools)

    def connections(self) -> int:
        return sum(p.busy + len(p.idle) for p in self.pools)

    def may_connect(self) -> bool:
        """Whether one more connection fits under ``max_connections``."""
        return self.max_connections is None or self.connections() < self.max_connections

    def starved(self) -> bool:
        """Requests wait for a connection slot (``max_connections`` reached): a released connection
        should close and make room rather than sit idle."""
        return self.max_connections is not None and self.pending() > 0

    def reclaim_idle(self, wanted_by: TargetPool) -> bool:
        """At ``max_connections``, close the coldest idle connection of another target so
        ``wanted_by`` can open one: an idle connection must not starve a waiting request."""
        for pool in self.pools:
            if pool is not wanted_by and pool.idle:
                pool.drop_coldest()
                return True
        return False

    def kick(self) -> None:
        """A connection went away: let waiters held back by ``max_connections`` open one."""
        for pool in self.pools:
            if pool.waiters and not self.may_connect():
                return
            pool.kick()
