"""The upstream pool's limits, seen from outside: a real gateway, a real origin that counts
connections."""

from __future__ import annotations

import asyncio

from pulsegate.balancing.target import Target
from pulsegate.origin import Reply, Request
from pulsegate.proxy.pool import TargetPool
from pulsegate.proxy.upstream import UpstreamConnection
from tests.support import Client, arun, gateway_config, get, origins, running_gateway


def test_max_connections_queues_then_reuses_one_connection() -> None:
    release, arrived = asyncio.Event(), asyncio.Event()

    async def gated(req: Request) -> Reply:
        if req.path == b"/first":
            arrived.set()
            await release.wait()
        return Reply(200, body=req.path)

    async def main() -> None:
        async with origins(gated) as (o,):
            cfg = gateway_config(
                {"u": [o.target]},
                [{"upstream": "u"}],
                upstream_options={"u": {"pool": {"max_connections": 1, "max_idle": 1}}},
            )
            async with running_gateway(cfg) as (_, port):
                first = asyncio.create_task(get(port, "/first"))
                await arrived.wait()  # the origin holds /first: the only connection is busy
                second = asyncio.create_task(get(port, "/second"))
                await asyncio.sleep(0.05)  # a negative check: give /second a chance to (wrongly) pass
                assert [r.path for r in o.requests] == [b"/first"]  # /second waits for the pool
                release.set()
                r1, r2 = await first, await second
        assert (r1.body, r2.body) == (b"/first", b"/second")
        assert o.state.connections == 1

    arun(main())


def test_waiting_past_the_connect_timeout_gets_503() -> None:
    never, arrived = asyncio.Event(), asyncio.Event()

    async def stall(req: Request) -> Reply:
        arrived.set()
        await never.wait()
        return Reply(200)

    async def main() -> None:
        async with origins(stall) as (o,):
            cfg = gateway_config(
                {"u": [o.target]},
                [{"upstream": "u"}],
                upstream_options={
                    "u": {"pool": {"max_connections": 1, "max_idle": 1}, "timeouts": {"connect": "200ms"}}
                },
            )
            async with running_gateway(cfg) as (_, port):
                c1 = await Client.connect(port)
                c1.writer.write(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
                await arrived.wait()
                resp = await get(port, "/queued")
                assert resp.status == 503 and b"no upstream connection available" in resp.body
                await c1.close()

    arun(main())


def test_preserve_host_false_sends_the_target_address() -> None:
    async def main() -> None:
        async with origins(lambda r: Reply(200)) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u", "preserve_host": False}])
            async with running_gateway(cfg) as (_, port):
                await get(port, headers=[("Host", "public.example")])
        assert o.requests[0].header("host") == o.target.encode()
        assert o.requests[0].header("x-forwarded-host") == b"public.example"

    arun(main())


def test_raising_max_connections_on_reload_serves_the_waiting_requests() -> None:
    async def main() -> None:
        async with origins(lambda req: Reply(200, body=b"ok")) as (o,):
            pool = TargetPool(
                Target(o.target), max_idle=1, max_connections=1, idle_timeout=60.0, connect_timeout=5.0
            )
            got: list[object] = []
            ready = asyncio.Event()

            def on_ready(conn: UpstreamConnection | None, err: object) -> None:
                got.append(conn if conn is not None else err)
                if conn is not None:
                    conn.close()
                ready.set()

            def first(conn: UpstreamConnection | None, err: object) -> None:
                if conn is not None:
                    conn.close()

            pool.acquire(first, 0.0)  # takes the only slot (connecting)
            pool.acquire(on_ready, 0.0)  # has to wait
            assert len(pool.waiters) == 1
            pool.configure(max_idle=1, max_connections=2, idle_timeout=60.0, connect_timeout=5.0)
            assert not pool.waiters
            await ready.wait()
            assert got and not isinstance(got[0], Exception)
            pool.close()

    arun(main())
