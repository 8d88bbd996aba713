"""Prometheus exposition: real snapshots into a real aggregator, rendered, parsed back and checked."""

from __future__ import annotations

import doctest
from collections.abc import Callable, Iterable, Sequence

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from pulsegate.metrics import exposition as exposition_module
from pulsegate.metrics.aggregator import Aggregator
from pulsegate.metrics.exposition import (
    CODE_CLASSES,
    LE_SECONDS,
    build_registry,
    histogram_buckets,
    render,
    supervisor_metrics,
)
from pulsegate.metrics.histogram import Histogram
from pulsegate.metrics.snapshot import ProcessSample, RouteSample, Snapshot, TargetSample

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]

# Microsecond latencies chosen away from every le bound's straddling bucket, so the le counts are
# exact; 20 s lands beyond the last finite bound.
LATENCIES_US = (5, 50, 180, 300, 700, 2_000, 40_000, 400_000, 3_000_000, 20_000_000)
STATUSES = (200, 200, 201, 204, 301, 404, 404, 500, 503, 101)


def labels(**kv: str) -> Labels:
    return frozenset(kv.items())


def scrape(
    agg: Aggregator, extra: Callable[[], Iterable[Metric]] | None = None
) -> tuple[Samples, dict[str, str]]:
    """Render, parse with prometheus_client's own parser; samples by (name, labels) and family types."""
    body, content_type = render(build_registry(agg, extra))
    assert content_type.startswith("text/plain; version=")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples, types


def route_sample(latencies: Iterable[int], statuses: Sequence[int], *, in_flight: int = 0) -> RouteSample:
    total, upstream, overhead = Histogram(), Histogram(), Histogram()
    r = RouteSample(in_flight=in_flight)
    for us, status in zip(latencies, statuses, strict=True):
        r.requests += 1
        r.status[status // 100] += 1
        r.bytes_in += 10
        r.bytes_out += 1000
        total.record(us)
        upstream.record(us - us // 10)
        overhead.record(us // 10)
    r.total, r.upstream, r.overhead = total.take(), upstream.take(), overhead.take()
    return r


def snapshot(
    worker: int,
    pid: int,
    t: float,
    *,
    routes: dict[str, RouteSample] | None = None,
    targets: dict[str, TargetSample] | None = None,
    process: ProcessSample | None = None,
) -> Snapshot:
    return Snapshot(
        worker=worker,
        pid=pid,
        time=t,
        interval=1.0,
        process=process or ProcessSample(),
        routes=routes or {},
        targets=targets or {},
    )


def counters(samples: Samples, types: dict[str, str]) -> Samples:
    """The samples whose value must never decrease: counters and histogram buckets/counts/sums."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    monotonic = {family + suffix for family, typ in types.items() for suffix in suffixes.get(typ, ())}
    return {key: value for key, value in samples.items() if key[0] in monotonic}


def loaded_aggregator() -> Aggregator:
    agg = Aggregator()
    agg.add(
        snapshot(
            1,
            101,
            1.0,
            routes={"api": route_sample(LATENCIES_US, STATUSES, in_flight=3)},
            targets={
                "pool/10.0.0.1:80": TargetSample(
                    "pool",
                    "10.0.0.1:80",
                    requests=7,
                    status=[0, 0, 5, 0, 1, 1],
                    connect_failures=2,
                    timeouts=1,
                    in_flight=2,
                    pool_idle=4,
                    pool_active=2,
                )
            },
            process=ProcessSample(
                connections=5,
                accepted=9,
                rss_bytes=50_000_000,
                cpu_seconds=2.0,
                loop_lag_max=0.004,
                gc_collections=[3, 1, 0],
                gc_pause_seconds=0.002,
            ),
        )
    )
    agg.add(
        snapshot(
            2,
            102,
            1.0,
            routes={
                "api": route_sample(LATENCIES_US[:4], STATUSES[:4], in_flight=1),
                "static": route_sample([90], [200]),
            },
            targets={
                "pool/10.0.0.1:80": TargetSample(
                    "pool", "10.0.0.1:80", requests=3, status=[0, 0, 3, 0, 0, 0]
                ),
                "pool/10.0.0.2:80": TargetSample("pool", "10.0.0.2:80", requests=1, pool_idle=1),
            },
            process=ProcessSample(accepted=4, rss_bytes=40_000_000, gc_collections=[1, 0, 0]),
        )
    )
    # Worker 1's next interval: CPU 2.0 -> 2.5 s over 1 s is 50%.
    agg.add(snapshot(1, 101, 2.0, process=ProcessSample(cpu_seconds=2.5, rss_bytes=60_000_000, accepted=1)))
    return agg


# --- per route ------------------------------------------------------------------------------------


def test_route_counters_and_gauges() -> None:
    samples, types = scrape(loaded_aggregator())
    api, static = labels(route="api"), labels(route="static")
    assert types["pulsegate_requests"] == "counter"
    assert types["pulsegate_requests_in_flight"] == "gauge"
    assert samples[("pulsegate_requests_total", api)] == len(LATENCIES_US) + 4
    assert samples[("pulsegate_requests_total", static)] == 1
    assert samples[("pulsegate_request_bytes_total", api)] == 10 * 14
    assert samples[("pulsegate_response_bytes_total", api)] == 1000 * 14
    by_class = {
        c: samples[("pulsegate_responses_total", labels(route="api", code_class=c))] for c in CODE_CLASSES
    }
    assert by_class == {"1xx": 1, "2xx": 4 + 4, "3xx": 1, "4xx": 2, "5xx": 2}
    # Worker 1's latest snapshot had no "api" in flight any more; worker 2's still says 1.
    assert samples[("pulsegate_requests_in_flight", api)] == 1


@pytest.mark.parametrize(
    "name",
    [
        "pulsegate_request_duration_seconds",
        "pulsegate_upstream_duration_seconds",
        "pulsegate_gateway_overhead_seconds",
    ],
)
def test_route_histograms_are_cumulative_and_consistent(name: str) -> None:
    samples, types = scrape(loaded_aggregator())
    assert types[name] == "histogram"
    for route in ("api", "static"):
        les = [samples[(f"{name}_bucket", labels(route=route, le=repr(le)))] for le in LE_SECONDS]
        inf = samples[(f"{name}_bucket", labels(route=route, le="+Inf"))]
        assert les == sorted(les)
        assert les[-1] <= inf == samples[(f"{name}_count", labels(route=route))]
        assert inf == samples[("pulsegate_requests_total", labels(route=route))]


def test_request_duration_buckets_match_the_raw_observations() -> None:
    samples, _ = scrape(loaded_aggregator())
    observed = list(LATENCIES_US) + list(LATENCIES_US[:4])
    api = {"route": "api"}
    for le in LE_SECONDS:
        expected = sum(1 for us in observed if us <= le * 1_000_000)
        got = samples[("pulsegate_request_duration_seconds_bucket", labels(**api, le=repr(le)))]
        assert got == expected, le
    assert samples[("pulsegate_request_duration_seconds_bucket", labels(**api, le="+Inf"))] == len(observed)
    true_sum = sum(observed) / 1_000_000
    estimate = samples[("pulsegate_request_duration_seconds_sum", labels(**api))]
    assert abs(estimate - true_sum) <= true_sum / 64


def test_histogram_buckets_of_an_empty_histogram() -> None:
    buckets, total = histogram_buckets({})
    assert [label for label, _ in buckets] == [*map(repr, LE_SECONDS), "+Inf"]
    assert {value for _, value in buckets} == {0.0}
    assert total == 0.0


# --- per target and per worker --------------------------------------------------------------------


def test_target_metrics() -> None:
    samples, types = scrape(loaded_aggregator())
    first = {"upstream": "pool", "target": "10.0.0.1:80"}
    second = {"upstream": "pool", "target": "10.0.0.2:80"}
    assert types["pulsegate_upstream_pool_idle_connections"] == "gauge"
    assert samples[("pulsegate_upstream_requests_total", labels(**first))] == 10
    assert samples[("pulsegate_upstream_requests_total", labels(**second))] == 1
    assert samples[("pulsegate_upstream_responses_total", labels(**first, code_class="2xx"))] == 8
    assert samples[("pulsegate_upstream_responses_total", labels(**first, code_class="5xx"))] == 1
    assert samples[("pulsegate_upstream_connect_failures_total", labels(**first))] == 2
    assert samples[("pulsegate_upstream_timeouts_total", labels(**first))] == 1
    # Worker 1's latest snapshot reported no targets: its gauges no longer count.
    assert samples[("pulsegate_upstream_in_flight", labels(**first))] == 0
    assert samples[("pulsegate_upstream_pool_idle_connections", labels(**second))] == 1
    assert samples[("pulsegate_upstream_pool_active_connections", labels(**second))] == 0


def test_worker_metrics() -> None:
    samples, types = scrape(loaded_aggregator())
    one, two = labels(worker="1"), labels(worker="2")
    assert types["pulsegate_worker_cpu_percent"] == "gauge"
    assert samples[("pulsegate_worker_requests_total", one)] == len(LATENCIES_US)
    assert samples[("pulsegate_worker_requests_total", two)] == 5
    assert samples[("pulsegate_worker_accepted_connections_total", one)] == 10
    assert samples[("pulsegate_worker_resident_memory_bytes", one)] == 60_000_000
    assert samples[("pulsegate_worker_cpu_percent", one)] == pytest.approx(50.0)
    assert samples[("pulsegate_worker_event_loop_lag_max_seconds", one)] == 0.0  # the latest interval's
    assert samples[("pulsegate_worker_gc_collections_total", labels(worker="1", generation="0"))] == 3
    assert samples[("pulsegate_worker_gc_collections_total", labels(worker="1", generation="1"))] == 1
    assert samples[("pulsegate_worker_gc_pause_seconds_total", one)] == pytest.approx(0.002)
    assert samples[("pulsegate_worker_connections", two)] == 0


def test_supervisor_extra_metrics() -> None:
    samples, types = scrape(Aggregator(), lambda: supervisor_metrics(4, {1: 0, 2: 3}))
    assert types["pulsegate_workers"] == "gauge"
    assert types["pulsegate_worker_restarts"] == "counter"
    assert samples[("pulsegate_workers", labels())] == 4
    assert samples[("pulsegate_worker_restarts_total", labels(worker="2"))] == 3
    assert samples[("pulsegate_worker_restarts_total", labels(worker="1"))] == 0


# --- cardinality and monotonicity -----------------------------------------------------------------


def test_label_values_come_only_from_the_data() -> None:
    samples, _ = scrape(Aggregator())
    assert samples == {}  # nothing reported yet: no series at all, not even zero-valued ones

    samples, _ = scrape(loaded_aggregator())
    values: dict[str, set[str]] = {}
    for _, lbls in samples:
        for key, value in lbls:
            values.setdefault(key, set()).add(value)
    assert values["route"] == {"api", "static"}
    assert values["target"] == {"10.0.0.1:80", "10.0.0.2:80"}
    assert values["upstream"] == {"pool"}
    assert values["worker"] == {"1", "2"}
    assert values["code_class"] == set(CODE_CLASSES)
    assert values["generation"] == {"0", "1", "2"}
    assert set(values) == {"route", "target", "upstream", "worker", "code_class", "generation", "le"}


def test_awkward_route_names_round_trip() -> None:
    agg = Aggregator()
    name = 'a "quoted"\\name\nwith newline é'
    agg.add(snapshot(1, 1, 1.0, routes={name: RouteSample(requests=2)}))
    samples, _ = scrape(agg)
    assert samples[("pulsegate_requests_total", labels(route=name))] == 2


def test_counters_never_go_backwards_when_workers_go() -> None:
    agg = loaded_aggregator()
    before, types = scrape(agg)
    assert len(counters(before, types)) > 100

    agg.forget_worker(1)
    after, _ = scrape(agg)
    for key, value in counters(before, types).items():
        assert after[key] >= value, key
    assert after[("pulsegate_worker_requests_total", labels(worker="1"))] == len(LATENCIES_US)
    assert after[("pulsegate_worker_resident_memory_bytes", labels(worker="1"))] == 0  # a gauge may drop

    agg.forget_worker(2)
    gone, _ = scrape(agg)
    assert gone[("pulsegate_requests_in_flight", labels(route="api"))] == 0
    assert (
        gone[("pulsegate_requests_total", labels(route="api"))]
        == before[("pulsegate_requests_total", labels(route="api"))]
    )

    # A replacement process in slot 1 continues the slot's counters.
    agg.add(
        snapshot(1, 201, 3.0, routes={"api": route_sample([100], [200])}, process=ProcessSample(accepted=1))
    )
    replaced, _ = scrape(agg)
    for key, value in counters(after, types).items():
        assert replaced[key] >= value, key
    assert replaced[("pulsegate_worker_requests_total", labels(worker="1"))] == len(LATENCIES_US) + 1
    assert replaced[("pulsegate_worker_accepted_connections_total", labels(worker="1"))] == 11
    assert replaced[("pulsegate_worker_cpu_percent", labels(worker="1"))] == 0.0  # no earlier CPU reading


def test_registries_are_fresh_and_not_global() -> None:
    agg = loaded_aggregator()
    first, second = build_registry(agg), build_registry(agg)
    assert render(first)[0] == render(second)[0]
    assert REGISTRY.get_sample_value("pulsegate_requests_total", {"route": "api"}) is None


def test_docstring_examples() -> None:
    result = doctest.testmod(exposition_module)
    assert result.attempted > 0
    assert result.failed == 0
