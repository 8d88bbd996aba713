"""Test support: run coroutines on uvloop with a time bound, start a real gateway and real origins
on ephemeral loopback ports, and talk HTTP over raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httptools
import uvloop
import yaml

from pulsegate.config import load_config_text
from pulsegate.origin import Origin, first_header
from pulsegate.proxy.server import Server

T = TypeVar("T")


def arun(coro: Awaitable[T], timeout: float = 20.0) -> T:
    """Run ``coro`` on a fresh uvloop loop, failing the test if it takes longer than ``timeout``."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(bounded())


def gateway_config(upstreams: dict[str, Sequence[str]], routes: list[dict[str, Any]], **extra: Any) -> str:
    cfg: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "upstreams": {name: {"targets": list(targets)} for name, targets in upstreams.items()},
        "routes": routes,
    }
    for key, value in extra.items():
        if key == "upstream_options":
            for name, opts in value.items():
                cfg["upstreams"][name].update(opts)
        else:
            cfg[key] = value
    return yaml.safe_dump(cfg)


@contextlib.asynccontextmanager
async def running_gateway(config_yaml: str) -> AsyncIterator[tuple[Server, int]]:
    server = Server(load_config_text(config_yaml, source="<test>"))
    bound = await server.start()
    try:
        yield server, bound[0][1]
    finally:
        await server.stop(timeout=1.0)


@contextlib.asynccontextmanager
async def origins(*handlers: Callable[..., Any]) -> AsyncIterator[list[Origin]]:
    started = [Origin(h) for h in handlers]
    for o in started:
        await o.start()
    try:
        yield started
    finally:
        for o in started:
            await o.stop()


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    keep_alive: bool = True

    def header(self, name: str) -> bytes | None:
        return first_header(self.headers, name)


class _RespCollector:
    def __init__(self, head_request: bool) -> None:
        self.done: list[Response] = []
        self.cur: Response | None = None
        self.body: list[bytes] = []
        self.head_request = head_request
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.cur = Response(0)
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.cur is not None
        self.cur.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.cur is not None
        self.cur.status = self.parser.get_status_code()
        self.cur.keep_alive = self.parser.should_keep_alive()
        if self.head_request and self.cur.status >= 200:
            self.done.append(self.cur)
            self.cur = None

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        if self.cur is not None and self.cur.status >= 200:
            self.cur.body = b"".join(self.body)
            self.done.append(self.cur)
        self.cur = None


class Client:
    """A keep-alive HTTP/1.1 client on one raw connection (responses parsed with httptools)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> Client:
        r, w = await asyncio.open_connection(host, port)
        return cls(r, w)

    async def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Sequence[tuple[str, str]] = (("Host", "test"),),
        body: bytes | None = None,
    ) -> Response:
        lines = [f"{method} {path} HTTP/1.1"] + [f"{n}: {v}" for n, v in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        return (await self.read_responses(1, head_request=method == "HEAD"))[0]

    async def read_responses(self, n: int, head_request: bool = False) -> list[Response]:
        c = _RespCollector(head_request)
        while len(c.done) < n:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError(f"closed after {len(c.done)} of {n} responses")
            c.parser.feed_data(data)
        return c.done

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def raw(port: int, data: bytes, *, host: str = "127.0.0.1") -> bytes:
    """Send raw bytes, half-close nothing, and read until the server closes the connection."""
    r, w = await asyncio.open_connection(host, port)
    w.write(data)
    out = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := await r.read(65536):
            out += chunk
    w.close()
    return bytes(out)


async def get(port: int, path: str = "/", **kw: Any) -> Response:
    c = await Client.connect(port)
    try:
        return await c.request("GET", path, **kw)
    finally:
        await c.close()
