"""Upstream failures become fast 502/503/504 answers naming the request id; never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pulsegate.origin import Reply, Request
from tests.support import Client, arun, gateway_config, get, origins, running_gateway


def free_port() -> int:
    """A loopback port with nothing listening (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_route_404() -> None:
    async def main() -> None:
        cfg = gateway_config({"u": ["127.0.0.1:9"]}, [{"upstream": "u", "match": {"path": "/only"}}])
        async with running_gateway(cfg) as (_, port):
            resp = await get(port, "/elsewhere")
            assert resp.status == 404
            rid = resp.header("x-request-id")
            assert rid and rid in resp.body

    arun(main())


def test_refused_502_and_keeps_serving() -> None:
    async def main() -> None:
        cfg = gateway_config({"u": [f"127.0.0.1:{free_port()}"]}, [{"upstream": "u"}])
        async with running_gateway(cfg) as (_, port):
            c = await Client.connect(port)
            for _ in range(3):
                resp = await c.request()
                assert resp.status == 502 and b"failed" in resp.body
            await c.close()

    arun(main())


@asynccontextmanager
async def blackhole() -> AsyncIterator[int]:
    """A listener whose accept backlog is full: further SYNs are dropped, so connects hang."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = int(lsock.getsockname()[1])
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def test_connect_timeout_504() -> None:
    async def main() -> None:
        async with blackhole() as bport:
            cfg = gateway_config(
                {"u": [f"127.0.0.1:{bport}"]},
                [{"upstream": "u"}],
                upstream_options={"u": {"timeouts": {"connect": "200ms", "read": "5s"}}},
            )
            async with running_gateway(cfg) as (_, port):
                loop = asyncio.get_running_loop()
                start = loop.time()
                resp = await get(port)
                assert resp.status == 504, resp
                assert 0.15 < loop.time() - start < 3.0

    arun(main())


def test_read_timeout_504() -> None:
    never = asyncio.Event()

    async def stall(req: Request) -> Reply:
        await never.wait()
        return Reply(200)

    async def main() -> None:
        async with origins(stall) as (o,):
            cfg = gateway_config(
                {"u": [o.target]},
                [{"upstream": "u"}],
                upstream_options={"u": {"timeouts": {"read": "300ms"}}},
            )
            async with running_gateway(cfg) as (_, port):
                loop = asyncio.get_running_loop()
                start = loop.time()
                resp = await get(port)
                assert resp.status == 504 and b"timed out" in resp.body
                assert 0.25 < loop.time() - start < 3.0

    arun(main())


def test_no_available_target_503_when_fail_closed() -> None:
    async def main() -> None:
        async with origins(lambda r: Reply(200)) as (o,):
            cfg = gateway_config(
                {"u": [o.target]}, [{"upstream": "u"}], upstream_options={"u": {"fail_open": False}}
            )
            async with running_gateway(cfg) as (server, port):
                for t in server.runtime.upstreams["u"].targets:
                    t.healthy = False  # what health checks do when every target is down
                    t.refresh()
                resp = await get(port)
                assert resp.status == 503 and b"no available target" in resp.body
            assert o.requests == []

    arun(main())


def test_fail_open_tries_targets_when_all_are_down() -> None:
    async def main() -> None:
        async with origins(lambda r: Reply(200), lambda r: Reply(200)) as (a, b):
            cfg = gateway_config({"u": [a.target, b.target]}, [{"upstream": "u"}])
            async with running_gateway(cfg) as (server, port):
                for t in server.runtime.upstreams["u"].targets:
                    t.healthy = False
                    t.refresh()
                statuses = [(await get(port)).status for _ in range(4)]
                assert statuses == [200] * 4
            # Failing open still spreads the load over every target.
            assert len(a.requests) == len(b.requests) == 2

    arun(main())


@asynccontextmanager
async def raw_upstream(*replies: bytes, abort: bool) -> AsyncIterator[int]:
    """An upstream that answers the n-th connection with ``replies[n]`` (the last one repeats),
    then resets it (``abort``) like a process killed mid-response."""
    count = 0

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal count
        reply = replies[min(count, len(replies) - 1)]
        count += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await r.readuntil(b"\r\n\r\n")
            w.write(reply)
            await w.drain()
        if abort:
            w.transport.abort()
        else:
            # wait for the gateway to hang up (it must, after a malformed response)
            with contextlib.suppress(ConnectionError):
                await r.read()
            w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(srv.sockets[0].getsockname()[1])
    finally:
        srv.close()


def test_upstream_dies_mid_response_client_sees_truncation_gateway_survives() -> None:
    async def main() -> None:
        truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"
        whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nwhole"
        async with (
            raw_upstream(truncated, whole, abort=True) as uport,
            running_gateway(gateway_config({"u": [f"127.0.0.1:{uport}"]}, [{"upstream": "u"}])) as (_, port),
        ):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            data = await r.read(1 << 16)
            while chunk := await r.read(1 << 16):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"partial")  # then closed
            w.close()
            again = await get(port)  # a new upstream connection; the gateway is alive
            assert again.status == 200 and again.body == b"whole"

    arun(main())


def test_upstream_closes_before_answering_502() -> None:
    async def main() -> None:
        async with (
            raw_upstream(b"", abort=True) as uport,
            running_gateway(gateway_config({"u": [f"127.0.0.1:{uport}"]}, [{"upstream": "u"}])) as (_, port),
        ):
            resp = await get(port)
            assert resp.status == 502

    arun(main())


def test_malformed_upstream_response_502() -> None:
    async def main() -> None:
        bad = b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"
        async with (
            raw_upstream(bad, abort=False) as uport,
            running_gateway(gateway_config({"u": [f"127.0.0.1:{uport}"]}, [{"upstream": "u"}])) as (_, port),
        ):
            resp = await get(port)
            assert resp.status == 502 and b"malformed" in resp.body

    arun(main())


def test_stale_pooled_connection_is_retried_for_idempotent_requests() -> None:
    """The upstream closes idle keep-alive connections; the next GET must not see a 502."""
    served = 0

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal served
        await r.readuntil(b"\r\n\r\n")
        served += 1
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        w.close()  # keep-alive response, then the upstream closes anyway (idle timeout race)

    async def main() -> None:
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        uport = int(srv.sockets[0].getsockname()[1])
        cfg = gateway_config({"u": [f"127.0.0.1:{uport}"]}, [{"upstream": "u"}])
        async with running_gateway(cfg) as (_, port):
            c = await Client.connect(port)
            for _ in range(5):
                assert (await c.request()).status == 200
            await c.close()
        srv.close()
        assert served == 5

    arun(main())


def test_extra_response_is_never_served_to_the_next_request() -> None:
    # An upstream that answers one request with two responses (a bug, or a smuggling attempt): the
    # second answers nothing we sent. Kept on the pooled connection it would become the answer to
    # the next client's request (response desync), so the connection is dropped instead.
    conns: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(len(conns))
        first = len(conns) == 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"\r\n\r\n"):
                if first:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
                        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
                    )
                    first = False
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
                await writer.drain()
        writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(serve, "127.0.0.1", 0)
        uport = srv.sockets[0].getsockname()[1]
        cfg = gateway_config({"u": [f"127.0.0.1:{uport}"]}, [{"upstream": "u"}])
        async with running_gateway(cfg) as (_, port):
            c = await Client.connect(port)
            bodies = [(await c.request()).body for _ in range(3)]
            await c.close()
        srv.close()
        assert bodies[1:] == [b"two", b"two"], bodies  # never b"forged"
        assert len(conns) == 2  # the connection that sent it was not reused

    arun(main())
