"""Upgraded connections (WebSocket and other ``Upgrade`` protocols): once the upstream answers
``101``, a :class:`~pulsegate.proxy.client.ClientConnection` stops speaking HTTP and copies bytes
both ways until both sides have closed.

The tunnel keeps the upgrade request's exchange and upstream connection, so the client
connection's flow control (a full write buffer on one side pauses reading the other), its
in-flight gauges and the access log apply unchanged. Half-closes are passed on as nginx does;
``limits.tunnel_idle_timeout`` bounds a silent tunnel (enforced by the sweeper).

Functions rather than methods so the per-request class stays about HTTP; they are compiled with
it (mypyc), so the attribute accesses stay native.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import TYPE_CHECKING, Final

from pulsegate.http.head import ResponseHead
from pulsegate.http.writer import STATUS_LINES, status_line
from pulsegate.proxy.exchange import BLOCK_BUFFER

if TYPE_CHECKING:
    from pulsegate.proxy.client import ClientConnection
    from pulsegate.proxy.exchange import Exchange

# Upgrade states of a client connection: none, asked (waiting for the upstream's 101), open.
NO_TUNNEL: Final = 0
TUNNEL_ASKED: Final = 1
TUNNEL_OPEN: Final = 2
# Sides of a half-close, as bits of ClientConnection.tunnel_eof.
CLIENT_EOF: Final = 1
UPSTREAM_EOF: Final = 2


def from_client(conn: ClientConnection, data: bytes) -> None:
    """Client bytes after an upgrade request: to the upstream, or held until its 101."""
    ex = conn.ex
    if conn.tunnel == TUNNEL_OPEN and ex is not None and ex.upstream is not None:
        ex.bytes_in += len(data)
        conn.deadline = conn.server.now + conn.read_timeout
        conn.outbox.write(ex.upstream.transport, data)  # type: ignore[arg-type]
        return
    # Sent before the upstream agreed to switch: hold it (bounded) for the tunnel.
    conn.early.append(data)
    conn.early_bytes += len(data)
    if conn.early_bytes > conn.lim.request_buffer:
        conn.block_reading(BLOCK_BUFFER)


def from_upstream(conn: ClientConnection, data: bytes) -> None:
    """Upstream bytes of an open tunnel, for the client."""
    ex = conn.ex
    if ex is not None:
        ex.bytes_out += len(data)
    conn.deadline = conn.server.now + conn.read_timeout
    if conn.wbuf:
        conn.flush()  # the 101 head goes first
    conn.outbox.write(conn.transport, data)


def open_tunnel(conn: ClientConnection, ex: Exchange, head: ResponseHead) -> None:
    """The upstream answered 101: relay the head, then copy bytes both ways."""
    up = ex.upstream
    pool = ex.pool
    assert up is not None and pool is not None and ex.upgrade is not None
    ex.resp_started = True
    ex.status = 101
    out = b"".join(
        (
            STATUS_LINES.get(101) or status_line(101),
            head.fields,
            b"Connection: Upgrade\r\nUpgrade: ",
            head.upgrade or ex.upgrade,  # the protocol the upstream chose
            b"\r\nX-Request-Id: ",
            ex.request_id or b"",
            b"\r\n\r\n",
        )
    )
    ex.bytes_out += len(out)
    conn.wbuf.append(out)
    conn.tunnel = TUNNEL_OPEN
    up.tunnel = True
    # The tunnel keeps counting in the target's in-flight load (least_conn sees open sockets).
    pool.target.observe_latency((perf_counter_ns() - ex.started) // 1000)
    conn.read_timeout = conn.lim.tunnel_idle_timeout
    server = conn.server
    conn.deadline = server.now + conn.read_timeout
    server.tunnels += 1
    if ex.route is not None:
        server.registry.count("tunnels", ex.route.name)
    if conn.early:
        early, conn.early = conn.early, []
        ex.bytes_in += conn.early_bytes
        conn.early_bytes = 0
        conn.outbox.write(up.transport, early)  # type: ignore[arg-type]
        conn.unblock_reading(BLOCK_BUFFER)


def half_close(conn: ClientConnection, side: int) -> None:
    """One side sent a FIN: pass it on (after what is queued), or end the tunnel if both did."""
    conn.tunnel_eof |= side
    ex = conn.ex
    if conn.tunnel_eof == CLIENT_EOF | UPSTREAM_EOF or ex is None or ex.upstream is None:
        close_tunnel(conn)
        return
    if side == CLIENT_EOF:
        conn.outbox.write_eof(ex.upstream.transport)  # type: ignore[arg-type]
    else:
        conn.flush()
        conn.outbox.write_eof(conn.transport)


def close_tunnel(conn: ClientConnection) -> None:
    """End an open tunnel: both connections close after what is queued for them."""
    if conn.tunnel != TUNNEL_OPEN:
        return
    conn.tunnel = NO_TUNNEL
    conn.server.tunnels -= 1
    conn.closing = True
    ex = conn.ex
    if ex is not None:
        conn.ex = None
        up = ex.upstream
        if up is not None:
            ex.upstream = None
            up.client = None
            conn.outbox.close(up.transport)  # type: ignore[arg-type]
        conn.end_target(ex)
        if not ex.resp_done:
            ex.resp_done = True
            conn.finish(ex, perf_counter_ns(), 0)
    conn.flush()
    conn.outbox.close(conn.transport)
