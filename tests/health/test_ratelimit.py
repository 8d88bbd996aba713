"""Shared token buckets: exact arithmetic on injected time, eviction in a tiny table, and the real
thing: worker processes hammering one file, including one killed while holding the lock."""

from __future__ import annotations

import doctest
import fcntl
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pulsegate.health import ratelimit
from pulsegate.health.ratelimit import WAYS, Decision, SharedBuckets, parse_rate

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def buckets(tmp_path: Any) -> Iterator[SharedBuckets]:
    table = SharedBuckets.create(slots=1024, directory=str(tmp_path))
    yield table
    table.close()
    table.unlink()


def test_docstring_examples() -> None:
    assert doctest.testmod(ratelimit).failed == 0


def test_burst_then_refusal(buckets: SharedBuckets) -> None:
    got = [buckets.take(b"k", rate=10.0, burst=5, now=100.0) for _ in range(6)]
    assert [d.allowed for d in got] == [True] * 5 + [False]
    assert [d.remaining for d in got] == [4, 3, 2, 1, 0, 0]
    assert got[0] == Decision(True, 4, 0.0, pytest.approx(0.1))
    assert got[4].reset == pytest.approx(0.5)
    assert got[5] == Decision(False, 0, pytest.approx(0.1), pytest.approx(0.5))


def test_lazy_refill_over_injected_time(buckets: SharedBuckets) -> None:
    for _ in range(4):
        assert buckets.take(b"k", rate=2.0, burst=4, now=0.0).allowed
    refused = buckets.take(b"k", rate=2.0, burst=4, now=0.25)
    assert refused == Decision(False, 0, pytest.approx(0.25), pytest.approx(1.75))
    # Refused takes bank the refill: at 0.5 s one whole token has accrued.
    assert buckets.take(b"k", rate=2.0, burst=4, now=0.5) == Decision(True, 0, 0.0, pytest.approx(2.0))
    # Long idle caps at burst instead of accumulating without bound.
    assert buckets.take(b"k", rate=2.0, burst=4, now=1000.0) == Decision(True, 3, 0.0, pytest.approx(0.5))


def test_clock_behind_the_bucket_grants_no_refill(buckets: SharedBuckets) -> None:
    # Another worker may stamp the bucket after we read the clock; an earlier `now` must not
    # rewind `last` (that would count the same interval twice).
    buckets.take(b"k", rate=1.0, burst=2, now=10.0)
    buckets.take(b"k", rate=1.0, burst=2, now=10.0)
    late = buckets.take(b"k", rate=1.0, burst=2, now=9.5)
    assert late == Decision(False, 0, pytest.approx(1.5), pytest.approx(2.5))
    assert buckets.take(b"k", rate=1.0, burst=2, now=11.0).allowed
    assert not buckets.take(b"k", rate=1.0, burst=2, now=11.0).allowed


def test_keys_are_independent(buckets: SharedBuckets) -> None:
    for _ in range(3):
        assert buckets.take(b"a", rate=1.0, burst=3, now=0.0).allowed
    assert not buckets.take(b"a", rate=1.0, burst=3, now=0.0).allowed
    assert buckets.take(b"b", rate=1.0, burst=3, now=0.0) == Decision(True, 2, 0.0, 1.0)


def test_lower_burst_clamps_stored_tokens(buckets: SharedBuckets) -> None:
    buckets.take(b"k", rate=1.0, burst=100, now=0.0)
    assert buckets.take(b"k", rate=1.0, burst=3, now=0.0).remaining == 2


def test_invalid_arguments(buckets: SharedBuckets) -> None:
    for rate, burst in ((0.0, 5.0), (-1.0, 5.0), (1.0, 0.5), (float("nan"), 5.0)):
        with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
            buckets.take(b"k", rate=rate, burst=burst, now=0.0)


def test_eviction_in_a_tiny_table(tmp_path: Any) -> None:
    table = SharedBuckets.create(slots=1, directory=str(tmp_path))  # rounds up to one set
    try:
        keys = [b"key-%d" % i for i in range(WAYS)]
        for i, key in enumerate(keys):  # drain each a different amount: key-i keeps i tokens
            for _ in range(WAYS - i):
                table.take(key, rate=1.0, burst=WAYS, now=0.0)
        # All slots in use and none full yet: the newcomer evicts key-7, the one full soonest.
        assert table.take(b"new", rate=1.0, burst=WAYS, now=0.0).remaining == WAYS - 1
        # key-7 comes back with a fresh bucket and evicts the newcomer (now the one full soonest);
        # the drained keys kept their state.
        assert table.take(keys[WAYS - 1], rate=1.0, burst=WAYS, now=0.0).remaining == WAYS - 1
        assert not table.take(keys[0], rate=1.0, burst=WAYS, now=0.0).allowed
        assert table.take(keys[2], rate=1.0, burst=WAYS, now=0.0).remaining == 1
        # The newcomer again evicts key-7 (full at 1 s), not key-6 (6 tokens, full at 2 s).
        assert table.take(b"new", rate=1.0, burst=WAYS, now=0.0).remaining == WAYS - 1
        assert table.take(keys[6], rate=1.0, burst=WAYS, now=0.0).remaining == 5
        # Once every bucket has refilled, eviction is invisible: whoever comes back is full anyway.
        for key in [*keys, b"new", b"other"]:
            assert table.take(key, rate=1.0, burst=WAYS, now=100.0).remaining == WAYS - 1
    finally:
        table.close()
        table.unlink()


def test_flood_of_distinct_keys_fails_open(tmp_path: Any) -> None:
    table = SharedBuckets.create(slots=WAYS, directory=str(tmp_path))
    try:
        assert table.take(b"victim", rate=1.0, burst=1, now=0.0).allowed
        assert not table.take(b"victim", rate=1.0, burst=1, now=0.0).allowed
        for i in range(WAYS):
            table.take(b"flood-%d" % i, rate=1.0, burst=1, now=0.0)
        # The victim's drained bucket was evicted: it starts over full, never stricter.
        assert table.take(b"victim", rate=1.0, burst=1, now=0.0).allowed
    finally:
        table.close()
        table.unlink()


def test_attach_sees_the_same_buckets(buckets: SharedBuckets) -> None:
    other = SharedBuckets.attach(buckets.path)
    try:
        assert buckets.take(b"k", rate=1.0, burst=2, now=0.0).allowed
        assert other.take(b"k", rate=1.0, burst=2, now=0.0).allowed
        assert not buckets.take(b"k", rate=1.0, burst=2, now=0.0).allowed
    finally:
        other.close()


def test_attach_rejects_other_files(tmp_path: Any) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"x" * 4096)
    with pytest.raises(ValueError, match="not a pulsegate rate-limit table"):
        SharedBuckets.attach(str(bogus))


def test_create_defaults_to_dev_shm_and_unlink_removes() -> None:
    table = SharedBuckets.create(slots=8)
    try:
        if os.path.isdir("/dev/shm"):
            assert table.path.startswith("/dev/shm/")
        assert os.stat(table.path).st_mode & 0o777 == 0o600
    finally:
        table.close()
        table.close()
        table.unlink()
    assert not os.path.exists(table.path)
    table.unlink()
    with pytest.raises(ValueError, match="closed"):
        table.take(b"k", rate=1.0, burst=1, now=0.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/s", 100.0),
        ("6000/m", 100.0),
        ("10/ms", 10_000.0),
        ("3600/h", 1.0),
        (" 2.5 / s ", 2.5),
        ("1e3/m", 1000 / 60),
        ("7", 7.0),
        (7, 7.0),
        (0.5, 0.5),
    ],
)
def test_parse_rate(text: str | float, expected: float) -> None:
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "fast", "10/d", "10/", "/s", "-5/s", "0/s", 0, -1.0, float("inf"), True]
)
def test_parse_rate_rejects(text: str | float) -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(text)


# --- real processes --------------------------------------------------------------------------

RATE, BURST, WINDOW = 2000.0, 100.0, 1.0


def _hammer(path: str, barrier: Any, results: Any, window: float) -> None:
    table = SharedBuckets.attach(path)
    barrier.wait(timeout=30)
    allowed = attempts = 0
    first = time.monotonic()
    deadline = first + window
    now = first
    while now < deadline:
        allowed += table.take(b"shared", RATE, BURST, now).allowed
        attempts += 1
        now = time.monotonic()
    results.put((os.getpid(), allowed, attempts, first, now))
    table.close()


def _hold_lock(path: str, locked: Any) -> None:
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)  # whole file: covers every set, as if stuck inside take()
    locked.set()
    time.sleep(120)  # only ever ends by SIGKILL


def _stop(procs: list[Any]) -> None:
    for p in procs:
        p.join(timeout=10)  # workers that reported still flush their queue and exit on their own
        if p.is_alive():
            p.kill()
            p.join(timeout=10)


def test_limit_holds_for_the_sum_of_processes(buckets: SharedBuckets) -> None:
    barrier, results = SPAWN.Barrier(3), SPAWN.Queue()
    procs = [SPAWN.Process(target=_hammer, args=(buckets.path, barrier, results, WINDOW)) for _ in range(2)]
    try:
        for p in procs:
            p.start()
        barrier.wait(timeout=30)
        got = [results.get(timeout=30) for _ in procs]
    finally:
        _stop(procs)
    assert all(p.exitcode == 0 for p in procs)
    assert min(r[2] for r in got) > 10 * RATE * WINDOW, got  # both really contended
    allowed = sum(r[1] for r in got)
    span = max(r[4] for r in got) - min(r[3] for r in got)
    expected = BURST + RATE * span
    # One process alone would be allowed `expected`; two unshared limits would allow twice that.
    assert abs(allowed - expected) <= 0.02 * expected + 2, (allowed, expected, got)


def test_killed_lock_holder_does_not_deadlock(buckets: SharedBuckets) -> None:
    locked = SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock, args=(buckets.path, locked))
    result: list[Decision] = []
    taker = threading.Thread(target=lambda: result.append(buckets.take(b"k", 1.0, 1.0, 0.0)), daemon=True)
    try:
        holder.start()
        assert locked.wait(timeout=30)
        taker.start()
        taker.join(timeout=0.2)
        assert taker.is_alive(), "take() did not wait for the lock another process holds"
        os.kill(holder.pid or 0, signal.SIGKILL)
        taker.join(timeout=10)
        assert not taker.is_alive(), "take() still blocked after the lock holder was killed"
        assert result == [Decision(True, 0, 0.0, 1.0)]
    finally:
        _stop([holder])
    assert holder.exitcode == -signal.SIGKILL


def test_worker_killed_mid_hammer_leaves_the_others_running(buckets: SharedBuckets) -> None:
    barrier, results = SPAWN.Barrier(3), SPAWN.Queue()
    victim = SPAWN.Process(target=_hammer, args=(buckets.path, barrier, results, 30.0))
    survivor = SPAWN.Process(target=_hammer, args=(buckets.path, barrier, results, 0.5))
    try:
        victim.start()
        survivor.start()
        barrier.wait(timeout=30)
        while buckets.take(b"shared", RATE, BURST, time.monotonic()).allowed:
            pass  # until the workers have drained the bucket, so the victim is mid-hammer
        os.kill(victim.pid or 0, signal.SIGKILL)  # lands anywhere, often inside take()
        pid, allowed, attempts, _, _ = results.get(timeout=30)
        assert pid == survivor.pid
        assert allowed > 0
        assert attempts > 1000
        assert buckets.take(b"shared", RATE, BURST, time.monotonic()) is not None
    finally:
        _stop([victim, survivor])
    assert victim.exitcode == -signal.SIGKILL
    assert survivor.exitcode == 0
