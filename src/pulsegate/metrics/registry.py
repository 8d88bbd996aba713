"""A worker's instruments and the per-interval snapshot taken from them.

Stats objects are keyed by configured names (route name, ``upstream/address``) and survive config
reloads: a reload that keeps a route keeps counting into the same object, one that drops it lets
the object go once its last deltas were taken.

Example:
    >>> reg = Registry()
    >>> reg.route("api").finish(200, 0, 10, 500, 400)
    >>> snap = reg.take(worker=1, pid=1, time=0.0, interval=1.0, process=ProcessSample())
    >>> snap.routes["api"].requests, reg.route("api").requests
    (1, 0)
"""

from __future__ import annotations

from collections.abc import Iterable

from pulsegate.metrics.snapshot import ProcessSample, RouteSample, Snapshot, TargetSample
from pulsegate.metrics.stats import STATUS_SLOTS, UNROUTED, GatewayStats, RouteStats, TargetStats


class Registry:
    """All instruments of one worker process."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteStats] = {}
        self.targets: dict[str, TargetStats] = {}
        self.gateway = GatewayStats()
        self.unrouted = self.route(UNROUTED)
        #: Names the current config uses; others are dropped once idle.
        self._live_routes: set[str] = {UNROUTED}
        self._live_targets: set[str] = set()
        #: Rare events (retries, ejections, breaker trips, rate-limited requests, ...): counts keyed
        #: ``family<TAB>label...``; :data:`pulsegate.metrics.exposition.EVENT_FAMILIES` names them.
        self.events: dict[str, int] = {}

    def count(self, family: str, *labels: str) -> None:
        """Count one event (not for the per-request success path: it builds a key string)."""
        key = "\t".join((family, *labels))
        self.events[key] = self.events.get(key, 0) + 1

    def route(self, name: str) -> RouteStats:
        stats = self.routes.get(name)
        if stats is None:
            stats = self.routes[name] = RouteStats(name)
        return stats

    def target(self, upstream: str, address: str) -> TargetStats:
        key = f"{upstream}/{address}"
        stats = self.targets.get(key)
        if stats is None:
            stats = self.targets[key] = TargetStats(upstream, address)
        return stats

    def set_live(self, routes: Iterable[str], targets: Iterable[tuple[str, str]]) -> None:
        """Tell the registry which names the current config uses (after a reload)."""
        self._live_routes = {UNROUTED, *routes}
        self._live_targets = {f"{u}/{a}" for u, a in targets}

    def take(
        self,
        *,
        worker: int,
        pid: int,
        time: float,
        interval: float,
        process: ProcessSample,
        pools: dict[str, tuple[int, int, int]] | None = None,
    ) -> Snapshot:
        """Deltas since the last take (counters reset to zero), gauges as they are now.

        ``pools`` maps ``upstream/address`` to (in-flight, idle, active) connection gauges.
        """
        pools = pools or {}
        process.accepted, self.gateway.accepted = self.gateway.accepted, 0
        routes: dict[str, RouteSample] = {}
        for name, rs in list(self.routes.items()):
            sample = RouteSample(
                requests=rs.requests,
                status=rs.status,
                bytes_in=rs.bytes_in,
                bytes_out=rs.bytes_out,
                in_flight=rs.in_flight,
                total=rs.total.take(),
                upstream=rs.upstream.take(),
                overhead=rs.overhead.take(),
            )
            rs.requests = rs.bytes_in = rs.bytes_out = 0
            rs.status = [0] * STATUS_SLOTS
            if sample.requests or sample.in_flight or name in self._live_routes:
                routes[name] = sample
            else:
                del self.routes[name]  # dropped by a reload and finished
        targets: dict[str, TargetSample] = {}
        for key, ts in list(self.targets.items()):
            in_flight, idle, active = pools.get(key, (0, 0, 0))
            tsample = TargetSample(
                upstream=ts.upstream,
                address=ts.address,
                requests=ts.requests,
                status=ts.status,
                bytes_in=ts.bytes_in,
                bytes_out=ts.bytes_out,
                connect_failures=ts.connect_failures,
                timeouts=ts.timeouts,
                in_flight=in_flight,
                pool_idle=idle,
                pool_active=active,
            )
            ts.requests = ts.bytes_in = ts.bytes_out = ts.connect_failures = ts.timeouts = 0
            ts.status = [0] * STATUS_SLOTS
            busy = tsample.requests or tsample.connect_failures or tsample.timeouts or in_flight or active
            if busy or key in self._live_targets:
                targets[key] = tsample
            else:
                del self.targets[key]
        events, self.events = self.events, {}
        return Snapshot(
            worker=worker,
            events=events,
            pid=pid,
            time=time,
            interval=interval,
            process=process,
            routes=routes,
            targets=targets,
        )
