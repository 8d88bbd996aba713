"""WebSocket (``Connection: Upgrade``) through the gateway, with a real client and a real server
from the ``websockets`` package: the 101 is relayed, bytes tunnel both ways with back-pressure,
idle tunnels time out, tunnels survive a reload and are closed (not reset) on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import yaml
from websockets.asyncio.client import ClientConnection as WsClient
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pulsegate.config import load_config_text
from tests.support import arun, get, running_gateway

Handler = Callable[[ServerConnection], Awaitable[None]]


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@contextlib.asynccontextmanager
async def ws_origin(handler: Handler = echo, **kw: Any) -> AsyncIterator[tuple[WsServer, str]]:
    async with serve(handler, "127.0.0.1", 0, max_size=None, **kw) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield server, f"127.0.0.1:{port}"


def config(target: str, **limits: Any) -> str:
    cfg: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "upstreams": {"ws": {"targets": [target]}},
        "routes": [{"name": "ws", "upstream": "ws"}],
    }
    if limits:
        cfg["limits"] = limits
    return yaml.safe_dump(cfg)


def client(port: int, path: str = "/chat") -> connect:
    return connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=5, close_timeout=2)


def test_echo_text_binary_and_large_messages() -> None:
    async def main() -> None:
        async with ws_origin() as (_, target), running_gateway(config(target)) as (server, port):
            async with client(port) as ws:
                assert server.tunnels == 1
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00\x01binary")
                assert await ws.recv() == b"\x00\x01binary"
                big = bytes(range(256)) * 16384  # 4 MiB in one message, many TCP segments
                await ws.send(big)
                assert await ws.recv() == big
                for i in range(200):  # many small frames, interleaved
                    await ws.send(f"m{i}")
                assert [await ws.recv() for _ in range(200)] == [f"m{i}" for i in range(200)]
            # The client closed: the tunnel (and the upstream side) go away.
            async with asyncio.timeout(5):
                while server.tunnels or server.connections:
                    await asyncio.sleep(0.01)
            events = server.registry.events
            assert events.get("tunnels\tws") == 1
            assert server.registry.routes["ws"].in_flight == 0
            # Plain HTTP still works on the same gateway.
            assert (await get(port)).status in (200, 400, 404, 426)

    arun(main())


def test_upstream_closing_the_websocket_closes_the_client() -> None:
    async def close_after_one(ws: ServerConnection) -> None:
        await ws.send("bye")
        await ws.close(code=4000, reason="done")

    async def main() -> None:
        async with (
            ws_origin(close_after_one) as (_, target),
            running_gateway(config(target)) as (_s, port),
            client(port) as ws,
        ):
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4000

    arun(main())


def test_declined_upgrade_is_relayed_and_the_connection_closes() -> None:
    def refuse(conn: ServerConnection, request: Any) -> Any:
        return conn.respond(403, "no websockets for you\n")

    async def main() -> None:
        async with (
            ws_origin(process_request=refuse) as (_, target),
            running_gateway(config(target)) as (s, port),
        ):
            with pytest.raises(InvalidStatus) as info:
                async with client(port):
                    pass
            assert info.value.response.status_code == 403
            assert s.tunnels == 0

    arun(main())


def test_upgrade_request_without_connection_upgrade_is_a_plain_request() -> None:
    async def main() -> None:
        async with ws_origin() as (_, target), running_gateway(config(target)) as (_s, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # Upgrade alone (no Connection: upgrade) is no switch request: the origin sees plain
            # GETs (and the websockets server answers 426), and the connection stays HTTP.
            req = b"GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
            writer.write(req + req)
            data = b""
            while data.count(b"HTTP/1.1 ") < 2:
                chunk = await reader.read(65536)
                assert chunk, data
                data += chunk
            assert b"101" not in data.split(b"\r\n")[0]
            writer.close()

    arun(main())


def test_back_pressure_bounds_gateway_buffers() -> None:
    """The origin pushes 64 MiB while the client does not read: the gateway stops reading the
    upstream instead of buffering, then everything arrives once the client reads."""
    total = 64 * 1024 * 1024
    chunk = b"x" * (1024 * 1024)

    async def flood(ws: ServerConnection) -> None:
        for _ in range(total // len(chunk)):
            await ws.send(chunk)
        await ws.wait_closed()

    async def main() -> None:
        async with (
            ws_origin(flood, write_limit=2**20) as (_, target),
            running_gateway(config(target)) as (s, port),
            connect(f"ws://127.0.0.1:{port}/", max_size=None, max_queue=1, open_timeout=5) as ws,
        ):
            peak = 0
            # Let the flood run into the stalled client for a while, sampling gateway buffers.
            for _ in range(40):
                await asyncio.sleep(0.01)
                for conn in s.connections:
                    peak = max(peak, conn.transport.get_write_buffer_size())
            # uvloop pauses writing above its high-water mark (64 KiB by default) and one
            # upstream read (up to 256 KiB) may land on top before reading stops.
            assert peak <= 2 * 1024 * 1024, peak
            received = 0
            while received < total:
                received += len(await ws.recv())
            assert received == total

    arun(main(), timeout=60)


def test_idle_tunnel_times_out() -> None:
    async def main() -> None:
        async with (
            ws_origin() as (_, target),
            running_gateway(config(target, tunnel_idle_timeout="300ms")) as (s, port),
        ):
            async with client(port) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                loop = asyncio.get_running_loop()
                start = loop.time()
                with pytest.raises(ConnectionClosed):
                    await ws.recv()  # nothing flows: the gateway closes the tunnel
                assert 0.25 <= loop.time() - start < 3.0
            assert s.tunnels == 0

    arun(main())


def test_tunnel_survives_a_reload() -> None:
    async def main() -> None:
        async with (
            ws_origin() as (_, target),
            ws_origin() as (_, other),
            running_gateway(config(target)) as (server, port),
            client(port) as ws,
        ):
            await ws.send("before")
            assert await ws.recv() == "before"
            # The new config drops the tunnel's target entirely.
            server.apply(load_config_text(config(other)))
            await ws.send("after")
            assert await ws.recv() == "after"
            async with client(port) as ws2:  # new tunnels go to the new target
                await ws2.send("new")
                assert await ws2.recv() == "new"

    arun(main())


def test_shutdown_closes_open_tunnels_after_the_drain_timeout() -> None:
    async def main() -> None:
        async with ws_origin() as (_, target):
            cfg = load_config_text(config(target))
            from pulsegate.proxy.server import Server

            server = Server(cfg)
            port = (await server.start())[0][1]
            ws: WsClient = await client(port)
            await ws.send("x")
            assert await ws.recv() == "x"
            loop = asyncio.get_running_loop()
            start = loop.time()
            stopping = asyncio.ensure_future(server.stop(timeout=0.5))
            # Still open during the drain.
            await ws.send("draining")
            assert await ws.recv() == "draining"
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            elapsed = loop.time() - start
            assert 0.4 <= elapsed < 3.0
            # A TCP close, not a reset: the client saw an orderly end of stream (code 1006 means
            # no close frame, which the gateway does not invent, but no ECONNRESET either).
            assert not isinstance(info.value.__cause__, ConnectionResetError)
            await stopping
            await ws.close()

    arun(main())


def test_upgrade_request_answered_by_the_gateway_closes_the_connection() -> None:
    """Parsing stops at an upgrade request, so the gateway's own answer to one (here a 404) must
    close the connection instead of leaving a keep-alive nobody reads."""

    async def main() -> None:
        async with ws_origin() as (_, target):
            cfg = yaml.safe_dump(
                {
                    "listen": "127.0.0.1:0",
                    "upstreams": {"ws": {"targets": [target]}},
                    "routes": [{"name": "ws", "match": {"path_prefix": "/ws"}, "upstream": "ws"}],
                }
            )
            async with running_gateway(cfg) as (_s, port):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(
                    b"GET /nope HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                )
                data = await asyncio.wait_for(reader.read(), 5)  # read to EOF: the gateway closes
                assert data.startswith(b"HTTP/1.1 404") and b"Connection: close" in data
                writer.close()

    arun(main())


def test_request_pipelined_before_an_upgrade_is_answered_then_the_tunnel_opens() -> None:
    async def main() -> None:
        async with ws_origin() as (_, target), running_gateway(config(target)) as (s, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # A plain GET (the websockets server answers it 426) and then a real handshake.
            writer.write(
                b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert not first.startswith(b"HTTP/1.1 101") and b"Connection: close" not in first
            length = int(first.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert second.startswith(b"HTTP/1.1 101")
            assert b"Upgrade: websocket" in second and b"Sec-WebSocket-Accept:" in second
            assert s.tunnels == 1
            writer.close()

    arun(main())


def test_half_close_is_passed_through_the_tunnel() -> None:
    """The client's FIN reaches the upstream, which can still answer before closing (as nginx
    passes half-closes on for upgraded connections)."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        received = await reader.read()  # up to the client's FIN, passed on by the gateway
        writer.write(b"got:" + received)
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(upstream, "127.0.0.1", 0)
        target = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with running_gateway(config(target)) as (s, port):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 101") and b"Upgrade: echo" in head
                writer.write(b"hello")
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), 5) == b"got:hello"
                writer.close()
                async with asyncio.timeout(5):
                    while s.tunnels:
                        await asyncio.sleep(0.01)
        finally:
            server.close()

    arun(main())
