"""The downstream side: one ``asyncio.Protocol`` per client connection.

It feeds the sans-IO :class:`~pulsegate.http.request.RequestParser`, routes each request, takes an
upstream connection, and relays both bodies with back-pressure. Pipelined requests queue behind the
active one and are answered strictly in order.

Flow control, both ways, without buffering whole bodies:
- client -> upstream: if the upstream socket's write buffer fills, stop reading the client.
- upstream -> client: if the client's write buffer fills, stop reading the upstream.
Per-connection memory therefore stays near the transports' high-water marks plus one read.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter_ns as _perf_counter_ns
from typing import TYPE_CHECKING, Final, cast

from pulsegate.errors import DownstreamError, GatewayError, UpstreamError
from pulsegate.http.head import RequestHead
from pulsegate.http.request import RequestParser
from pulsegate.http.writer import (
    LAST_CHUNK,
    error_response,
)
from pulsegate.proxy import dispatch, ending, recovery, tunnel
from pulsegate.proxy.ending import LINGER_TIMEOUT
from pulsegate.proxy.exchange import (
    ACTIVE,
    BLOCK_BUFFER,
    BLOCK_PIPELINE,
    BLOCK_UPSTREAM,
    HEAD,
    IDLE,
    LINGER,
    Exchange,
    frame_chunk,
)
from pulsegate.proxy.tunnel import NO_TUNNEL, TUNNEL_ASKED, TUNNEL_OPEN

if TYPE_CHECKING:
    from pulsegate.balancing.target import Target
    from pulsegate.proxy.runtime import RouteRuntime, UpstreamRuntime
    from pulsegate.proxy.server import Server
    from pulsegate.proxy.upstream import UpstreamConnection
    from pulsegate.routing.table import Match, RouteTable

# A Final alias is a C static in the compiled module; an imported name is a dict lookup per call.
perf_counter_ns: Final = _perf_counter_ns


class ClientConnection(asyncio.Protocol):
    """One client connection and the exchanges it carries."""

    __slots__ = (
        "blocked",
        "client_ip",
        "closing",
        "deadline",
        "early",
        "early_bytes",
        "ex",
        "host_raw",
        "host_route",
        "last_match",
        "last_method",
        "last_path",
        "last_table",
        "lim",
        "linger_until",
        "loop_time",
        "outbox",
        "parser",
        "parsing",
        "phase",
        "queue",
        "read_timeout",
        "rejected",
        "server",
        "t_first",
        "transport",
        "tunnel",
        "tunnel_eof",
        "wbuf",
        "write_paused",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop_time = server.loop.time
        self.outbox = server.outbox
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        #: Limits are fixed per connection at accept; a reload applies to new connections.
        self.lim = lim = server.runtime.limits
        # The last Host value and its routing form: clients repeat the same Host.
        self.host_raw = b""
        self.host_route = b""
        #: The last route lookup (for a table without header conditions): keep-alive clients
        #: mostly repeat their request line, and a lookup costs about a microsecond.
        self.last_table: RouteTable[RouteRuntime] | None = None
        self.last_path = b""
        self.last_method = b""
        self.last_match: Match[RouteRuntime] | None = None
        self.parser = RequestParser(
            self,
            head_class=Exchange,
            max_header_bytes=lim.max_header_bytes,
            max_body_bytes=lim.max_body_bytes,
        )
        self.client_ip = b""
        #: The exchange being answered (its response is what the client receives next).
        self.ex: Exchange | None = None
        #: The exchange whose request is being read (the active one, or the last queued).
        self.parsing: Exchange | None = None
        #: Pipelined exchanges waiting their turn; created on first use (an empty deque is 760
        #: bytes, a fifth of an idle connection's memory: benchmarks/idle_bench.py).
        self.queue: deque[Exchange] | None = None
        #: Bytes for the client, gathered during one upstream read and written with one writev.
        self.wbuf: list[bytes] = []
        self.phase = IDLE
        #: perf_counter_ns of the first byte of the request being read (its total time starts there).
        self.t_first = 0
        self.deadline = 0.0
        self.linger_until = 0.0
        self.read_timeout = 30.0
        self.blocked = 0
        self.write_paused = False
        # keepalive_timeout 0: one request per connection, announced with Connection: close.
        self.closing = lim.keepalive_timeout <= 0
        #: A malformed request behind ones still being answered: refused once they are done.
        self.rejected: DownstreamError | None = None
        self.tunnel = NO_TUNNEL
        #: Half-closes seen in an open tunnel: 1 = the client's FIN, 2 = the upstream's.
        self.tunnel_eof = 0
        #: Client bytes that followed an upgrade request, held until the upstream's 101.
        self.early: list[bytes] = []
        self.early_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode()
        self.server.registry.gateway.accepted += 1
        # A fresh connection must send its first head within header_timeout.
        self.deadline = self.server.now + self.lim.header_timeout
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.forget(self)
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.aborted = True
            if not ex.resp_done:
                # nginx's 499: the client left before the response was complete.
                if not ex.resp_started:
                    ex.status = 499
                self.finish(ex, perf_counter_ns(), 0)
            conn = ex.upstream
            if conn is not None:
                # The response cannot be delivered; the upstream connection is mid-message.
                ex.upstream = None
                conn.client = None
                if self.tunnel == TUNNEL_OPEN:
                    self.server.tunnels -= 1
                    # After what the client sent last.
                    self.outbox.close(conn.transport)  # type: ignore[arg-type]
                else:
                    conn.close()
            self.tunnel = NO_TUNNEL
            if ex.waiter is not None and ex.pool is not None:
                ex.pool.cancel(ex.waiter)  # no longer pending (the circuit breaker counts those)
                ex.waiter = None
            # Also when still waiting for a connection: the target must not keep counting it.
            self.end_target(ex)
        self.queue = None
        self.parsing = None

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            tunnel.from_client(self, data)
            return
        if self.rejected is not None:
            return  # the parser failed; nothing after the bad request is read
        if self.phase == IDLE:
            self.phase = HEAD
            self.deadline = self.server.now + self.lim.header_timeout
            self.t_first = perf_counter_ns()
        elif self.phase == LINGER:
            self.deadline = min(self.server.now + LINGER_TIMEOUT, self.linger_until)
            return  # dropped: the refusal is sent, only the close is pending
        try:
            self.parser.feed(data)
        except DownstreamError as exc:
            ending.reject(self, exc)
            return
        if self.wbuf:
            self.flush()

    def eof_received(self) -> bool | None:
        if self.tunnel == TUNNEL_OPEN:
            # Pass the half-close on (as nginx does): the upstream may still answer.
            tunnel.half_close(self, tunnel.CLIENT_EOF)
            return True
        # Half-close from the client: finish answering what it sent, then close (RFC 9112 §9.6).
        if self.ex is None:
            return None
        self.closing = True
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.ex
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.ex
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()
        if self.phase == ACTIVE:
            # A slow reader is making progress: that is not an upstream timeout.
            self.deadline = self.server.now + self.read_timeout

    # -- RequestHandler (called by the parser) -------------------------------------------------

    def on_head(self, head: RequestHead) -> None:
        ex: Exchange = head  # type: ignore[assignment]  # the parser builds Exchange heads
        if ex.request_id is None:
            ex.request_id = self.server.next_request_id()
        self.parsing = ex
        if self.ex is None:
            self.ex = ex
            ex.t0 = self.t_first
            dispatch.start(self, ex)
        else:
            ex.t0 = perf_counter_ns()  # queued behind others: its time starts now
            queue = self.queue
            if queue is None:
                queue = self.queue = deque()
            queue.append(ex)
            if len(queue) >= self.lim.max_pipelined:
                self.block_reading(BLOCK_PIPELINE)

    def on_body(self, data: bytes) -> None:
        ex = self.parsing
        if ex is None:
            return
        ex.bytes_in += len(data)
        if ex.discard:
            return
        framed = frame_chunk(data) if ex.chunked else data
        conn = ex.upstream
        if ex.head_sent and conn is not None:
            assert conn.transport is not None
            self.outbox.write(conn.transport, framed)
            return
        if isinstance(framed, bytes):
            ex.body.append(framed)
        else:
            ex.body += framed
        ex.buffered += len(data)
        if ex.buffered > self.lim.request_buffer:
            if ex is self.ex and conn is not None:
                dispatch.send(self, ex)
            else:
                self.block_reading(BLOCK_BUFFER)

    def on_end(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        ex.req_done = True
        if ex.discard:
            if ex.resp_done:
                self.advance(ex)
            return
        if ex.chunked:
            if ex.head_sent and ex.upstream is not None:
                assert ex.upstream.transport is not None
                self.outbox.write(ex.upstream.transport, LAST_CHUNK)
            else:
                ex.body.append(LAST_CHUNK)
        if ex is self.ex:
            if not ex.head_sent:
                dispatch.send(self, ex)
            route = ex.route
            if ex.has_body and route is not None and ex.upstream is not None and not ex.resp_started:
                self.deadline = self.server.now + route.upstream.try_timeout

    def on_upgrade(self, data: bytes) -> None:
        """The request just read asked to switch protocols; HTTP parsing stopped after it."""
        self.tunnel = TUNNEL_ASKED
        if data:
            tunnel.from_client(self, data)

    # -- upgraded connections (proxy.tunnel) ----------------------------------------------------

    def on_response_upgrade(self, data: bytes) -> None:
        """Bytes the upstream sent right after its 101, in the same read."""
        if data:
            tunnel.from_upstream(self, data)

    def tunnel_out(self, data: bytes) -> None:
        """Upstream bytes of an open tunnel, for the client."""
        tunnel.from_upstream(self, data)

    def tunnel_upstream_eof(self) -> None:
        """The upstream half-closed an open tunnel."""
        tunnel.half_close(self, tunnel.UPSTREAM_EOF)

    def close_tunnel(self) -> None:
        """End an open tunnel (idle timeout, shutdown): both sides close after queued bytes."""
        tunnel.close_tunnel(self)

    # -- starting an exchange: proxy/dispatch.py, except the attempt (retries make it too) -------

    def attempt(self, ex: Exchange, up: UpstreamRuntime, target: Target, now: int) -> None:
        """Send the exchange to ``target``: an idle pooled connection, a new one, or a wait."""
        pool = up.pools[target]
        if ex.pool is not pool:
            route = ex.route
            assert route is not None
            ex.pool = pool
            ex.head_bytes = ex.build_request_head(route, pool.host_line, self.client_ip)
        ex.started = now
        ex.attempts += 1
        # The per-try clock starts once the request is fully sent (on_end); a slow upload is the
        # client's time, bounded by the read timeout as before.
        sent = ex.req_done or not ex.has_body
        self.deadline = self.server.now + (up.try_timeout if sent else up.read_timeout)
        target.inflight += 1
        conn = pool.take()
        if conn is not None:
            dispatch.attach(self, ex, conn)
        elif not pool.acquire(dispatch.waiter(self, ex), self.loop_time()):
            self.end_target(ex)
            recovery.overflow(self, ex, up)

    # -- the response side: proxy/relay.py (called by the upstream connection) ----------------

    def end_target(self, ex: Exchange) -> None:
        """A failed attempt leaves the target's in-flight count (failures feed no latency EWMA;
        the successful path in relay.response_end does both inline)."""
        if ex.pool is not None and ex.started:
            ex.pool.target.inflight -= 1
            ex.started = 0

    def upstream_failed(self, conn: UpstreamConnection, err: GatewayError) -> None:
        """The upstream sent something unparsable (answer 502 or cut the response), or an answer
        to retry elsewhere (:class:`~pulsegate.proxy.recovery.RetryResponse`); either way the
        connection is dropped."""
        ex = self.ex
        if ex is None or ex.upstream is not conn:
            conn.close()
            return
        ex.upstream = None
        conn.client = None
        conn.close()
        if isinstance(err, recovery.RetryResponse) and ex.route is not None:
            recovery.note_5xx(self, ex)
            self.end_target(ex)
            ex.head_sent = False
            self.attempt(ex, ex.route.upstream, err.target, perf_counter_ns())
            return
        recovery.failed(self, ex, err, gateway=True)

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        """The upstream connection closed while serving our exchange."""
        ex = self.ex
        if ex is None or ex.upstream is not conn:
            return
        if self.tunnel == TUNNEL_OPEN:
            self.close_tunnel()
            return
        ex.upstream = None
        self.end_target(ex)
        if (
            not ex.resp_started
            and conn.uses > 1
            and not ex.retried
            and not ex.streamed
            and ex.req_done
            and ex.method in recovery.IDEMPOTENT
            and ex.pool is not None
        ):
            # A pooled connection the upstream had already closed: nothing was processed. Retry
            # once on a fresh connection (what Go's Transport and nginx do for idempotent requests).
            ex.retried = True
            ex.head_sent = False
            ex.started = perf_counter_ns()
            ex.pool.target.inflight += 1
            if not ex.pool.acquire(dispatch.waiter(self, ex), self.loop_time()):
                self.end_target(ex)
                if ex.route is not None:
                    recovery.overflow(self, ex, ex.route.upstream)
                self.flush()
            return
        reason = "upstream closed the connection" if exc is None else f"upstream connection failed: {exc}"
        recovery.failed(self, ex, UpstreamError(reason, status=502), gateway=True)

    def upstream_paused(self) -> None:
        self.block_reading(BLOCK_UPSTREAM)

    def upstream_resumed(self) -> None:
        self.unblock_reading(BLOCK_UPSTREAM)

    # -- finishing -----------------------------------------------------------------------------

    def respond_error(self, ex: Exchange, err: GatewayError) -> None:
        if ex.resp_started:
            # Part of the response is out; the only honest signal left is closing early.
            if not ex.resp_done:
                ex.resp_done = True
                self.finish(ex, perf_counter_ns(), 0)
            self.flush()
            self.outbox.close(self.transport)
            return
        self.respond_local(ex, err.status, err.reason)
        self.flush()

    def keeps_alive_after(self, ex: Exchange) -> bool:
        """Whether the connection stays open once ``ex`` is answered. Not after an upgrade request
        that is answered instead of switched: parsing stopped there, so its tunnel state goes."""
        if ex.upgrade is not None:
            self.tunnel = NO_TUNNEL
            self.early = []
            self.early_bytes = 0
            return False
        return ex.keep_alive and not self.closing and not self.server.draining

    def respond_local(self, ex: Exchange, status: int, detail: str, extra: bytes = b"") -> None:
        """Answer with the gateway's own response; the request body (if any) is read and dropped."""
        keep = self.keeps_alive_after(ex)
        out = error_response(status, detail, ex.request_id or b"", close=not keep, extra=extra)
        self.wbuf.append(out)
        ex.resp_started = ex.resp_done = True
        ex.client_keep = keep
        ex.status = status
        ex.bytes_out += len(out)
        self.finish(ex, perf_counter_ns(), 0)
        ex.body = []
        if ex.req_done:
            self.advance(ex)
        else:
            ex.discard = True
            self.unblock_reading(BLOCK_BUFFER)

    def finish(self, ex: Exchange, now: int, upstream_us: int) -> None:
        """The exchange's response is complete (or cut): count it and log it, once."""
        server = self.server
        route = ex.route
        total_us = (now - ex.t0) // 1000
        if route is not None:
            route.stats.in_flight -= 1
        if server.metrics_on:
            stats = route.stats if route is not None else server.registry.unrouted
            stats.finish(ex.status, ex.bytes_in, ex.bytes_out, total_us, upstream_us)
        log = server.access_log
        if log is not None:
            pool = ex.pool
            log.record_checked(  # the parser validated method, target and request id
                ex.method,
                ex.target,
                route.name if route is not None else "",
                route.upstream.name if route is not None else "",
                pool.target.address if pool is not None else "",
                ex.status,
                ex.bytes_in,
                ex.bytes_out,
                total_us,
                upstream_us,
                ex.request_id or b"",
                self.client_ip,
            )

    def advance(self, ex: Exchange) -> None:
        """The exchange is complete on both sides: move on to the next request, or close."""
        self.ex = None
        if not ex.client_keep:
            self.flush()
            self.outbox.close(self.transport)
            return
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            self.unblock_reading(BLOCK_PIPELINE)
            self.ex = nxt
            dispatch.start(self, nxt)
            return
        if self.rejected is not None:
            exc, self.rejected = self.rejected, None
            ending.reject(self, exc)
            return
        if self.closing:
            self.flush()
            self.outbox.close(self.transport)
            return
        if self.parser.in_head:
            self.phase = HEAD
            self.deadline = self.server.now + self.lim.header_timeout
            self.t_first = perf_counter_ns()  # its first bytes came in earlier; waiting starts now
        else:
            self.phase = IDLE
            self.deadline = self.server.now + self.lim.keepalive_timeout

    def flush(self) -> None:
        """Hand what was gathered for the client to the outbox (written at the loop iteration's end)."""
        wbuf = self.wbuf
        if wbuf:
            self.wbuf = []
            self.outbox.write(self.transport, wbuf[0] if len(wbuf) == 1 else wbuf)

    # -- refusals, lingering close and timeouts: proxy/ending.py ----------------------------------

    def close_if_idle(self) -> bool:
        """For shutdown: close now if no exchange is in progress; True if closed."""
        if self.phase == LINGER or (self.ex is None and not self.parser.in_head):
            self.outbox.close(self.transport)
            return True
        self.closing = True
        return False

    # -- reading flow control -------------------------------------------------------------------

    def block_reading(self, reason: int) -> None:
        if not self.blocked:
            self.transport.pause_reading()
        self.blocked |= reason

    def unblock_reading(self, reason: int) -> None:
        if self.blocked & reason:
            self.blocked &= ~reason
            if not self.blocked and not self.transport.is_closing():
                self.transport.resume_reading()
