"""How a client connection's exchanges end other than with a proxied response: refusals of
malformed or too-slow requests, the lingering close that follows them, and the sweeper's timeouts.

Functions over the :class:`~pulsegate.proxy.client.ClientConnection`, compiled with it.
"""

from __future__ import annotations

from time import perf_counter_ns as _perf_counter_ns
from typing import TYPE_CHECKING, Final

from pulsegate.errors import DownstreamError, UpstreamError
from pulsegate.http.writer import error_response
from pulsegate.proxy import recovery
from pulsegate.proxy.exchange import BLOCK_REJECTED, HEAD, IDLE, LINGER
from pulsegate.proxy.tunnel import TUNNEL_OPEN

if TYPE_CHECKING:
    from pulsegate.proxy.client import ClientConnection

# A Final alias is a C static in the compiled module; an imported name is a dict lookup per call.
perf_counter_ns: Final = _perf_counter_ns

# nginx's lingering_timeout and lingering_time: how long a lingering connection may stay silent,
# and how long it may linger at most.
LINGER_TIMEOUT: Final = 5.0
LINGER_TIME: Final = 30.0


def reject(client: ClientConnection, exc: DownstreamError) -> None:
    """Refuse a malformed request: the status, ``Connection: close``, and no upstream traffic.

    When earlier pipelined requests are still being answered, their responses go first and
    the error follows them (responses stay in request order)."""
    bad = client.parsing
    active = client.ex
    if active is not None and bad is not active:
        if bad is not None and client.queue is not None and bad in client.queue:
            client.queue.remove(bad)  # never started, so it holds no upstream connection
        client.parsing = None
        client.rejected = exc
        client.block_reading(BLOCK_REJECTED)
        return
    ex = bad if bad is not None and not bad.resp_started else None
    cut = ex if ex is not None else (bad if bad is not None and bad is active else None)
    if cut is not None:
        # A streamed body went bad: cut the upstream so it never sees a complete request.
        conn = cut.upstream
        if conn is not None:
            cut.upstream = None
            conn.client = None
            conn.close()
        client.end_target(cut)
        if cut is not ex and not cut.resp_done:
            # Its response had started: it ends here, cut short like the connection.
            cut.resp_done = True
            client.finish(cut, perf_counter_ns(), 0)
    if client.ex is None or ex is client.ex:
        rid = ex.request_id if ex is not None and ex.request_id else client.server.next_request_id()
        out = error_response(exc.status, exc.reason, rid, close=True)
        client.wbuf.append(out)
        if ex is not None and ex is client.ex:
            ex.status = exc.status
            ex.bytes_out += len(out)
            ex.resp_started = ex.resp_done = True
            client.finish(ex, perf_counter_ns(), 0)
        elif client.server.metrics_on:
            client.server.registry.unrouted.finish(exc.status, 0, len(out), 0, 0)
    client.flush()
    client.closing = True
    client.ex = None
    client.parsing = None
    client.queue = None
    if exc.status == 408:
        client.outbox.close(client.transport)  # the client went quiet: nothing more is coming
    else:
        linger(client)


def linger(client: ClientConnection) -> None:
    """Close after a refusal without losing it (nginx's lingering close): the client may still
    be sending (a body too large, pipelined requests), and closing a socket with unread
    bytes sends a reset that can destroy the refusal before the client reads it. So: send a
    FIN after the answer, drop what still comes in, and close once the client closes, goes
    quiet for LINGER_TIMEOUT, or LINGER_TIME has passed."""
    client.phase = LINGER
    now = client.server.now
    client.linger_until = now + LINGER_TIME
    client.deadline = now + LINGER_TIMEOUT
    client.rejected = None
    if client.blocked:
        client.blocked = 0
        if not client.transport.is_closing():
            client.transport.resume_reading()
    client.outbox.write_eof(client.transport)


def timed_out(client: ClientConnection, now: float) -> None:
    """The sweeper found ``client.deadline`` passed: close, refuse (408) or time the upstream out (504)."""
    if client.tunnel == TUNNEL_OPEN:
        client.close_tunnel()  # idle for tunnel_idle_timeout
        return
    if client.phase in (IDLE, LINGER):
        # Keep-alive expired (close quietly, as nginx does), or a lingering client went quiet.
        client.outbox.close(client.transport)
    elif client.phase == HEAD:
        reject(client, DownstreamError("request header timeout", status=408))
    else:
        ex = client.ex
        if ex is not None and not ex.head_sent and not ex.req_done and not ex.discard:
            # Still waiting for the client's (small, buffered) body: the client is the slow one.
            reject(client, DownstreamError("request body timeout", status=408))
        elif ex is not None and ex.upstream is not None:
            conn = ex.upstream
            ex.upstream = None
            conn.client = None
            conn.close()
            if ex.pool is not None:
                ex.pool.stats.timeouts += 1
            # Still uploading: the wait may be the client's doing, so it is no mark against
            # the target.
            recovery.failed(
                client,
                ex,
                UpstreamError("upstream read timed out", status=504),
                gateway=True,
                blame=ex.req_done,
            )
            client.flush()
        elif ex is None or ex.discard:
            client.outbox.close(client.transport)
        else:
            client.deadline = now + client.read_timeout  # still connecting: the pool bounds that
