"""Metric history: the 1 s ring, rollups into SQLite, restart survival, retention, flush, errors."""

from __future__ import annotations

import doctest
import random
import sqlite3
from pathlib import Path

import pytest

from pulsegate.metrics import history as history_module
from pulsegate.metrics.aggregator import Aggregator, Point
from pulsegate.metrics.histogram import Histogram, percentiles
from pulsegate.metrics.history import History, HistoryError
from pulsegate.metrics.snapshot import ProcessSample, RouteSample, Snapshot, TargetSample

QS = (0, 50, 90, 99, 99.9, 100)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def point(t: float, requests: int = 1, in_flight: int = 0) -> Point:
    return Point(
        time=t,
        interval=1.0,
        routes={"api": RouteSample(requests=requests, status=[0, 0, requests, 0, 0, 0], in_flight=in_flight)},
    )


def open_history(path: Path | str, clock: Clock, **kwargs: float) -> History:
    settings: dict[str, float] = {"retention": 7 * 86400.0, "resolution": 10.0, "memory_window": 3600.0}
    settings.update(kwargs)
    return History(str(path), clock=clock, **settings)


def stored_rows(path: Path) -> list[tuple[float, float]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT time, interval FROM points ORDER BY time").fetchall()
    finally:
        db.close()


def summary(points: list[Point]) -> list[tuple[float, float, int]]:
    return [(p.time, p.interval, p.routes["api"].requests) for p in points]


# --- the in-memory ring ---------------------------------------------------------------------------


def test_ring_keeps_memory_window_points() -> None:
    clock = Clock(1000.0)
    h = open_history("off", clock, memory_window=10)
    for t in range(1000, 1025):
        h.append(point(float(t)))
    assert [p.time for p in h.recent(3600)] == [float(t) for t in range(1015, 1025)]


def test_ring_drops_points_older_than_the_window_across_a_gap() -> None:
    clock = Clock(2000.0)
    h = open_history("off", clock, memory_window=10)
    for t in (1000, 1001, 1002, 2000):
        h.append(point(float(t)))
    assert [p.time for p in h.recent(5000)] == [2000.0]


def test_ring_size_follows_point_interval() -> None:
    clock = Clock(0.0)
    h = History("off", retention=60, resolution=10, memory_window=10, clock=clock, point_interval=0.5)
    for i in range(40):
        h.append(Point(time=i * 0.5, interval=0.5))
    assert len(h.recent(3600)) == 20


def test_recent_is_relative_to_the_clock() -> None:
    clock = Clock(110.0)
    h = open_history("off", clock)
    for t in range(100, 110):
        h.append(point(float(t)))
    # Point t covers [t, t + 1): the last 3 s before 110 are points 107, 108, 109.
    assert [p.time for p in h.recent(3)] == [107.0, 108.0, 109.0]
    clock.now = 200.0  # no new points: nothing recent, rather than stale data
    assert h.recent(3) == []


# --- rollups --------------------------------------------------------------------------------------


@pytest.mark.parametrize("persisted", [True, False], ids=["sqlite", "memory"])
def test_rollup_merges_counters_gauges_and_histograms_exactly(tmp_path: Path, persisted: bool) -> None:
    """Feed real snapshots through a real aggregator; the rollup must equal the raw observations."""
    rng = random.Random(7)
    clock = Clock(1_700_000_000.0)
    path = tmp_path / "h.db" if persisted else "off"
    h = open_history(path, clock)
    agg = Aggregator()
    raw: list[int] = []
    raw_upstream: list[int] = []
    expected_status = [0] * 6
    expected_bytes = 0
    expected_target_failures = 0
    for second in range(10):
        for worker in (1, 2):
            total, upstream = Histogram(), Histogram()
            route = RouteSample(in_flight=worker + second)
            for _ in range(rng.randrange(1, 40)):
                value = int(rng.lognormvariate(8, 1.5))
                total.record(value)
                upstream.record(value // 2)
                raw.append(value)
                raw_upstream.append(value // 2)
                slot = rng.choice((2, 2, 2, 3, 4, 5))
                route.status[slot] += 1
                expected_status[slot] += 1
                route.requests += 1
                route.bytes_out += 100
                expected_bytes += 100
            route.total, route.upstream = total.take(), upstream.take()
            failures = rng.randrange(3)
            expected_target_failures += failures
            agg.add(
                Snapshot(
                    worker=worker,
                    pid=100 + worker,
                    time=clock.now + 1,
                    interval=1.0,
                    process=ProcessSample(accepted=2, gc_collections=[1, 0, 0]),
                    routes={"api": route},
                    targets={"u/a:1": TargetSample("u", "a:1", connect_failures=failures, pool_idle=worker)},
                )
            )
        h.append(agg.close_point(clock.now))
        clock.now += 1
    if persisted:  # read the rollup back from the database, through msgpack
        h.close()
        h = open_history(path, clock)

    [rollup] = h.query(1_700_000_000.0)
    r = rollup.routes["api"]
    assert (rollup.time, rollup.interval) == (1_700_000_000.0, 10.0)
    assert r.requests == len(raw) == sum(expected_status)
    assert r.status == expected_status
    assert r.bytes_out == expected_bytes
    # Gauges are the last second's (both workers' latest in-flight added), not a sum over time.
    assert r.in_flight == (1 + 9) + (2 + 9)
    assert sum(r.total.values()) == len(raw)
    reference, reference_upstream = Histogram(), Histogram()
    for v in raw:
        reference.record(v)
    for v in raw_upstream:
        reference_upstream.record(v)
    assert r.total == reference.sparse()
    assert percentiles(r.total, QS) == percentiles(reference.sparse(), QS)
    assert percentiles(r.upstream, QS) == percentiles(reference_upstream.sparse(), QS)
    # And within the histogram's 1/64 of the exact nearest-rank value.
    ordered = sorted(raw)
    for q, estimate in zip((50, 90, 99), percentiles(r.total, (50, 90, 99)), strict=True):
        exact = ordered[-(-q * len(ordered) // 100) - 1]
        assert abs(estimate - exact) <= exact / 64 + 0.5
    target = rollup.targets["u/a:1"]
    assert target.connect_failures == expected_target_failures
    assert target.pool_idle == 1 + 2
    assert {w: s.process.accepted for w, s in rollup.workers.items()} == {1: 20, 2: 20}
    assert rollup.workers[1].requests + rollup.workers[2].requests == len(raw)
    assert rollup.workers[1].process.gc_collections == [10, 0, 0]


def test_windows_are_aligned_to_the_resolution(tmp_path: Path) -> None:
    clock = Clock(0.0)
    h = open_history(tmp_path / "h.db", clock)
    for t in range(95, 127):
        h.append(point(float(t) + 0.25))
    # 90 and 100..110 are complete and written; 120 is the current window, served from memory.
    assert stored_rows(tmp_path / "h.db") == [(90.0, 5.0), (100.0, 10.0), (110.0, 10.0)]
    assert summary(h.query(0)) == [(95.25, 5.0, 5), (100.25, 10.0, 10), (110.25, 10.0, 10), (120.25, 7.0, 7)]
    h.close()


def test_query_range_and_coarser_resolution(tmp_path: Path) -> None:
    clock = Clock(0.0)
    h = open_history(tmp_path / "h.db", clock)
    for t in range(0, 95):
        h.append(point(float(t)))
    assert [p.time for p in h.query(25, 50)] == [20.0, 30.0, 40.0]
    assert [p.time for p in h.query(30, 30.5)] == [30.0]
    assert summary(h.query(0, resolution=30)) == [
        (0.0, 30.0, 30),
        (30.0, 30.0, 30),
        (60.0, 30.0, 30),
        (90.0, 5.0, 5),
    ]
    assert summary(h.query(45, 70, resolution=30)) == [(30.0, 30.0, 30), (60.0, 30.0, 30)]
    with pytest.raises(ValueError, match="multiple of 10 s"):
        h.query(0, resolution=15)
    with pytest.raises(ValueError, match="multiple of 10 s"):
        h.query(0, resolution=5)
    h.close()


# --- persistence ----------------------------------------------------------------------------------


def test_rollups_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pulsegate" / "history.db"  # parents are created
    clock = Clock(0.0)
    h = open_history(path, clock)
    for t in range(100, 125):
        h.append(point(float(t), requests=t))
    before = h.query(0)
    h.close()

    again = open_history(path, clock)
    after = again.query(0)
    assert summary(after) == summary(before)
    assert [p.routes["api"].status for p in after] == [p.routes["api"].status for p in before]
    assert again.recent(3600) == []  # the 1 s points were memory only
    again.close()


def test_database_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = open_history(path, Clock())
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        db.close()
        h.close()


def test_flush_then_append_into_the_same_window_rewrites_one_row(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    clock = Clock(0.0)
    h = open_history(path, clock)
    for t in range(100, 104):
        h.append(point(float(t), in_flight=t))
    h.flush()
    assert stored_rows(path) == [(100.0, 4.0)]
    for t in range(104, 107):
        h.append(point(float(t), in_flight=t))
    h.flush()
    h.flush()
    assert stored_rows(path) == [(100.0, 7.0)]
    assert summary(h.query(0)) == [(100.0, 7.0, 7)]
    h.close()

    # A restart inside the same window continues the flushed row instead of replacing it.
    again = open_history(path, clock)
    for t in range(107, 112):
        again.append(point(float(t), in_flight=t))
    assert stored_rows(path) == [(100.0, 10.0)]
    [first, second] = again.query(0)
    assert (first.time, first.interval, first.routes["api"].requests) == (100.0, 10.0, 10)
    assert first.routes["api"].in_flight == 109  # the gauge of the window's last point
    assert (second.time, second.routes["api"].requests) == (110.0, 2)
    again.close()
    assert stored_rows(path) == [(100.0, 10.0), (110.0, 2.0)]


def test_retention_purges_old_rows_at_most_once_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    clock = Clock(0.0)
    h = open_history(path, clock, retention=100)
    for t in range(0, 150):
        h.append(point(float(t)))
    assert stored_rows(path)[0] == (0.0, 10.0)

    clock.now = 200.0  # the next append purges windows starting before 100
    h.append(point(150.0))
    assert [t for t, _ in stored_rows(path)] == [100.0, 110.0, 120.0, 130.0, 140.0]

    clock.now = 230.0  # 30 s after the last purge: rows before 130 are expired but stay
    h.append(point(160.0))
    assert [t for t, _ in stored_rows(path)][:2] == [100.0, 110.0]

    clock.now = 260.0  # a minute later: everything before 160 goes; 160 is still being accumulated
    h.append(point(161.0))
    assert stored_rows(path) == []
    assert summary(h.query(0)) == [(160.0, 2.0, 2)]
    h.close()


def test_undecodable_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    clock = Clock(0.0)
    h = open_history(path, clock)
    for t in range(0, 25):
        h.append(point(float(t)))
    h.flush()
    db = sqlite3.connect(path)
    db.execute("UPDATE points SET data = ? WHERE time = 10.0", (b"\xc1garbage",))
    db.commit()
    db.close()
    assert [p.time for p in h.query(0)] == [0.0, 20.0]
    assert h.bad_rows == 1
    h.close()


# --- memory only and errors -----------------------------------------------------------------------


def test_off_keeps_everything_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    clock = Clock(0.0)
    h = open_history("off", clock, memory_window=60)
    for t in range(100, 125):
        h.append(point(float(t)))
    h.flush()
    assert summary(h.query(0)) == [(100.0, 10.0, 10), (110.0, 10.0, 10), (120.0, 5.0, 5)]
    assert summary(h.query(0, resolution=20)) == [(100.0, 20.0, 20), (120.0, 5.0, 5)]
    h.close()
    assert list(tmp_path.iterdir()) == []  # no file called "off", no database anywhere


def test_closed_history_refuses_use(tmp_path: Path) -> None:
    h = open_history(tmp_path / "h.db", Clock())
    h.close()
    h.close()  # idempotent
    with pytest.raises(HistoryError, match="closed"):
        h.append(point(0.0))
    with pytest.raises(HistoryError, match="closed"):
        h.query(0)


def test_context_manager_flushes(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with open_history(path, Clock()) as h:
        h.append(point(5.0))
    assert stored_rows(path) == [(0.0, 1.0)]


def test_parent_that_is_a_file_fails_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    path = tmp_path / "plain" / "history.db"
    with pytest.raises(HistoryError) as info:
        open_history(path, Clock())
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert "cannot open database" in str(info.value)


def test_directory_as_database_fails_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=f"{tmp_path}: cannot open database"):
        open_history(tmp_path, Clock())


def test_file_that_is_not_a_database_fails_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not an SQLite database, just some text long enough " * 20)
    with pytest.raises(HistoryError, match=f"{path}: cannot open database: file is not a database"):
        open_history(path, Clock())


@pytest.mark.parametrize("setting", ["retention", "resolution", "memory_window"])
def test_non_positive_settings_are_rejected(setting: str) -> None:
    with pytest.raises(ValueError, match=f"{setting} must be > 0"):
        open_history("off", Clock(), **{setting: 0.0})


def test_docstring_examples() -> None:
    result = doctest.testmod(history_module)
    assert result.attempted > 0
    assert result.failed == 0
