"""Prometheus exposition of the supervisor's aggregated metrics, via prometheus_client's collector API.

A :class:`GatewayCollector` reads the :class:`~pulsegate.metrics.aggregator.Aggregator`'s running
totals at scrape time and yields metric families; nothing is copied into prometheus_client's own
instruments, so there is no second set of counters to keep in sync. The registry is a fresh,
non-global ``CollectorRegistry``: tests and embedders never see the process-wide default one.

Names and labels. Every series is labelled by names from the data the workers sent: route names
and ``upstream``/``target`` pairs come from the configuration (the workers key their instruments by
configured names, never by request paths), ``worker`` is the worker slot, ``code_class`` is one of
five values. Counters are the aggregator's sums of worker deltas, so they never go backwards, even
when a worker is replaced (its slot keeps counting) or forgotten.

Histograms. Latencies are recorded in microseconds into log-linear buckets; they are exposed in
seconds with the fixed ``le`` bounds of :data:`LE_SECONDS`. Each ``le`` count is
``count_at_most(counts, le in µs)``: a lower bound, short by at most the observations in the one
log-linear bucket that straddles the bound (at most 1/32 of the bound wide). ``_sum`` is not
recorded by the workers, so it is estimated as the sum of bucket midpoints: each observation is
off by at most 1/64 of its value (exact below 64 µs). It still only grows, since every term is
non-negative.

Not thread-safe: collect on the thread that feeds the aggregator (the supervisor's event loop).

Example:
    >>> from pulsegate.metrics.snapshot import ProcessSample, RouteSample, Snapshot
    >>> agg = Aggregator()
    >>> agg.add(Snapshot(worker=1, pid=7, time=1.0, interval=1.0, process=ProcessSample(),
    ...                  routes={"api": RouteSample(requests=2, status=[0, 0, 2, 0, 0, 0], total={50: 2})}))
    >>> body, content_type = render(build_registry(agg, lambda: supervisor_metrics(1, {1: 0})))
    >>> lines = body.decode().splitlines()
    >>> 'pulsegate_requests_total{route="api"} 2.0' in lines
    True
    >>> 'pulsegate_request_duration_seconds_bucket{le="0.0001",route="api"} 2.0' in lines
    True
    >>> 'pulsegate_workers 1.0' in lines, content_type.startswith("text/plain")
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from pulsegate.metrics.aggregator import Aggregator
from pulsegate.metrics.histogram import bucket_mid, count_at_most, total_count

#: Upper bounds (seconds) of the exposed latency buckets; ``+Inf`` is added.
LE_SECONDS: Final[tuple[float, ...]] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_LE_MICROS: Final = tuple(round(s * 1_000_000) for s in LE_SECONDS)
# repr() prints these bounds exactly as Go's formatting (and prometheus_client's) does.
_LE_LABELS: Final = tuple(repr(s) for s in LE_SECONDS)
#: ``code_class`` label values; index ``i`` of a ``status`` list counts class ``CODE_CLASSES[i - 1]``.
CODE_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")

Buckets = list[tuple[str, float]]


def histogram_buckets(counts: Mapping[int, int]) -> tuple[Buckets, float]:
    """Cumulative ``le`` buckets (seconds, ``+Inf`` last) and estimated ``_sum`` (seconds) of a
    sparse microsecond histogram (see the module doc for the approximations).

    >>> histogram_buckets({50: 1, 200: 3})[0][:2], histogram_buckets({50: 1})[1]
    ([('0.0001', 1.0), ('0.00025', 1.0)], 5e-05)
    """
    buckets = [
        (label, float(count_at_most(counts, bound)))
        for label, bound in zip(_LE_LABELS, _LE_MICROS, strict=True)
    ]
    buckets.append(("+Inf", float(total_count(counts))))
    total_us = sum(bucket_mid(i) * c for i, c in counts.items())
    return buckets, total_us / 1_000_000


def supervisor_metrics(workers: int, restarts: Mapping[int, int]) -> list[Metric]:
    """The supervisor's own figures, for ``build_registry``'s ``extra``: live worker processes and
    restarts per worker slot (the aggregator knows neither).

    >>> [m.name for m in supervisor_metrics(2, {1: 0, 2: 3})]
    ['pulsegate_workers', 'pulsegate_worker_restarts']
    """
    live = GaugeMetricFamily("pulsegate_workers", "Worker processes running.", value=workers)
    restarted = CounterMetricFamily(
        "pulsegate_worker_restarts_total", "Times a worker slot's process was replaced.", labels=["worker"]
    )
    for worker, count in sorted(restarts.items()):
        restarted.add_metric([str(worker)], count)
    return [live, restarted]


#: Event counters workers count with ``Registry.count(family, *labels)``: metric name, help, labels.
EVENT_FAMILIES: Final[dict[str, tuple[str, str, tuple[str, ...]]]] = {
    "retries": (
        "pulsegate_upstream_retries_total",
        "Attempts retried on another target.",
        ("upstream",),
    ),
    "retry_budget_exhausted": (
        "pulsegate_upstream_retry_budget_exhausted_total",
        "Retries not made because the retry budget was spent.",
        ("upstream",),
    ),
    "ejections": (
        "pulsegate_upstream_ejections_total",
        "Targets passively ejected by a worker after failing live traffic.",
        ("upstream", "target"),
    ),
    "health_transitions": (
        "pulsegate_upstream_health_transitions_total",
        "Active health check state changes, by the state entered.",
        ("upstream", "target", "state"),
    ),
    "breaker_trips": (
        "pulsegate_upstream_breaker_trips_total",
        "Requests refused (503) or queued by the circuit breaker, by limit.",
        ("upstream", "limit"),
    ),
    "rate_limited": (
        "pulsegate_rate_limited_total",
        "Requests refused with 429 by a route's rate limit.",
        ("route",),
    ),
    "tunnels": (
        "pulsegate_tunnels_total",
        "Upgraded connections (WebSocket) tunnelled, by route.",
        ("route",),
    ),
}


def event_families(events: Mapping[str, int]) -> list[Metric]:
    """The counters of ``events`` (``family<TAB>label...`` -> count) as metric families."""
    families: dict[str, CounterMetricFamily] = {}
    for family, (name, doc, labels) in EVENT_FAMILIES.items():
        families[family] = CounterMetricFamily(name, doc, labels=list(labels))
    for key, count in sorted(events.items()):
        family, *values = key.split("\t")
        fam = families.get(family)
        if fam is not None and len(values) == len(EVENT_FAMILIES[family][2]):
            fam.add_metric(values, count)
    return list(families.values())


class GatewayCollector:
    """Yields the aggregator's totals as metric families at every ``collect()``, then ``extra()``'s."""

    def __init__(self, aggregator: Aggregator, extra: Callable[[], Iterable[Metric]] | None = None) -> None:
        self._agg = aggregator
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from self._routes()
        yield from self._targets()
        yield from self._workers()
        yield from event_families(self._agg.events)
        if self._extra is not None:
            yield from self._extra()

    def _routes(self) -> Iterator[Metric]:
        labels = ["route"]
        requests = CounterMetricFamily(
            "pulsegate_requests_total", "Requests finished, by route.", labels=labels
        )
        responses = CounterMetricFamily(
            "pulsegate_responses_total",
            "Responses sent, by route and status class.",
            labels=["route", "code_class"],
        )
        bytes_in = CounterMetricFamily(
            "pulsegate_request_bytes_total", "Request body bytes received from clients.", labels=labels
        )
        bytes_out = CounterMetricFamily(
            "pulsegate_response_bytes_total", "Response bytes sent to clients (head and body).", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "pulsegate_requests_in_flight", "Requests started and not yet finished.", labels=labels
        )
        total = HistogramMetricFamily(
            "pulsegate_request_duration_seconds",
            "Time from the request head to the end of the response.",
            labels=labels,
        )
        upstream = HistogramMetricFamily(
            "pulsegate_upstream_duration_seconds",
            "Time spent on upstream attempts, for requests an upstream answered.",
            labels=labels,
        )
        overhead = HistogramMetricFamily(
            "pulsegate_gateway_overhead_seconds",
            "Request duration minus upstream time: what the gateway itself added.",
            labels=labels,
        )
        for name, r in sorted(self._agg.routes.items()):
            route = [name]
            requests.add_metric(route, r.requests)
            for code_class, count in zip(CODE_CLASSES, r.status[1:], strict=True):
                responses.add_metric([name, code_class], count)
            bytes_in.add_metric(route, r.bytes_in)
            bytes_out.add_metric(route, r.bytes_out)
            in_flight.add_metric(route, r.in_flight)
            for family, counts in ((total, r.total), (upstream, r.upstream), (overhead, r.overhead)):
                buckets, sum_seconds = histogram_buckets(counts)
                family.add_metric(route, buckets, sum_seconds)
        return iter((requests, responses, bytes_in, bytes_out, in_flight, total, upstream, overhead))

    def _targets(self) -> Iterator[Metric]:
        labels = ["upstream", "target"]
        requests = CounterMetricFamily(
            "pulsegate_upstream_requests_total", "Responses received from an upstream target.", labels=labels
        )
        responses = CounterMetricFamily(
            "pulsegate_upstream_responses_total",
            "Responses received from an upstream target, by status class.",
            labels=[*labels, "code_class"],
        )
        failures = CounterMetricFamily(
            "pulsegate_upstream_connect_failures_total",
            "Failed connection attempts to a target.",
            labels=labels,
        )
        timeouts = CounterMetricFamily(
            "pulsegate_upstream_timeouts_total", "Upstream attempts that timed out.", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "pulsegate_upstream_in_flight", "Requests in progress on a target.", labels=labels
        )
        idle = GaugeMetricFamily(
            "pulsegate_upstream_pool_idle_connections", "Idle pooled connections to a target.", labels=labels
        )
        active = GaugeMetricFamily(
            "pulsegate_upstream_pool_active_connections", "Connections to a target in use.", labels=labels
        )
        for _, t in sorted(self._agg.targets.items()):
            target = [t.upstream, t.address]
            requests.add_metric(target, t.requests)
            for code_class, count in zip(CODE_CLASSES, t.status[1:], strict=True):
                responses.add_metric([*target, code_class], count)
            failures.add_metric(target, t.connect_failures)
            timeouts.add_metric(target, t.timeouts)
            in_flight.add_metric(target, t.in_flight)
            idle.add_metric(target, t.pool_idle)
            active.add_metric(target, t.pool_active)
        return iter((requests, responses, failures, timeouts, in_flight, idle, active))

    def _workers(self) -> Iterator[Metric]:
        labels = ["worker"]
        requests = CounterMetricFamily(
            "pulsegate_worker_requests_total", "Requests finished by a worker slot.", labels=labels
        )
        accepted = CounterMetricFamily(
            "pulsegate_worker_accepted_connections_total", "Client connections accepted.", labels=labels
        )
        connections = GaugeMetricFamily(
            "pulsegate_worker_connections", "Open client connections.", labels=labels
        )
        rss = GaugeMetricFamily(
            "pulsegate_worker_resident_memory_bytes",
            "Resident set size of the worker process.",
            labels=labels,
        )
        cpu = GaugeMetricFamily(
            "pulsegate_worker_cpu_percent",
            "CPU used by the worker over its last interval (100 = one core).",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "pulsegate_worker_event_loop_lag_max_seconds",
            "Largest event-loop lag in the worker's last interval.",
            labels=labels,
        )
        gc_collections = CounterMetricFamily(
            "pulsegate_worker_gc_collections_total",
            "Garbage collections, by generation.",
            labels=["worker", "generation"],
        )
        gc_pause = CounterMetricFamily(
            "pulsegate_worker_gc_pause_seconds_total", "Time spent in garbage collection.", labels=labels
        )
        for slot, w in sorted(self._agg.workers.items()):
            worker = [str(slot)]
            requests.add_metric(worker, w.requests)
            accepted.add_metric(worker, w.accepted)
            # A forgotten worker's gauges read 0 (the aggregator resets them): it has no process.
            connections.add_metric(worker, w.last.connections)
            rss.add_metric(worker, w.last.rss_bytes)
            cpu.add_metric(worker, w.cpu_percent)
            lag.add_metric(worker, w.last.loop_lag_max)
            for generation, count in enumerate(w.gc_collections):
                gc_collections.add_metric([str(slot), str(generation)], count)
            gc_pause.add_metric(worker, w.gc_pause_seconds)
        tunnels = GaugeMetricFamily(
            "pulsegate_tunnels_active", "Upgraded (WebSocket) connections open now, over all workers."
        )
        if self._agg.workers:  # no series before any worker reported
            tunnels.add_metric([], sum(w.last.tunnels for w in self._agg.workers.values()))
        return iter((requests, accepted, connections, rss, cpu, lag, gc_collections, gc_pause, tunnels))


def build_registry(
    aggregator: Aggregator, extra: Callable[[], Iterable[Metric]] | None = None
) -> CollectorRegistry:
    """A fresh (non-global) registry exposing ``aggregator`` and, if given, ``extra()``'s metrics
    (e.g. ``lambda: supervisor_metrics(len(live), restarts)``), both read at every scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(aggregator, extra))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its ``Content-Type``."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
