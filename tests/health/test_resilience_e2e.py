"""Resilience of an in-process gateway against real origins on loopback: retries on another target
(and what is never retried), the retry budget, passive outlier ejection and readmission, fail-open,
the circuit breaker, route rate limits and active health checks.

Waits are on events (a handler reached, a gate released) or, for state the gateway changes on its
own clock (ejection, health checks), on a polled condition with a deadline (:func:`until`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pulsegate.config import ConfigError, load_config_text
from pulsegate.health.monitor import check_specs
from pulsegate.metrics.exposition import event_families
from pulsegate.origin import Origin, Reply, Request
from pulsegate.proxy.server import Server
from tests.support import Client, Response, arun, gateway_config, origins, running_gateway

OK_BODY = b"ok"


def ok(req: Request) -> Reply:
    return Reply(200, body=OK_BODY)


def status(code: int) -> Callable[[Request], Reply]:
    return lambda req: Reply(code, body=b"from origin %d" % code)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait for ``cond`` (state the gateway changes on its own clock), at most ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, f"not reached within {timeout}s: {what}"
        await asyncio.sleep(0.01)


def events(server: Server) -> dict[str, int]:
    return dict(server.registry.events)


def exposition(server: Server) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The worker's event counters as Prometheus renders them (sample name -> [(labels, value)])."""

    class Events(Collector):
        def collect(self) -> Iterable[Any]:
            return event_families(server.registry.events)

    reg = CollectorRegistry()
    reg.register(Events())
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


async def request(port: int, method: str = "GET", path: str = "/", **kw: Any) -> Response:
    """One request on its own connection."""
    c = await Client.connect(port)
    try:
        if method == "POST" and "body" not in kw:
            kw["body"] = b"payload"
        return await c.request(method, path, **kw)
    finally:
        await c.close()


@dataclass
class RawUpstream:
    """A raw TCP upstream that reads each request (head and Content-Length body) and then resets
    the connection without answering. Records method and request id of each request."""

    port: int = 0
    seen: list[tuple[bytes, bytes]] = field(default_factory=list)
    log: list[tuple[str, bytes]] | None = None
    name: str = "reset"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def methods(self) -> list[bytes]:
        return [m for m, _ in self.seen]


@contextlib.asynccontextmanager
async def resetting_upstream(
    log: list[tuple[str, bytes]] | None = None, name: str = "reset"
) -> AsyncIterator[RawUpstream]:
    up = RawUpstream(log=log, name=name)

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await r.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            fields = dict(
                (n.strip().lower(), v.strip()) for n, _, v in (ln.partition(b":") for ln in lines[1:] if ln)
            )
            length = int(fields.get(b"content-length", b"0"))
            if length:
                await r.readexactly(length)
            rid = fields.get(b"x-request-id", b"")
            up.seen.append((lines[0].split(b" ")[0], rid))
            if up.log is not None:
                up.log.append((up.name, rid))
        w.transport.abort()  # RST: the request was read, no answer will come

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    up.port = int(srv.sockets[0].getsockname()[1])
    try:
        yield up
    finally:
        srv.close()


def upstream_opts(**opts: Any) -> dict[str, Any]:
    return {"upstream_options": {"u": opts}}


ROUTES = [{"name": "app", "upstream": "u"}]


# -- 1-6: retries --------------------------------------------------------------------------------


def test_connect_failure_is_retried_on_another_target_for_any_method() -> None:
    async def main() -> None:
        closed = f"127.0.0.1:{free_port()}"
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [closed, o.target]}, ROUTES)
            async with running_gateway(cfg) as (server, port):
                c = await Client.connect(port)
                got = [
                    await c.request("GET"),
                    await c.request("POST", body=b"payload-1"),
                    await c.request("GET"),
                    await c.request("POST", body=b"payload-2"),
                ]
                await c.close()
                assert [r.status for r in got] == [200] * 4, got
                assert all(r.body == OK_BODY for r in got)
                up = server.runtime.upstreams["u"]
                refused = up.pools[up.targets[0]].stats.connect_failures
                assert refused >= 2  # round robin sent half of the first tries to the closed port
                assert events(server).get("retries\tu") == refused
        # Nothing was sent to the closed port, so the POSTs went through exactly once, body intact.
        assert [(r.method, r.body) for r in o.requests] == [
            (b"GET", b""),
            (b"POST", b"payload-1"),
            (b"GET", b""),
            (b"POST", b"payload-2"),
        ]

    arun(main(), timeout=10)


def test_reset_after_the_request_is_retried_for_get_but_not_for_post() -> None:
    async def main() -> None:
        async with resetting_upstream() as bad, origins(ok) as (good,):
            cfg = gateway_config({"u": [bad.target, good.target]}, ROUTES)
            async with running_gateway(cfg) as (server, port):
                # Round robin from the first target: each of these tries the resetting one first.
                get_resp = await request(port, "GET")
                post_resp = await request(port, "POST", body=b"charge-card")
                assert get_resp.status == 200 and get_resp.body == OK_BODY
                assert post_resp.status == 502, post_resp
                assert b"upstream" in post_resp.body
                assert events(server).get("retries\tu") == 1
        # The upstream may have acted on the POST: it must not be sent anywhere a second time.
        assert bad.methods() == [b"GET", b"POST"]
        assert [r.method for r in good.requests] == [b"GET"]

    arun(main(), timeout=10)


def test_503_is_retried_for_idempotent_requests_on_another_target_and_surfaces_with_one_attempt() -> None:
    async def main() -> None:
        async with origins(status(503), ok) as (busy, good):
            cfg = gateway_config({"u": [busy.target, good.target]}, ROUTES)
            async with running_gateway(cfg) as (server, port):
                # Round robin from the first target: each of these tries the 503 one first.
                resp = await request(port, "GET")
                assert resp.status == 200 and resp.body == OK_BODY
                put = await request(port, "PUT", body=b"put-body")
                assert put.status == 200
                # Not idempotent: the 503 answer is passed through as it is.
                post = await request(port, "POST")
                assert post.status == 503 and post.body == b"from origin 503"
                assert events(server).get("retries\tu") == 2
                target = server.runtime.upstreams["u"].targets[0]
                assert target.errors == 3  # each 503 counts towards outlier ejection
            assert [r.method for r in busy.requests] == [b"GET", b"PUT", b"POST"]
            # The retried PUT carried its whole body again.
            assert [(r.method, r.body) for r in good.requests] == [(b"GET", b""), (b"PUT", b"put-body")]

            cfg = gateway_config(
                {"u": [busy.target, good.target]}, ROUTES, **upstream_opts(retries={"attempts": 1})
            )
            async with running_gateway(cfg) as (server, port):
                resp = await request(port, "GET")
                assert resp.status == 503 and resp.body == b"from origin 503"
                assert events(server) == {}  # attempts: 1 is not a spent budget
            assert len(good.requests) == 2

    arun(main(), timeout=10)


@pytest.mark.parametrize(("per_try", "low", "high"), [(0.2, 0.2, 1.5), (0.05, 0.05, 0.15)])
def test_per_try_timeout_moves_on_to_another_target_before_the_read_timeout(
    per_try: float, low: float, high: float
) -> None:
    """A stalled attempt is abandoned after per_try_timeout (within the sweeper's precision, a
    tenth of the shortest timeout, per_try_timeout included), long before the read timeout."""
    never = asyncio.Event()

    async def stall(req: Request) -> Reply:
        await never.wait()
        return Reply(200)

    async def main() -> None:
        async with origins(stall, ok) as (slow, good):
            cfg = gateway_config(
                {"u": [slow.target, good.target]},
                ROUTES,
                **upstream_opts(timeouts={"read": "10s"}, retries={"per_try_timeout": f"{per_try}s"}),
            )
            async with running_gateway(cfg) as (server, port):
                loop = asyncio.get_running_loop()
                start = loop.time()
                resp = await request(port, "GET")
                elapsed = loop.time() - start
                assert resp.status == 200 and resp.body == OK_BODY
                assert low <= elapsed < high, elapsed
                assert len(slow.requests) == 1 and len(good.requests) == 1
                up = server.runtime.upstreams["u"]
                assert up.pools[up.targets[0]].stats.timeouts == 1
                assert all(t.inflight == 0 for t in up.targets)

    arun(main(), timeout=10)


def test_exhausted_retry_budget_surfaces_the_failure_and_is_counted() -> None:
    async def main() -> None:
        async with origins(status(503), ok) as (busy, good), resetting_upstream() as bad:
            for first, expected in ((busy.target, 503), (bad.target, 502)):
                cfg = gateway_config(
                    {"u": [first, good.target]},
                    ROUTES,
                    **upstream_opts(retries={"budget": "0%", "min_per_second": 0}),
                )
                async with running_gateway(cfg) as (server, port):
                    resp = await request(port, "GET")
                    assert resp.status == expected, resp
                    assert events(server) == {"retry_budget_exhausted\tu": 1}
                    samples = exposition(server)
                    assert samples["pulsegate_upstream_retry_budget_exhausted_total"] == [
                        ({"upstream": "u"}, 1.0)
                    ]
                    assert "pulsegate_upstream_retries_total" not in samples
            assert good.requests == []

    arun(main(), timeout=10)


def test_a_retry_never_goes_back_to_the_target_that_just_failed() -> None:
    log: list[tuple[str, bytes]] = []

    def recording(name: str, reply: Reply) -> Callable[[Request], Reply]:
        def handle(req: Request) -> Reply:
            log.append((name, req.header("x-request-id") or b""))
            return reply

        return handle

    async def main() -> None:
        async with (
            origins(recording("busy", Reply(503)), recording("good", Reply(200, body=OK_BODY))) as (
                busy,
                good,
            ),
            resetting_upstream(log, "reset") as bad,
        ):
            cfg = gateway_config(
                {"u": [busy.target, bad.target, good.target]},
                ROUTES,
                # Every failure may be retried (budget), and no target leaves the rotation (outlier).
                **upstream_opts(
                    outlier=False, retries={"attempts": 3, "budget": "100%", "min_per_second": 100}
                ),
            )
            async with running_gateway(cfg) as (_, port):
                statuses: dict[bytes, int] = {}
                for _ in range(30):
                    resp = await request(port, "GET")
                    rid = resp.header("x-request-id")
                    assert rid is not None
                    statuses[rid] = resp.status
        paths: dict[bytes, list[str]] = {}
        for name, rid in log:
            paths.setdefault(rid, []).append(name)
        assert paths.keys() == statuses.keys()
        for rid, path in paths.items():
            assert 1 <= len(path) <= 3, path
            assert all(x != y for x, y in itertools.pairwise(path)), path
            assert statuses[rid] == (200 if path[-1] == "good" else 503 if path[-1] == "busy" else 502), (
                path,
                statuses[rid],
            )
            if path[-1] != "good":
                assert len(path) == 3  # gave up only after every attempt
        # Both failing targets were met in a row by some requests: the scenario was exercised.
        assert any(p[:2] in (["busy", "reset"], ["reset", "busy"]) for p in paths.values()), paths

    arun(main(), timeout=15)


# -- 7-8: outlier ejection and fail-open ---------------------------------------------------------


def test_consecutive_5xx_eject_a_target_until_base_ejection_time_passes() -> None:
    async def main() -> None:
        async with origins(status(500), ok) as (broken, good):
            cfg = gateway_config(
                {"u": [broken.target, good.target]},
                ROUTES,
                **upstream_opts(outlier={"consecutive_5xx": 3, "base_ejection_time": "300ms"}),
            )
            async with running_gateway(cfg) as (server, port):
                up = server.runtime.upstreams["u"]
                target = up.targets[0]
                c = await Client.connect(port)
                seen = [(await c.request()).status for _ in range(6)]
                assert seen == [500, 200] * 3  # 500 is not a gateway error: not retried
                assert not target.available
                state = next(s for s in server.target_states() if s.address == broken.target)
                assert not state.available and state.healthy
                assert state.eject_reason == "3 consecutive errors" and state.ejections == 1
                assert state.ejected_until > 0
                assert events(server)["ejections\tu\t" + broken.target] == 1

                ejected_at = len(broken.requests)
                for _ in range(5):
                    assert (await c.request()).status == 200
                assert len(broken.requests) == ejected_at  # out of rotation

                loop = asyncio.get_running_loop()
                t0 = loop.time()
                await until(lambda: target.available, "readmitted after base_ejection_time", timeout=3)
                assert loop.time() - t0 < 1.0
                assert (
                    next(s for s in server.target_states() if s.address == broken.target).eject_reason == ""
                )
                seen = [(await c.request()).status for _ in range(4)]
                assert 500 in seen and len(broken.requests) > ejected_at  # back in rotation
                await c.close()

    arun(main(), timeout=10)


def test_max_ejected_percent_keeps_one_of_two_failing_targets_in_rotation() -> None:
    async def main() -> None:
        async with origins(status(500), status(500)) as (a, b):
            cfg = gateway_config(
                {"u": [a.target, b.target]},
                ROUTES,
                **upstream_opts(
                    outlier={"consecutive_5xx": 2, "base_ejection_time": "30s", "max_ejected_percent": 50}
                ),
            )
            async with running_gateway(cfg) as (server, port):
                c = await Client.connect(port)
                for _ in range(10):
                    assert (await c.request()).status == 500
                await c.close()
                up = server.runtime.upstreams["u"]
                assert up.outlier is not None and len(up.outlier.ejected) == 1
                assert sum(t.available for t in up.targets) == 1
                assert sum(k.startswith("ejections\t") for k in events(server)) == 1
            # The one left in rotation took everything after the ejection.
            assert sorted([len(a.requests), len(b.requests)]) == [2, 8]

    arun(main(), timeout=10)


def test_fail_open_when_every_target_is_ejected() -> None:
    async def eject_both(server: Server, port: int) -> None:
        c = await Client.connect(port)
        for _ in range(2):
            assert (await c.request()).status == 500
        await c.close()
        assert not any(t.available for t in server.runtime.upstreams["u"].targets)

    async def main() -> None:
        async with origins(status(500), status(500)) as (a, b):
            outlier = {"consecutive_5xx": 1, "base_ejection_time": "30s", "max_ejected_percent": 100}
            cfg = gateway_config({"u": [a.target, b.target]}, ROUTES, **upstream_opts(outlier=outlier))
            async with running_gateway(cfg) as (server, port):
                await eject_both(server, port)
                # fail_open (default): the targets are tried anyway, the client sees their answer.
                for _ in range(4):
                    assert (await request(port)).status == 500
                assert len(a.requests) + len(b.requests) == 6

            cfg = gateway_config(
                {"u": [a.target, b.target]}, ROUTES, **upstream_opts(outlier=outlier, fail_open=False)
            )
            async with running_gateway(cfg) as (server, port):
                await eject_both(server, port)
                resp = await request(port)
                assert resp.status == 503 and b"no available target in upstream 'u'" in resp.body
                assert len(a.requests) + len(b.requests) == 8

    arun(main(), timeout=10)


# -- 9: circuit breaker --------------------------------------------------------------------------


@dataclass
class Gate:
    """An origin handler that holds each request until released; ``arrived`` counts them."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Queue[Request] = field(default_factory=asyncio.Queue)

    async def __call__(self, req: Request) -> Reply:
        self.arrived.put_nowait(req)
        await self.opened.wait()
        return Reply(200, body=OK_BODY)

    async def wait_arrivals(self, n: int) -> None:
        for _ in range(n):
            await asyncio.wait_for(self.arrived.get(), 5)


def spawn(coro: Awaitable[Response]) -> asyncio.Task[Response]:
    async def run() -> Response:
        return await coro

    return asyncio.get_running_loop().create_task(run())


def test_max_in_flight_refuses_at_once_with_retry_after() -> None:
    async def main() -> None:
        gate = Gate()
        async with origins(gate) as (o,):
            cfg = gateway_config(
                {"u": [o.target]},
                ROUTES,
                **upstream_opts(circuit_breaker={"max_in_flight": 2, "retry_after": "2s"}),
            )
            async with running_gateway(cfg) as (server, port):
                held = [spawn(request(port)) for _ in range(2)]
                await gate.wait_arrivals(2)
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                third = await request(port)
                assert loop.time() - t0 < 0.5
                assert third.status == 503 and third.header("retry-after") == b"2"
                assert b"over its limits" in third.body
                gate.opened.set()
                assert [(await t).status for t in held] == [200, 200]
                assert (await request(port)).status == 200  # capacity is back
                assert events(server) == {"breaker_trips\tu\tin_flight": 1}
            assert len(o.requests) == 3

    arun(main(), timeout=10)


def test_max_pending_zero_refuses_a_request_that_would_wait_for_a_connection() -> None:
    async def main() -> None:
        gate = Gate()
        async with origins(gate) as (o,):
            cfg = gateway_config(
                {"u": [o.target]},
                ROUTES,
                **upstream_opts(pool={"max_connections": 1}, circuit_breaker={"max_pending": 0}),
            )
            async with running_gateway(cfg) as (server, port):
                first = spawn(request(port))
                await gate.wait_arrivals(1)
                second = await request(port)
                assert second.status == 503 and second.header("retry-after") == b"1"
                gate.opened.set()
                assert (await first).status == 200
                assert events(server) == {"breaker_trips\tu\tpending": 1}
                up = server.runtime.upstreams["u"]
                assert all(t.inflight == 0 for t in up.targets)  # the refused request left no count
            assert len(o.requests) == 1

    arun(main(), timeout=10)


def test_max_connections_across_targets_makes_a_request_wait_then_succeed() -> None:
    """The second request waits while the first holds the upstream's only connection; once that
    one is idle in the first target's pool it is closed to make room (not kept until the waiter's
    connect timeout)."""

    async def main() -> None:
        gate_a, gate_b = Gate(), Gate()
        async with origins(gate_a, gate_b) as (a, b):
            cfg = gateway_config(
                {"u": [a.target, b.target]}, ROUTES, **upstream_opts(circuit_breaker={"max_connections": 1})
            )
            async with running_gateway(cfg) as (server, port):
                br = server.runtime.upstreams["u"].breaker
                assert br is not None
                first = spawn(request(port))
                await gate_a.wait_arrivals(1)
                second = spawn(request(port))  # round robin: target b, no connection allowed
                await until(lambda: br.pending() == 1, "second request pending")
                assert b.requests == [] and not second.done()
                gate_a.opened.set()
                gate_b.opened.set()
                assert (await first).status == 200
                resp = await asyncio.wait_for(second, 1.5)  # well before the 2 s connect timeout
                assert resp.status == 200, resp
                assert events(server) == {"breaker_trips\tu\tconnections": 1}
                assert br.connections() <= 1
                # Sequential requests alternate targets: each takes the slot of the other's idle
                # connection at once instead of waiting for it.
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                assert [(await request(port)).status for _ in range(4)] == [200] * 4
                assert loop.time() - t0 < 1.5
                assert len(a.requests) == len(b.requests) == 3
                assert br.connections() <= 1

    arun(main(), timeout=10)


# -- 10: rate limits -----------------------------------------------------------------------------


def rate_route(key: str = "client_ip", rate: str = "1/m", burst: int = 3) -> list[dict[str, Any]]:
    return [{"name": "app", "upstream": "u", "rate_limit": {"rate": rate, "burst": burst, "key": key}}]


async def from_address(port: int, local: str, headers: tuple[tuple[str, str], ...] = ()) -> int:
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    c = Client(r, w)
    try:
        return (await c.request(headers=(("Host", "test"), *headers))).status
    finally:
        await c.close()


def test_rate_limit_burst_then_429_with_ratelimit_headers() -> None:
    async def main() -> None:
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [o.target]}, rate_route(rate="2/s", burst=3))
            async with running_gateway(cfg) as (server, port):
                c = await Client.connect(port)
                got = [await c.request() for _ in range(4)]
                await c.close()
                assert [r.status for r in got] == [200, 200, 200, 429]
                refused = got[3]
                assert refused.keep_alive  # a 429 does not cost the client its connection
                assert b"rate limit exceeded" in refused.body
                retry_after = int(refused.header("retry-after") or b"-1")
                assert retry_after == 1  # one token at 2/s is 0.5 s away, in whole seconds
                assert refused.header("ratelimit-limit") == b"3"
                assert refused.header("ratelimit-remaining") == b"0"
                reset = int(refused.header("ratelimit-reset") or b"-1")
                assert retry_after <= reset <= 2  # a full bucket (3 tokens at 2/s) is 1.5 s away
                assert refused.header("ratelimit-policy") == b"3;w=2"
                assert all(r.header("ratelimit-limit") is None for r in got[:3])
                assert events(server) == {"rate_limited\tapp": 1}
                assert exposition(server)["pulsegate_rate_limited_total"] == [({"route": "app"}, 1.0)]
                # The bucket refills at the configured rate.
                await asyncio.sleep(retry_after)  # the advertised wait is enough, by contract
                assert (await request(port)).status == 200
            assert len(o.requests) == 4

    arun(main(), timeout=10)


def test_rate_limit_keys_client_ip_header_and_route() -> None:
    async def main() -> None:
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [o.target]}, rate_route("client_ip", burst=2))
            async with running_gateway(cfg) as (_, port):
                assert [await from_address(port, "127.0.0.1") for _ in range(3)] == [200, 200, 429]
                assert await from_address(port, "127.0.0.2") == 200  # its own bucket

            cfg = gateway_config({"u": [o.target]}, rate_route("header:X-Api-Key", burst=2))
            async with running_gateway(cfg) as (_, port):
                k1, k2 = (("X-Api-Key", "k1"),), (("x-api-key", "k2"),)
                assert [await from_address(port, "127.0.0.1", k1) for _ in range(3)] == [200, 200, 429]
                # Another key has its own bucket, from any address; the same key is limited anywhere.
                assert await from_address(port, "127.0.0.1", k2) == 200
                assert await from_address(port, "127.0.0.2", k1) == 429
                # Requests without the header share one bucket.
                assert [await from_address(port, a) for a in ("127.0.0.1", "127.0.0.2", "127.0.0.3")] == [
                    200,
                    200,
                    429,
                ]

            cfg = gateway_config({"u": [o.target]}, rate_route("route", burst=2))
            async with running_gateway(cfg) as (_, port):
                assert await from_address(port, "127.0.0.1") == 200
                assert await from_address(port, "127.0.0.2") == 200
                assert await from_address(port, "127.0.0.3") == 429  # one bucket for the route
                assert await from_address(port, "127.0.0.1", (("X-Api-Key", "k1"),)) == 429

    arun(main(), timeout=10)


# -- 11: active health checks --------------------------------------------------------------------


def test_health_jitter_the_config_accepts_is_one_the_checker_accepts() -> None:
    """A config ``pulsegate check`` passes must not crash the checker at start (jitter < 100 %)."""

    def health(jitter: str) -> str:
        return gateway_config(
            {"u": ["127.0.0.1:9"]}, ROUTES, **upstream_opts(health={"path": "/healthz", "jitter": jitter})
        )

    (spec,) = check_specs(load_config_text(health("99%")))
    assert spec.jitter == 0.99
    for bad in ("100%", "1"):
        with pytest.raises(ConfigError, match="jitter"):
            load_config_text(health(bad))


def test_active_health_checks_take_a_target_out_after_fall_and_back_after_rise() -> None:
    healthy = {"value": True}

    def checked(req: Request) -> Reply:
        if req.path == b"/healthz":
            return Reply(200 if healthy["value"] else 500)
        return Reply(200, body=b"a")

    def other(req: Request) -> Reply:
        return Reply(200, body=b"b")

    def app_requests(o: Origin) -> int:
        return sum(r.path != b"/healthz" for r in o.requests)

    async def main() -> None:
        async with origins(checked, other) as (a, b):
            health = {
                "path": "/healthz",
                "interval": "50ms",
                "timeout": "1s",
                "rise": 2,
                "fall": 3,
                "jitter": 0,
            }
            cfg = gateway_config({"u": [a.target, b.target]}, ROUTES, **upstream_opts(health=health))
            async with running_gateway(cfg) as (server, port):
                target = server.runtime.upstreams["u"].targets[0]
                c = await Client.connect(port)
                assert sorted([(await c.request()).body for _ in range(2)]) == [b"a", b"b"]

                def checks() -> int:
                    return sum(r.path == b"/healthz" for r in a.requests)

                healthy["value"] = False
                failing_from = checks()
                await until(lambda: not target.healthy, "unhealthy after `fall` failed checks")
                # Three failed checks flipped it (the one in flight when switching may have passed).
                assert 3 <= checks() - failing_from <= 5
                state = next(s for s in server.target_states() if s.address == a.target)
                assert not state.healthy and not state.available
                served = app_requests(a)
                assert [(await c.request()).body for _ in range(6)] == [b"b"] * 6
                assert app_requests(a) == served

                healthy["value"] = True
                passing_from = checks()
                await until(lambda: target.healthy, "healthy after `rise` passing checks")
                assert 2 <= checks() - passing_from <= 4
                assert b"a" in [(await c.request()).body for _ in range(4)]
                await c.close()
                ev = events(server)
                assert ev["health_transitions\tu\t" + a.target + "\tunhealthy"] == 1
                assert ev["health_transitions\tu\t" + a.target + "\thealthy"] == 1
                assert not any(k.startswith("ejections") for k in ev)

    arun(main(), timeout=10)


# -- regressions found in review ---------------------------------------------------------------------


def test_a_retry_refused_by_the_breaker_still_answers_the_client() -> None:
    """Both targets answer 503; the retry to the second is refused by max_connections 1 +
    max_pending 0 (the first target's dying connection still counts): the client must get that
    503 at once, not wait for a response nobody sends."""

    async def main() -> None:
        async with origins(status(503), status(503)) as (a, b):
            cfg = gateway_config(
                {"u": [a.target, b.target]},
                ROUTES,
                **upstream_opts(circuit_breaker={"max_connections": 1, "max_pending": 0}),
            )
            async with running_gateway(cfg) as (_, port):
                c = await Client.connect(port)
                try:
                    resp = await asyncio.wait_for(c.request("GET", "/"), 3)
                    assert resp.status == 503
                finally:
                    await c.close()

    arun(main(), timeout=10)


def test_per_try_timeout_does_not_cut_a_slow_upload() -> None:
    """per_try_timeout bounds the wait for the answer, not the client's upload: a body trickled
    over longer than it still gets through, and the target is not blamed."""

    async def main() -> None:
        async with origins(ok, ok) as (a, b):
            cfg = gateway_config(
                {"u": [a.target, b.target]}, ROUTES, **upstream_opts(retries={"per_try_timeout": "200ms"})
            )
            async with running_gateway(cfg) as (server, port):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
                for _ in range(5):  # 10 bytes over about 0.6 s
                    await asyncio.sleep(0.12)
                    writer.write(b"xx")
                    await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 200"), head
                writer.close()
                assert all(t.errors == 0 and t.available for t in server.runtime.upstreams["u"].targets)

    arun(main(), timeout=10)


def test_turning_health_checks_off_by_reload_readmits_unhealthy_targets() -> None:
    async def main() -> None:
        async with origins(ok) as (o,):
            base = {"u": [o.target]}
            checked = gateway_config(
                base, ROUTES, **upstream_opts(fail_open=False, health={"path": "/healthz"})
            )
            async with running_gateway(checked) as (server, port):
                server.health_verdict("u", o.target, False, False)  # what a failing check does
                assert (await request(port)).status == 503
                server.apply(load_config_text(gateway_config(base, ROUTES, **upstream_opts(fail_open=False))))
                assert (await request(port)).status == 200

    arun(main(), timeout=10)


def test_health_path_must_be_visible_ascii() -> None:
    with pytest.raises(ConfigError, match=r"health\.path"):
        load_config_text(
            gateway_config({"u": ["127.0.0.1:1"]}, ROUTES, **upstream_opts(health={"path": "/santé"}))
        )


def test_a_client_that_left_while_queued_no_longer_counts_as_pending() -> None:
    """max_pending 1: a queued request whose client disconnects frees its place, so the next
    request may queue instead of getting 503 until the dead one's connect timeout."""

    async def main() -> None:
        gate = Gate()
        async with origins(gate) as (o,):
            cfg = gateway_config(
                {"u": [o.target]},
                ROUTES,
                **upstream_opts(
                    pool={"max_connections": 1},
                    circuit_breaker={"max_pending": 1},
                    timeouts={"connect": "10s"},  # a dead waiter would hold its place this long
                ),
            )
            async with running_gateway(cfg) as (server, port):
                first = spawn(request(port))
                await gate.wait_arrivals(1)
                quitter = await Client.connect(port)
                quitter.writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                pool = server.runtime.upstreams["u"].pools[server.runtime.upstreams["u"].targets[0]]
                await until(lambda: len(pool.waiters) == 1, "the second request queues")
                # Gone for good: a reset (a FIN alone is a half-close, and is still answered).
                sock = quitter.writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                quitter.writer.transport.abort()
                await until(lambda: not pool.waiters, "the quitter's place is freed", timeout=1.0)
                third = spawn(request(port))
                await until(lambda: len(pool.waiters) == 1, "the third request queues")
                gate.opened.set()
                assert (await first).status == 200
                assert (await third).status == 200
                assert events(server) == {}  # no breaker trip

    arun(main(), timeout=10)
