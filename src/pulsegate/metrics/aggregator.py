"""The supervisor's metrics aggregator: merges worker snapshots into running totals and 1 s points.

Counters only ever grow here (worker deltas are added), so a worker that is replaced never makes a
Prometheus counter go backwards. Gauges (in-flight, connections, pools, RSS) are the sum of the
latest value each live worker reported; a worker that exits stops contributing.

Example:
    >>> from pulsegate.metrics.snapshot import ProcessSample, RouteSample, Snapshot
    >>> agg = Aggregator()
    >>> snap = Snapshot(worker=1, pid=9, time=100.2, interval=1.0, process=ProcessSample(),
    ...                 routes={"api": RouteSample(requests=3, total={10: 3})})
    >>> agg.add(snap)
    >>> agg.routes["api"].requests, agg.close_point(101.0).routes["api"].requests
    (3, 3)
"""

from __future__ import annotations

import msgspec

from pulsegate.metrics.histogram import merge_into
from pulsegate.metrics.snapshot import ProcessSample, RouteSample, Snapshot, TargetSample


class WorkerSample(msgspec.Struct):
    """One worker in a point: its requests and process figures over that second."""

    pid: int
    requests: int = 0
    process: ProcessSample = msgspec.field(default_factory=ProcessSample)


class Point(msgspec.Struct):
    """Merged deltas of all workers over ``[time, time + interval)``; gauges summed."""

    time: float
    interval: float
    routes: dict[str, RouteSample] = msgspec.field(default_factory=dict)
    targets: dict[str, TargetSample] = msgspec.field(default_factory=dict)
    workers: dict[int, WorkerSample] = msgspec.field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.routes.values())


def add_route(dst: RouteSample, src: RouteSample) -> None:
    """Add ``src``'s counters and histograms into ``dst``; gauges are left to the caller, since
    what a gauge of several samples means (latest, or sum over workers) depends on the view."""
    dst.requests += src.requests
    dst.status = [a + b for a, b in zip(dst.status, src.status, strict=True)]
    dst.bytes_in += src.bytes_in
    dst.bytes_out += src.bytes_out
    merge_into(dst.total, src.total)
    merge_into(dst.upstream, src.upstream)
    merge_into(dst.overhead, src.overhead)


def add_target(dst: TargetSample, src: TargetSample) -> None:
    """Add ``src``'s counters into ``dst``; gauges are left to the caller (see add_route)."""
    dst.requests += src.requests
    dst.status = [a + b for a, b in zip(dst.status, src.status, strict=True)]
    dst.bytes_in += src.bytes_in
    dst.bytes_out += src.bytes_out
    dst.connect_failures += src.connect_failures
    dst.timeouts += src.timeouts


def add_process(dst: ProcessSample, src: ProcessSample) -> None:
    """Fold a later interval of the same worker into ``dst``: deltas add, gauges take the latest."""
    dst.connections = src.connections
    dst.tunnels = src.tunnels
    dst.rss_bytes = src.rss_bytes
    dst.cpu_seconds = src.cpu_seconds
    dst.accepted += src.accepted
    dst.loop_lag_max = max(dst.loop_lag_max, src.loop_lag_max)
    dst.loop_lag_mean = max(dst.loop_lag_mean, src.loop_lag_mean)
    dst.gc_collections = [a + b for a, b in zip(dst.gc_collections, src.gc_collections, strict=True)]
    dst.gc_pause_seconds += src.gc_pause_seconds
    dst.gc_pause_max = max(dst.gc_pause_max, src.gc_pause_max)


def merge_points(points: list[Point]) -> Point:
    """One point covering ``points`` (in time order): deltas add, gauges are the last point's.

    >>> a = Point(time=0.0, interval=1.0, routes={"r": RouteSample(requests=1, in_flight=4)})
    >>> b = Point(time=1.0, interval=1.0, routes={"r": RouteSample(requests=2, in_flight=1)})
    >>> m = merge_points([a, b])
    >>> m.time, m.interval, m.routes["r"].requests, m.routes["r"].in_flight
    (0.0, 2.0, 3, 1)
    """
    if not points:
        raise ValueError("no points to merge")
    out = Point(time=points[0].time, interval=sum(p.interval for p in points))
    for p in points:
        for name, r in p.routes.items():
            dst = out.routes.get(name)
            if dst is None:
                dst = out.routes[name] = RouteSample()
            add_route(dst, r)
            dst.in_flight = r.in_flight
        for key, t in p.targets.items():
            tdst = out.targets.get(key)
            if tdst is None:
                tdst = out.targets[key] = TargetSample(upstream=t.upstream, address=t.address)
            add_target(tdst, t)
            tdst.in_flight, tdst.pool_idle, tdst.pool_active = t.in_flight, t.pool_idle, t.pool_active
        for wid, w in p.workers.items():
            wdst = out.workers.get(wid)
            if wdst is None:
                wdst = out.workers[wid] = WorkerSample(pid=w.pid)
            wdst.pid = w.pid  # a replaced worker's slot keeps summing: the slot is the identity
            wdst.requests += w.requests
            add_process(wdst.process, w.process)
    return out


class WorkerTotals(msgspec.Struct):
    """Running totals of one worker slot (its replacements continue the same counters)."""

    pid: int = 0
    requests: int = 0
    accepted: int = 0
    gc_collections: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])
    gc_pause_seconds: float = 0.0
    #: The latest interval's figures (gauges, lag, requests/s, CPU%).
    last: ProcessSample = msgspec.field(default_factory=ProcessSample)
    requests_per_s: float = 0.0
    cpu_percent: float = 0.0


class Aggregator:
    """Running totals for exposition and the point under construction for history."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteSample] = {}
        self.targets: dict[str, TargetSample] = {}
        self.workers: dict[int, WorkerTotals] = {}
        #: Latest gauges per live worker: route in-flight and target gauges.
        self._route_gauges: dict[int, dict[str, int]] = {}
        self._target_gauges: dict[int, dict[str, tuple[int, int, int]]] = {}
        self._point: list[Snapshot] = []
        self.snapshots = 0
        #: Event counters (retries, ejections, ...) keyed as in ``Snapshot.events``.
        self.events: dict[str, int] = {}

    def add(self, snap: Snapshot) -> None:
        """Fold one worker snapshot into the totals and the current point."""
        self.snapshots += 1
        self._point.append(snap)
        requests = 0
        for name, r in snap.routes.items():
            requests += r.requests
            dst = self.routes.get(name)
            if dst is None:
                dst = self.routes[name] = RouteSample()
            add_route(dst, r)
        self._route_gauges[snap.worker] = {name: r.in_flight for name, r in snap.routes.items()}
        for key, t in snap.targets.items():
            tdst = self.targets.get(key)
            if tdst is None:
                tdst = self.targets[key] = TargetSample(upstream=t.upstream, address=t.address)
            add_target(tdst, t)
        self._target_gauges[snap.worker] = {
            key: (t.in_flight, t.pool_idle, t.pool_active) for key, t in snap.targets.items()
        }
        for key, n in snap.events.items():
            self.events[key] = self.events.get(key, 0) + n
        self._refresh_gauges()
        w = self.workers.get(snap.worker)
        if w is None:
            w = self.workers[snap.worker] = WorkerTotals()
        proc = snap.process
        if w.pid == snap.pid and snap.interval > 0:
            w.cpu_percent = max(0.0, (proc.cpu_seconds - w.last.cpu_seconds) / snap.interval * 100)
        else:
            w.cpu_percent = 0.0  # a new process: no previous CPU reading to diff against
        w.pid = snap.pid
        w.requests += requests
        w.accepted += proc.accepted
        w.gc_collections = [a + b for a, b in zip(w.gc_collections, proc.gc_collections, strict=True)]
        w.gc_pause_seconds += proc.gc_pause_seconds
        w.last = proc
        w.requests_per_s = requests / snap.interval if snap.interval > 0 else 0.0

    def count(self, family: str, *labels: str) -> None:
        """Count an event seen by the supervisor itself (same keys as ``Registry.count``)."""
        key = "\t".join((family, *labels))
        self.events[key] = self.events.get(key, 0) + 1

    def forget_worker(self, worker: int) -> None:
        """A worker exited: its gauges no longer count (its counters stay in the totals)."""
        self._route_gauges.pop(worker, None)
        self._target_gauges.pop(worker, None)
        w = self.workers.get(worker)
        if w is not None:
            w.last = ProcessSample(cpu_seconds=w.last.cpu_seconds)
            w.requests_per_s = w.cpu_percent = 0.0
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        for r in self.routes.values():
            r.in_flight = 0
        for gauges in self._route_gauges.values():
            for name, value in gauges.items():
                if name in self.routes:
                    self.routes[name].in_flight += value
        for t in self.targets.values():
            t.in_flight = t.pool_idle = t.pool_active = 0
        for tgauges in self._target_gauges.values():
            for key, (in_flight, idle, active) in tgauges.items():
                tg = self.targets.get(key)
                if tg is not None:
                    tg.in_flight += in_flight
                    tg.pool_idle += idle
                    tg.pool_active += active

    def close_point(self, time: float, interval: float = 1.0) -> Point:
        """The snapshots received since the last call, merged into one point starting at ``time``."""
        point = Point(time=time, interval=interval)
        for snap in self._point:
            for name, r in snap.routes.items():
                dst = point.routes.get(name)
                if dst is None:
                    dst = point.routes[name] = RouteSample()
                add_route(dst, r)
            for key, t in snap.targets.items():
                tdst = point.targets.get(key)
                if tdst is None:
                    tdst = point.targets[key] = TargetSample(upstream=t.upstream, address=t.address)
                add_target(tdst, t)
            w = point.workers.get(snap.worker)
            if w is None:
                w = point.workers[snap.worker] = WorkerSample(pid=snap.pid)
            w.pid = snap.pid
            w.requests += sum(r.requests for r in snap.routes.values())
            add_process(w.process, snap.process)
        # Gauges are what the live workers report now, not a sum over snapshots: a worker may land
        # two snapshots (or none) in one second.
        for name, r in point.routes.items():
            live = self.routes.get(name)
            r.in_flight = live.in_flight if live is not None else 0
        for key, tp in point.targets.items():
            tlive = self.targets.get(key)
            if tlive is not None:
                tp.in_flight, tp.pool_idle, tp.pool_active = (
                    tlive.in_flight,
                    tlive.pool_idle,
                    tlive.pool_active,
                )
        self._point = []
        return point
