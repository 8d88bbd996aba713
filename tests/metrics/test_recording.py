"""What the data path records: real requests through a real gateway and origins, then the
worker's snapshot (the same one a worker pushes to the supervisor)."""

from __future__ import annotations

import asyncio
import socket
import struct

from pulsegate.metrics.histogram import percentile, total_count
from pulsegate.metrics.snapshot import ProcessSample, Snapshot
from pulsegate.metrics.stats import UNROUTED
from pulsegate.origin import Reply, Request
from pulsegate.proxy.server import Server
from tests.support import Client, arun, gateway_config, origins, raw, running_gateway


def take(server: Server) -> Snapshot:
    return server.registry.take(
        worker=1, pid=1, time=0.0, interval=1.0, process=ProcessSample(), pools=server.pool_gauges()
    )


def test_routes_targets_status_bytes_and_latency() -> None:
    async def slow(req: Request) -> Reply:
        await asyncio.sleep(0.02)  # the origin's own service time, which metrics must see
        return Reply(200, body=b"x" * 1000)

    async def main() -> None:
        async with (
            origins(slow) as (o,),
            running_gateway(
                gateway_config(
                    {"app": [o.target]}, [{"name": "app", "match": {"path_prefix": "/a"}, "upstream": "app"}]
                )
            ) as (server, port),
        ):
            c = await Client.connect(port)
            for _ in range(5):
                assert (await c.request("GET", "/a")).status == 200
            r = await c.request("POST", "/a", body=b"y" * 300)
            assert r.status == 200
            assert (await c.request("GET", "/missing")).status == 404
            snap = take(server)
            app = snap.routes["app"]
            assert app.requests == 6
            assert app.status[2] == 6
            assert app.bytes_in == 300
            assert app.bytes_out > 6 * 1000
            assert app.in_flight == 0
            assert total_count(app.total) == total_count(app.upstream) == total_count(app.overhead) == 6
            # 20 ms upstream service time shows in the upstream and total histograms, not the overhead.
            assert 20_000 <= percentile(app.upstream, 50) < 200_000
            assert percentile(app.total, 50) >= percentile(app.upstream, 50)
            assert percentile(app.overhead, 99) < 20_000
            unrouted = snap.routes[UNROUTED]
            assert unrouted.requests == 1 and unrouted.status[4] == 1
            target = snap.targets[f"app/{o.target}"]
            assert target.requests == 6 and target.status[2] == 6
            assert target.pool_idle == 1 and target.pool_active == 0 and target.in_flight == 0
            # take() returned deltas: the next snapshot starts from zero.
            again = take(server)
            assert again.routes["app"].requests == 0 and again.targets[f"app/{o.target}"].requests == 0
            await c.close()

    arun(main())


def test_upstream_failures_are_counted() -> None:
    async def main() -> None:
        cfg = gateway_config(
            {"down": ["127.0.0.1:9"]},
            [{"name": "down", "match": {"path_prefix": "/"}, "upstream": "down"}],
        )
        async with running_gateway(cfg) as (server, port):
            c = await Client.connect(port)
            assert (await c.request("GET", "/x")).status == 502
            snap = take(server)
            assert snap.routes["down"].status[5] == 1
            assert snap.targets["down/127.0.0.1:9"].connect_failures == 1
            await c.close()

    arun(main())


def test_malformed_request_counts_as_unrouted_4xx() -> None:
    async def main() -> None:
        async with running_gateway(gateway_config({}, [])) as (server, port):
            reply = await raw(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 400")
            snap = take(server)
            assert snap.routes[UNROUTED].status[4] == 1
            assert snap.process.accepted == 1

    arun(main())


def test_client_that_leaves_is_counted_as_499() -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def hang(req: Request) -> Reply:
        arrived.set()
        await gate.wait()
        return Reply(200)

    async def main() -> None:
        async with (
            origins(hang) as (o,),
            running_gateway(gateway_config({"app": [o.target]}, [{"name": "app", "upstream": "app"}])) as (
                server,
                port,
            ),
        ):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            await w.drain()
            await arrived.wait()  # the exchange is in flight once the origin has it
            assert take(server).routes["app"].in_flight == 1
            # A reset, not a half-close (after a FIN the gateway still delivers the response).
            w.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            w.close()
            await w.wait_closed()
            while server.connections:  # connection_lost runs on a later loop iteration
                await asyncio.sleep(0)
            snap = take(server)
            assert snap.routes["app"].status[4] == 1 and snap.routes["app"].in_flight == 0
            gate.set()

    arun(main())


def test_reload_keeps_counting_into_the_same_route_and_pool() -> None:
    async def main() -> None:
        async with origins(lambda req: Reply(200, body=b"ok")) as (o,):
            routes = [{"name": "app", "match": {"path_prefix": "/"}, "upstream": "app"}]
            cfg = gateway_config({"app": [o.target]}, routes)
            async with running_gateway(cfg) as (server, port):
                c = await Client.connect(port)
                assert (await c.request("GET", "/")).status == 200
                pool = server.runtime.upstreams["app"].pools[server.runtime.upstreams["app"].targets[0]]
                from pulsegate.config import load_config_text

                server.apply(load_config_text(cfg + "limits: {max_pipelined: 8}\n"))
                pool2 = server.runtime.upstreams["app"].pools[server.runtime.upstreams["app"].targets[0]]
                assert pool2 is pool and len(pool.idle) == 1  # the warm connection survived the reload
                assert (await c.request("GET", "/")).status == 200
                assert take(server).routes["app"].requests == 2
                await c.close()

    arun(main())


def test_client_leaving_while_queued_for_a_connection_releases_the_target() -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def hang(req: Request) -> Reply:
        arrived.set()
        await gate.wait()
        return Reply(200, body=b"done")

    async def main() -> None:
        cfg = gateway_config(
            {"app": [o_target[0]]},
            [{"name": "app", "upstream": "app"}],
            upstream_options={"app": {"pool": {"max_connections": 1}}},
        )
        async with running_gateway(cfg) as (server, port):
            target = server.runtime.upstreams["app"].targets[0]
            first = await Client.connect(port)
            first.writer.write(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
            await arrived.wait()  # the only upstream connection is busy now
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
            await w.drain()
            while target.inflight < 2:  # the second request queued for a connection
                await asyncio.sleep(0)
            w.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            w.close()
            while len(server.connections) > 1:
                await asyncio.sleep(0)
            assert target.inflight == 1  # the queued one left: only the first still counts
            gate.set()
            assert (await first.read_responses(1))[0].status == 200
            assert target.inflight == 0
            assert take(server).routes["app"].in_flight == 0
            await first.close()

    o_target: list[str] = []

    async def with_origin() -> None:
        async with origins(hang) as (o,):
            o_target.append(o.target)
            await main()

    arun(with_origin())
