"""Both ends of the wire for ``body_bench.py``: a streaming origin and a streaming client.

Every body is the repeating byte pattern 0, 1, ..., 255 sent from one preallocated 1 MiB block, so
byte k of a body is ``k % 256`` and either end can spot-check what arrived without keeping it.
Neither end buffers a body: both read into one reusable buffer (``BufferedProtocol``) and write
only while the transport is not paused, so any growth measured in between belongs to the proxy.

The origin runs as its own process (the benchmark starts it) on 127.0.0.1:PORT:

    .venv/bin/python benchmarks/body_wire.py PORT

- ``GET /download?bytes=N``: 200, ``Content-Length: N``, N pattern bytes.
- ``POST`` or ``PUT /upload``: reads the body (Content-Length or chunked), answers 200 with the
  byte count as the body; with ``?verify=1`` a body that is not the pattern gets 422.
- ``GET /``: ``hello world\\n`` (the rig's readiness probe).
"""

from __future__ import annotations

import asyncio
import sys
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qs, urlsplit

import uvloop

BLOCK = bytes(range(256)) * 4096  # 1 MiB; a multiple of 256, so every block starts at pattern 0
READ_BUFFER = 256 * 1024
MAX_HEAD = 64 * 1024
MAX_LINE = 4096
HELLO = b"hello world\n"


class BodyCounter:
    """Counts one message body as it streams past, framed by Content-Length or chunked.

    ``feed`` reads ``buf[start:end]`` in place (no copy) and returns where the body ended, so the
    caller can keep what follows. Only the first and last byte of each slice are compared with
    the pattern: one mistake in framing or ordering shifts every later byte, so it shows.
    """

    def __init__(self, length: int | None) -> None:
        self.chunked = length is None
        self.left = 0 if length is None else length  # bytes of the current chunk or the body
        self.state = "size" if self.chunked else "data"
        self.line = bytearray()
        self.count = 0
        self.mismatches = 0
        self.done = length == 0

    def feed(self, buf: bytes | bytearray, start: int, end: int) -> int:
        i = start
        while i < end and not self.done:
            if self.state == "data":
                k = min(self.left, end - i)
                if buf[i] != self.count & 0xFF or buf[i + k - 1] != (self.count + k - 1) & 0xFF:
                    self.mismatches += 1
                self.count += k
                self.left -= k
                i += k
                if self.left == 0:
                    self.state = "crlf" if self.chunked else "end"
                    self.done = not self.chunked
                continue
            j = buf.find(b"\n", i, end)
            self.line += buf[i : end if j < 0 else j + 1]
            if len(self.line) > MAX_LINE:
                raise ValueError("chunked framing: line too long")
            if j < 0:
                return end
            i = j + 1
            self._line(bytes(self.line).strip())
            self.line.clear()
        return i

    def _line(self, line: bytes) -> None:
        if self.state == "size":
            self.left = int(line.split(b";")[0], 16)
            self.state = "data" if self.left else "trailer"
        elif self.state == "crlf":
            if line:
                raise ValueError(f"chunked framing: {line[:40]!r} after chunk data")
            self.state = "size"
        elif not line:  # the empty line that ends the trailer
            self.done = True


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """(first line, lower-cased header names -> values) of a request or response head."""
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, headers


def body_length(headers: dict[str, str]) -> int | None:
    """Content-Length, or None for chunked; a head with neither has an empty body."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    return int(headers.get("content-length", "0"))


class _Stream(asyncio.BufferedProtocol):
    """What both ends share: one reusable read buffer, and writing only while not paused."""

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass but has the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view


class OriginConnection(_Stream):
    """One client connection of the origin: sequential keep-alive requests, no pipelining."""

    def __init__(self) -> None:
        super().__init__(READ_BUFFER)
        self.streaming: asyncio.Task[None] | None = None
        self.head = bytearray()
        self.request: tuple[str, str, dict[str, str]] | None = None
        self.body: BodyCounter | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.writable.set()  # a streaming task waiting here sees the loss and stops

    def buffer_updated(self, nbytes: int) -> None:
        self.consume(self.buf, 0, nbytes)

    def consume(self, buf: bytes | bytearray, start: int, end: int) -> None:
        try:
            while start < end and self.transport is not None:
                if self.body is None:
                    self.head += buf[start:end]
                    start = end
                    idx = self.head.find(b"\r\n\r\n")
                    if idx < 0:
                        if len(self.head) > MAX_HEAD:
                            raise ValueError("request head too long")
                        return
                    rest = bytes(self.head[idx + 4 :])
                    self.start_request(bytes(self.head[:idx]))
                    self.head.clear()
                    buf, start, end = rest, 0, len(rest)
                    if self.body is None or self.body.done:
                        self.finish_request(buf[start:end])
                        return
                else:
                    start = self.body.feed(buf, start, end)
                    if self.body.done:
                        self.finish_request(buf[start:end])
                        return
        except ValueError as exc:
            self.reply(400, f"{exc}\n".encode(), close=True)

    def start_request(self, head: bytes) -> None:
        first, headers = parse_head(head)
        method, target, _ = first.split(" ", 2)
        self.request = (method, target, headers)
        self.body = BodyCounter(body_length(headers))
        if headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def finish_request(self, leftover: bytes | bytearray) -> None:
        assert self.request is not None and self.body is not None and self.transport is not None
        method, target, headers = self.request
        body, self.request, self.body = self.body, None, None
        self.head += leftover  # a pipelined next request waits until this answer is sent
        self.transport.pause_reading()
        url = urlsplit(target)
        query = parse_qs(url.query)
        close = headers.get("connection", "").lower() == "close"
        if method == "GET" and url.path == "/download":
            self.streaming = asyncio.get_running_loop().create_task(
                self.stream(int(query["bytes"][0]), close)
            )
        elif method in ("POST", "PUT") and url.path == "/upload":
            if "verify" in query and body.mismatches:
                self.reply(422, b"body is not the byte pattern\n", close)
            else:
                self.reply(200, str(body.count).encode(), close)
        elif method == "GET" and url.path == "/":
            self.reply(200, HELLO, close)
        else:
            self.reply(404, b"not found\n", close)

    def reply(self, status: int, body: bytes, close: bool) -> None:
        if self.transport is None:
            return
        extra = b"Connection: close\r\n" if close else b""
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status, HTTPStatus(status).phrase.encode(), len(body), extra, body)
        )
        self.answered(close)

    async def stream(self, n: int, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % n
        )
        block = memoryview(BLOCK)
        while n > 0:
            # Write only while the transport is below its high-water mark: at most one block
            # waits in this process, whatever the reader's pace.
            await self.writable.wait()
            if self.transport is None:
                return
            k = min(n, len(block))
            self.transport.write(block[:k])
            n -= k
        self.answered(close)

    def answered(self, close: bool) -> None:
        if self.transport is None:
            return
        if close:
            self.transport.close()
            return
        self.transport.resume_reading()
        if self.head:
            pending = bytes(self.head)
            self.head.clear()
            self.consume(pending, 0, len(pending))


class ClientExchange(_Stream):
    """One request on a new connection; counts the response body into a reusable buffer.

    The response must be 200; its body is kept only when ``keep_body`` (the short upload answer).
    """

    def __init__(self, keep_body: bool) -> None:
        super().__init__(1 << 20)
        self.keep_body = keep_body
        self.kept = bytearray()
        self.sent = 0
        self.head = bytearray()
        self.status_line = ""
        self.body: BodyCounter | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # uvloop raises on a write to a lost transport: send_body stops
        self.writable.set()
        if not self.done.done():
            got = self.body.count if self.body else 0
            why = f"{exc}" if exc else "closed by the peer"
            where = f"{self.sent} body bytes sent, {got} received, head {self.status_line or 'none'!r}"
            self.done.set_exception(ConnectionError(f"{why} ({where})"))

    def buffer_updated(self, nbytes: int) -> None:
        buf: bytes | bytearray = self.buf
        if self.body is None:
            self.head += self.view[:nbytes]
            idx = self.head.find(b"\r\n\r\n")
            if idx < 0:
                return
            self.status_line, headers = parse_head(bytes(self.head[:idx]))
            self.body = BodyCounter(body_length(headers))
            buf = bytes(self.head[idx + 4 :])
            nbytes = len(buf)
        if self.keep_body:
            self.kept += buf[:nbytes]
        try:
            end = self.body.feed(buf, 0, nbytes)
        except ValueError as exc:
            self.fail(str(exc))
            return
        if end < nbytes:
            self.fail(f"{nbytes - end} bytes after the end of the response body")
        elif self.body.done and not self.done.done():
            self.done.set_result(None)

    def fail(self, why: str) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    async def send_body(self, n: int) -> None:
        """Write ``n`` pattern bytes, only as fast as the peer takes them."""
        block = memoryview(BLOCK)
        while n > 0:
            await self.writable.wait()
            if self.transport is None or self.transport.is_closing():
                return
            k = min(n, len(block))
            self.transport.write(block[:k])
            self.sent += k
            n -= k


async def exchange(port: int, head: bytes, upload: int, keep_body: bool, timeout_s: float) -> ClientExchange:
    """Send ``head`` (and ``upload`` pattern bytes) to 127.0.0.1:``port``; wait for the response.

    Raises ConnectionError, saying how far it got, when the exchange fails or exceeds ``timeout_s``.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(10):
        transport, proto = await loop.create_connection(lambda: ClientExchange(keep_body), "127.0.0.1", port)
    try:
        async with asyncio.timeout(timeout_s):
            transport.write(head)
            if upload:
                await proto.send_body(upload)
            await proto.done
    except TimeoutError as exc:
        got = proto.body.count if proto.body else 0
        raise ConnectionError(
            f"no complete answer within {timeout_s:g} s: {proto.sent} body bytes sent, "
            f"{got} received ({proto.status_line or 'no response head'})"
        ) from exc
    finally:
        if not proto.done.done():
            proto.done.cancel()  # nobody waits for it any more: no "exception never retrieved"
        transport.close()
    return proto


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(OriginConnection, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
