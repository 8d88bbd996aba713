"""One keep-alive connection to an upstream target: an ``asyncio.Protocol`` around the sans-IO
:class:`~pulsegate.http.response.ResponseParser`, reporting to the client connection it serves.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from pulsegate.errors import UpstreamError
from pulsegate.http.head import ResponseHead
from pulsegate.http.response import ResponseParser
from pulsegate.proxy import relay
from pulsegate.proxy.exchange import BODY_CHUNKED, BODY_NONE, frame_chunk

if TYPE_CHECKING:
    from pulsegate.proxy.client import ClientConnection
    from pulsegate.proxy.pool import TargetPool


class UpstreamConnection(asyncio.Protocol):
    """A pooled upstream connection; ``client`` is set while it serves an exchange."""

    __slots__ = (
        "client",
        "closed",
        "idle_since",
        "parser",
        "pool",
        "reading_paused",
        "state",
        "transport",
        "tunnel",
        "uses",
    )

    def __init__(self, pool: TargetPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser(self)
        self.client: ClientConnection | None = None
        self.idle_since = 0.0
        #: Exchanges started on this connection; > 1 means it came from the pool (may be stale).
        self.uses = 0
        self.closed = False
        self.reading_paused = False
        #: Pool bookkeeping (pool.BUSY / IDLE / GONE).
        self.state = 0
        #: Switched protocols (101): bytes go to the client unparsed until the connection closes.
        self.tunnel = False

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        client = self.client
        self.client = None
        self.pool.forget(self)
        if client is not None:
            client.upstream_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            # Bytes on an idle connection answer nothing we sent: the stream is out of sync.
            self.close()
            return
        if self.tunnel:
            client.tunnel_out(data)
            return
        client.deadline = client.server.now + client.read_timeout
        try:
            self.parser.feed(data)
        except UpstreamError as exc:
            # Also after a complete response (bytes followed it): what was gathered still goes out.
            client.upstream_failed(self, exc)
        client.flush()

    def eof_received(self) -> bool | None:
        client = self.client
        if self.tunnel and client is not None:
            client.tunnel_upstream_eof()
            return True  # keep writing the client's bytes until it half-closes too
        if client is not None and self.parser.feed_eof():
            client.flush()
        return None  # close the transport

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_paused()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_resumed()

    # -- ResponseHandler (called by the parser) ------------------------------------------------

    def on_response_head(self, head: ResponseHead) -> None:
        assert self.client is not None
        relay.response_head(self.client, head)

    def on_response_body(self, data: bytes) -> None:
        # Body bytes are bound here by httptools once; frame them for the client directly.
        client = self.client
        ex = client.ex if client is not None else None
        assert client is not None and ex is not None
        ex.bytes_out += len(data)
        framing = ex.framing
        if framing == BODY_CHUNKED:
            framed = frame_chunk(data)
            if isinstance(framed, bytes):
                client.wbuf.append(framed)
            else:
                client.wbuf += framed
        elif framing != BODY_NONE:
            client.wbuf.append(data)

    def on_response_end(self) -> None:
        assert self.client is not None
        relay.response_end(self.client)

    def on_response_upgrade(self, data: bytes) -> None:
        if self.client is not None:
            self.client.on_response_upgrade(data)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("busy" if self.client is not None else "idle")
        return f"<UpstreamConnection {self.pool.target.address} {state} uses={self.uses}>"
