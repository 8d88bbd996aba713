"""The response half of an exchange: what the upstream's head and end do on the client side.

The upstream connection calls :func:`response_head` and :func:`response_end` as its parser reports
them; body bytes go straight to the client's write buffer (``UpstreamConnection.on_response_body``).
Functions, not ClientConnection methods, so the client module holds the connection's life cycle
and the request side only; compiled together, these are direct C calls with native attribute
access, as the methods were.
"""

from __future__ import annotations

from time import perf_counter_ns as _perf_counter_ns
from typing import TYPE_CHECKING, Final

from pulsegate.errors import UpstreamError
from pulsegate.http.head import ResponseHead
from pulsegate.http.writer import CRLF, LAST_CHUNK, STATUS_LINES, content_length_line, status_line
from pulsegate.proxy import recovery, tunnel
from pulsegate.proxy.exchange import BODY_CHUNKED, BODY_CLOSE, BODY_LENGTH, BODY_NONE, VIA, VIA_RID
from pulsegate.proxy.tunnel import TUNNEL_ASKED

if TYPE_CHECKING:
    from pulsegate.proxy.client import ClientConnection

# A Final alias is a C static in the compiled module; an imported name is a dict lookup per call.
perf_counter_ns: Final = _perf_counter_ns


def response_head(client: ClientConnection, head: ResponseHead) -> None:
    """The upstream's response head: the client's head (status, kept fields, our framing, Via,
    the request id, Connection) goes to the client's write buffer; interim 1xx pass through, a
    5xx worth retrying raises :class:`~pulsegate.proxy.recovery.RetryResponse`."""
    ex = client.ex
    assert ex is not None
    status = head.status
    req = ex
    if status < 200:
        if status == 101:
            if ex.upgrade is None or client.tunnel != TUNNEL_ASKED:
                # A switch we never asked for is a protocol error.
                raise UpstreamError("unexpected 101 Switching Protocols", status=502)
            tunnel.open_tunnel(client, ex, head)
            return
        if status != 100 and req.version == 1:
            client.wbuf.append(status_line(status) + head.fields + CRLF)
        return
    pool = ex.pool
    if pool is not None:
        target = pool.target
        if status >= 500:
            if status in recovery.RETRY_STATUSES:
                nxt = recovery.retry_target(client, ex, False)
                if nxt is not None:
                    raise recovery.RetryResponse(status, nxt)  # the upstream connection reports it back
            recovery.note_5xx(client, ex)
        elif target.errors:
            target.errors = target.failures = 0
    ex.resp_started = True
    ex.status = status
    keep = client.keeps_alive_after(ex)
    parts = [STATUS_LINES.get(status) or status_line(status), head.fields]
    if req.method == b"HEAD" or status in (204, 304):
        framing = BODY_NONE
        if head.content_length is not None and status != 204:
            parts.append(content_length_line(head.content_length))
    elif head.content_length is not None:
        framing = BODY_LENGTH
        parts.append(content_length_line(head.content_length))
    elif req.version == 1:
        framing = BODY_CHUNKED
        parts.append(b"Transfer-Encoding: chunked\r\n")
    else:
        framing = BODY_CLOSE  # an HTTP/1.0 client knows no chunked: the close ends the body
        keep = False
    ex.framing = framing
    ex.client_keep = keep
    ex.upstream_keep = head.keep_alive
    if head.via is None:
        parts.append(VIA_RID)
    else:
        parts += (b"Via: ", head.via + b", " + VIA, b"\r\nX-Request-Id: ")
    parts.append(ex.request_id or b"")
    if not keep:
        parts.append(b"\r\nConnection: close\r\n\r\n")
    elif req.version == 0:
        parts.append(b"\r\nConnection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n\r\n")
    out = b"".join(parts)
    ex.bytes_out += len(out)
    client.wbuf.append(out)


def response_end(client: ClientConnection) -> None:
    """The response is complete: release (or close) the upstream connection, count and log the
    exchange, and move the client on."""
    ex = client.ex
    assert ex is not None
    if ex.framing == BODY_CHUNKED:
        client.wbuf.append(LAST_CHUNK)
    conn = ex.upstream
    pool = ex.pool
    assert conn is not None and pool is not None
    ex.upstream = None
    conn.client = None
    now = perf_counter_ns()
    target = pool.target
    target.inflight -= 1
    upstream_us = (now - ex.started) // 1000
    target.observe_latency(upstream_us)
    ex.started = 0
    if ex.upstream_keep and ex.req_done and ex.head_sent:
        pool.release(conn, client.server.now)
    else:
        conn.close()  # the upstream still expects request bytes, or asked to close
    ex.resp_done = True
    if client.server.metrics_on:
        pool.stats.response(ex.status, ex.bytes_in, ex.bytes_out)
    client.finish(ex, now, upstream_us)
    if not ex.req_done:
        # Answered before the client finished sending: read and drop the rest.
        ex.discard = True
        return
    client.advance(ex)
