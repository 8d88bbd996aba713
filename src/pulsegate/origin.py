"""A small real HTTP/1.1 origin server: the demo's upstream services and the test suite's upstreams.

It records what it receives (parsed requests and the raw bytes), so tests can assert on exactly
what reached an upstream. Handlers may be plain or async functions.

Example:
    >>> import asyncio
    >>> async def main():
    ...     origin = Origin(lambda req: Reply(200, body=b"hi " + req.path))
    ...     host, port = await origin.start()
    ...     r, w = await asyncio.open_connection(host, port)
    ...     w.write(b"GET /x HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
    ...     data = await r.readuntil(b"hi /x")
    ...     w.close()
    ...     await origin.stop()
    ...     return data.split(b"\\r\\n")[0]
    >>> asyncio.run(main())
    b'HTTP/1.1 200 OK'
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import httptools

from pulsegate.http.writer import status_line


def first_header(headers: Sequence[tuple[bytes, bytes]], name: str) -> bytes | None:
    """The value of the first header called ``name`` (case-insensitive), or None.

    >>> first_header([(b"Content-Type", b"text/plain")], "content-type")
    b'text/plain'
    """
    key = name.lower().encode()
    for n, v in headers:
        if n.lower() == key:
            return v
    return None


@dataclass
class Request:
    """A request as the origin received it."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    version: str = "1.1"

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]

    def header(self, name: str) -> bytes | None:
        """The first header of that name (case-insensitive), or None."""
        return first_header(self.headers, name)

    def header_all(self, name: str) -> list[bytes]:
        key = name.lower().encode()
        return [v for n, v in self.headers if n.lower() == key]


@dataclass
class Reply:
    """A response: with ``chunks`` it is sent chunked, else with Content-Length."""

    status: int = 200
    headers: Sequence[tuple[bytes, bytes]] = ()
    body: bytes = b""
    chunks: Sequence[bytes] | None = None
    close: bool = False


Handler = Callable[[Request], "Reply | Awaitable[Reply]"]


@dataclass
class _State:
    requests: list[Request] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    connections: int = 0
    #: Requests the origin's strict parser refused (a proxy in front should never cause one).
    bad_requests: int = 0


class _OriginProtocol(asyncio.Protocol):
    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.current: Request | None = None
        self.body: list[bytes] = []
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.origin.state.connections += 1
        self.origin.live.add(self)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.origin.live.discard(self)
        self.queue.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        self.origin.state.raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            self.origin.state.bad_requests += 1
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        req = Request(self.parser.get_method(), self.url, self.headers, b"".join(self.body))
        req.version = self.parser.get_http_version()
        self.url, self.headers, self.body = b"", [], []
        self.origin.state.requests.append(req)
        self.queue.put_nowait(req)

    async def _serve(self) -> None:
        # One worker per connection answers requests in order (pipelining-safe).
        while (req := await self.queue.get()) is not None:
            result = self.origin.handler(req)
            reply = await result if inspect.isawaitable(result) else result
            assert isinstance(reply, Reply)
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(_render(req, reply))
            if reply.close:
                self.transport.close()
                return


def _render(req: Request, reply: Reply) -> bytes:
    parts = [status_line(reply.status)]
    parts += [b"%s: %s\r\n" % h for h in reply.headers]
    no_body = req.method == b"HEAD" or reply.status in (204, 304) or reply.status < 200
    if reply.chunks is not None:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif reply.status != 204:
        parts.append(b"Content-Length: %d\r\n" % len(reply.body))
    if reply.close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not no_body:
        if reply.chunks is not None:
            parts += [b"%x\r\n%s\r\n" % (len(c), c) for c in reply.chunks if c]
            parts.append(b"0\r\n\r\n")
        else:
            parts.append(reply.body)
    return b"".join(parts)


class Origin:
    """A real HTTP/1.1 server on a loopback port, answering with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.state = _State()
        self.live: set[_OriginProtocol] = set()
        self._server: asyncio.Server | None = None
        self.address = ("", 0)

    @property
    def requests(self) -> list[Request]:
        return self.state.requests

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    @property
    def target(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _OriginProtocol(self), host, port)
        name = self._server.sockets[0].getsockname()
        self.address = (str(name[0]), int(name[1]))
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for proto in list(self.live):
                if proto.transport is not None:
                    proto.transport.abort()
                if proto.worker is not None:
                    proto.worker.cancel()
            await self._server.wait_closed()
            self._server = None
