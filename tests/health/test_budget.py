"""The retry budget (:mod:`pulsegate.health.budget`) over injected time, and the circuit breaker's
thresholds and counts (:mod:`pulsegate.health.breaker`) over real target pools."""

from __future__ import annotations

import asyncio
import doctest

import pytest

import pulsegate.health.breaker as breaker_module
import pulsegate.health.budget as budget_module
from pulsegate.balancing.target import Target
from pulsegate.config.resilience import CircuitBreakerConfig, RetriesConfig
from pulsegate.errors import GatewayError
from pulsegate.health.breaker import Breaker
from pulsegate.health.budget import WINDOW_SLOTS, RetryBudget
from pulsegate.origin import Reply
from pulsegate.proxy.pool import TargetPool
from pulsegate.proxy.upstream import UpstreamConnection
from tests.support import arun, origins


def test_docstring_examples() -> None:
    assert doctest.testmod(budget_module).failed == 0
    assert doctest.testmod(breaker_module).failed == 0


# -- retry budget ------------------------------------------------------------------------------


def withdraw_all(b: RetryBudget, limit: int = 10_000) -> int:
    """How many retries the budget grants right now."""
    n = 0
    while n < limit and b.try_withdraw():
        n += 1
    return n


def test_ratio_of_requests_in_the_window() -> None:
    b = RetryBudget(ratio=0.2, min_per_second=0.0, now=0.0)
    b.requests += 50
    assert withdraw_all(b) == 10
    b.requests += 5  # one more retry's worth
    assert withdraw_all(b) == 1


def test_zero_budget_grants_nothing() -> None:
    b = RetryBudget(ratio=0.0, min_per_second=0.0)
    b.requests += 1000
    assert not b.try_withdraw()


def test_min_per_second_is_a_reserve_over_the_window() -> None:
    b = RetryBudget(ratio=0.0, min_per_second=2.0)
    assert withdraw_all(b) == 2 * WINDOW_SLOTS  # no traffic yet: still a few retries


def test_requests_and_retries_expire_after_the_window() -> None:
    b = RetryBudget(ratio=0.5, min_per_second=0.0, now=0.0)
    b.requests += 20
    assert withdraw_all(b) == 10
    for second in range(1, WINDOW_SLOTS):
        b.tick(float(second))
        assert not b.try_withdraw()  # 20 requests and 10 retries still in the window
    b.tick(WINDOW_SLOTS - 0.01)
    b.requests += 2  # new traffic buys one retry
    assert withdraw_all(b) == 1
    b.tick(float(WINDOW_SLOTS))  # the first second left the window
    assert b.try_withdraw() is False  # 2 requests, 1 retry: nothing left
    b.requests += 8
    assert withdraw_all(b) == 4


def test_tick_is_idempotent_within_a_slot() -> None:
    b = RetryBudget(ratio=1.0, min_per_second=0.0, now=0.0)
    b.requests += 3
    for t in (0.1, 0.5, 0.99):
        b.tick(t)
    assert withdraw_all(b) == 3


def test_long_pause_clears_the_window() -> None:
    b = RetryBudget(ratio=0.1, min_per_second=0.0, now=0.0)
    b.requests += 100
    assert withdraw_all(b) == 10
    b.tick(1000.0)  # the sweeper was not running (or the upstream idle) for a long time
    assert withdraw_all(b) == 0
    b.requests += 10
    assert withdraw_all(b) == 1
    b.tick(1001.0)
    b.requests += 10
    assert withdraw_all(b) == 1  # 20 requests and 1 retry in the window


def test_config_defaults_give_twenty_percent_plus_reserve() -> None:
    rc = RetriesConfig()
    b = RetryBudget(rc.budget, rc.min_per_second)
    b.requests += 100
    assert withdraw_all(b) == 20 + 3 * WINDOW_SLOTS


# -- circuit breaker ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "workers", "share"),
    [(None, 4, None), (0, 4, 0), (1, 4, 1), (10, 1, 10), (10, 3, 4), (10, 4, 3), (7, 2, 4)],
)
def test_each_worker_enforces_its_share(limit: int | None, workers: int, share: int | None) -> None:
    cfg = CircuitBreakerConfig(max_connections=max(1, limit or 1), max_pending=limit, max_in_flight=None)
    br = Breaker(cfg, workers)
    assert br.max_pending == share
    assert br.max_in_flight is None
    if share is not None:
        assert share * workers < (limit or 0) + workers  # the gateway stays within limit + N - 1


@pytest.mark.parametrize(("after", "header"), [(0.1, b"1"), (1.0, b"1"), (1.5, b"2"), (30.0, b"30")])
def test_retry_after_is_whole_seconds_rounded_up(after: float, header: bytes) -> None:
    assert Breaker(CircuitBreakerConfig(retry_after=after)).retry_after == header


def pools(
    n: int, breaker: Breaker, max_idle: int = 4, addresses: list[str] | None = None
) -> list[TargetPool]:
    made = [
        TargetPool(
            Target(address),
            max_idle=max_idle,
            max_connections=8,
            idle_timeout=60.0,
            connect_timeout=2.0,
        )
        for address in addresses or [f"127.0.0.1:{9000 + i}" for i in range(n)]
    ]
    for p in made:
        p.breaker = breaker
    breaker.pools = made
    return made


def test_counts_are_summed_over_the_pools() -> None:
    br = Breaker(CircuitBreakerConfig(max_connections=3))
    a, b = pools(2, br)
    a.target.inflight, b.target.inflight = 2, 1
    a.busy, b.busy = 1, 1
    b.waiters.append((0.0, lambda c, e: None))
    assert (br.in_flight(), br.pending(), br.connections()) == (3, 1, 2)
    assert br.may_connect()
    a.busy = 2
    assert not br.may_connect()


def test_without_max_connections_anything_may_connect() -> None:
    br = Breaker(CircuitBreakerConfig(max_in_flight=1))
    (a,) = pools(1, br)
    a.busy = 10_000
    assert br.may_connect()


def test_max_connections_across_pools_queues_then_kicks_the_waiter() -> None:
    """Real connections: a second pool's request waits while the first pool holds the upstream's
    only connection, and opens its own once that one closes."""
    trips: list[str] = []
    ready: list[tuple[str, UpstreamConnection | None, GatewayError | None]] = []

    async def main() -> None:
        async with origins(lambda r: Reply(200), lambda r: Reply(200)) as (o1, o2):
            br = Breaker(CircuitBreakerConfig(max_connections=1))
            br.on_trip = trips.append
            a, b = pools(2, br, max_idle=0, addresses=[o1.target, o2.target])
            got = asyncio.Event()

            def on_ready(name: str) -> object:
                def cb(conn: UpstreamConnection | None, err: GatewayError | None) -> None:
                    ready.append((name, conn, err))
                    got.set()

                return cb

            loop = asyncio.get_running_loop()
            assert a.acquire(on_ready("a"), loop.time())  # type: ignore[arg-type]
            await asyncio.wait_for(got.wait(), 5)
            got.clear()
            assert b.acquire(on_ready("b"), loop.time())  # type: ignore[arg-type]
            assert trips == ["connections"] and len(b.waiters) == 1 and br.pending() == 1
            conn = ready[0][1]
            assert conn is not None
            a.release(conn, loop.time())  # max_idle 0: closed, which frees the upstream's slot
            await asyncio.wait_for(got.wait(), 5)
            name, conn_b, err = ready[1]
            assert name == "b" and conn_b is not None and err is None
            assert conn_b.pool is b
            b.release(conn_b, loop.time())
            a.close()
            b.close()

    arun(main(), timeout=10)


def test_an_idle_connection_in_another_pool_does_not_starve_a_waiter() -> None:
    """At max_connections, a connection idle in one pool is closed for a waiter in another."""

    async def main() -> None:
        async with origins(lambda r: Reply(200), lambda r: Reply(200)) as (o1, o2):
            br = Breaker(CircuitBreakerConfig(max_connections=1))
            a, b = pools(2, br, max_idle=4, addresses=[o1.target, o2.target])
            conns: asyncio.Queue[UpstreamConnection | None] = asyncio.Queue()
            loop = asyncio.get_running_loop()
            try:
                a.acquire(lambda c, e: conns.put_nowait(c), loop.time())
                conn = await asyncio.wait_for(conns.get(), 5)
                assert conn is not None
                b.acquire(lambda c, e: conns.put_nowait(c), loop.time())
                assert br.pending() == 1
                a.release(conn, loop.time())  # its request is done: the connection goes idle
                served = await asyncio.wait_for(conns.get(), 0.5)
                assert served is not None and served.pool is b
                assert br.connections() <= 1
            finally:
                a.close()
                b.close()

    arun(main(), timeout=10)
