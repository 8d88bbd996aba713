"""Starting an exchange: route the request, apply the route's limits, pick a target, take an
upstream connection (idle, new, or waited for) and send the request head and buffered body.

Functions over the :class:`~pulsegate.proxy.client.ClientConnection`, compiled with it (direct C
calls, native attribute access); :meth:`ClientConnection.attempt` stays a method because retries
(:mod:`pulsegate.proxy.recovery`) make attempts too.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter_ns as _perf_counter_ns
from typing import TYPE_CHECKING, Final

from pulsegate.errors import ConnectError, GatewayError
from pulsegate.http.writer import CONTINUE_100
from pulsegate.proxy import recovery
from pulsegate.proxy.exchange import ACTIVE, BLOCK_BUFFER, Exchange, host_key

if TYPE_CHECKING:
    from pulsegate.proxy.client import ClientConnection
    from pulsegate.proxy.upstream import UpstreamConnection

# A Final alias is a C static in the compiled module; an imported name is a dict lookup per call.
perf_counter_ns: Final = _perf_counter_ns


def start(client: ClientConnection, ex: Exchange) -> None:
    """Route the request, apply the route's limits, pick a target and make the first attempt."""
    server = client.server
    rt = server.runtime
    head = ex
    now = perf_counter_ns()
    if not ex.t0:
        ex.t0 = now
    client.phase = ACTIVE
    host = head.host
    if host != client.host_raw:
        client.host_raw = host
        client.host_route = host_key(host)
        client.last_table = None  # the remembered route was for another host
    table = rt.table
    path = head.path
    if table is client.last_table and path == client.last_path and head.method == client.last_method:
        m = client.last_match  # the same request line on the same table and host: same route
    else:
        m = table.match(head.method, client.host_route, path, head.headers)
        if not table.uses_headers:
            client.last_table = table
            client.last_path = path
            client.last_method = head.method
            client.last_match = m
    if m is None:
        client.respond_local(ex, 404, "no route matches this request")
        return
    route = m.payload
    up = route.upstream
    ex.route = route
    route.stats.in_flight += 1
    limiter = route.limiter
    if limiter is not None and not recovery.admit(client, ex, limiter):
        return
    br = up.breaker
    if br is not None and br.max_in_flight is not None and br.in_flight() >= br.max_in_flight:
        br.trip("in_flight")
        recovery.overflow(client, ex, up)
        return
    up.budget.requests += 1
    key = None
    if up.hash_key is not None:
        key = ex.key = up.hash_key(client.client_ip, head.path, head.headers)
    target = up.balancer.pick(key)
    if target is None:
        # Every target is unhealthy or ejected: fail open (try one anyway) or refuse.
        target = up.any_target(None) if up.fail_open else None
        if target is None:
            client.respond_local(ex, 503, f"no available target in upstream '{up.name}'")
            return
    client.read_timeout = up.read_timeout
    if head.expect_continue:
        # We read the body only once the upstream side is settled; tell the client to send it.
        client.wbuf.append(CONTINUE_100)
    client.attempt(ex, up, target, now)


def waiter(
    client: ClientConnection, ex: Exchange
) -> Callable[[UpstreamConnection | None, GatewayError | None], None]:
    """The pool's callback for a connection that is not idle yet (kept on the exchange, to withdraw)."""

    def on_ready(conn: UpstreamConnection | None, err: GatewayError | None) -> None:
        ex.waiter = None
        _connected(client, ex, conn, err)

    ex.waiter = on_ready
    return on_ready


def _connected(
    client: ClientConnection, ex: Exchange, conn: UpstreamConnection | None, err: GatewayError | None
) -> None:
    if ex.aborted or ex is not client.ex:
        # The client went away (or the exchange was answered) while we were connecting.
        if conn is not None:
            ex.pool.release(conn, client.loop_time())  # type: ignore[union-attr]
        return
    if conn is None:
        assert err is not None
        if isinstance(err, ConnectError):
            recovery.failed(client, ex, err, gateway=True, any_method=True)
        else:
            client.end_target(ex)
            client.respond_error(ex, err)
        client.flush()
        return
    attach(client, ex, conn)
    client.flush()


def attach(client: ClientConnection, ex: Exchange, conn: UpstreamConnection) -> None:
    """``conn`` serves the exchange now: wire it to the client, send if the request is ready."""
    ex.upstream = conn
    conn.client = client
    conn.uses += 1
    # Heads and ends reach relay.response_head/response_end through the upstream connection.
    conn.parser.head_request = ex.method == b"HEAD"
    if client.write_paused:
        conn.pause_reading()
    elif conn.reading_paused:
        conn.resume_reading()
    if ex.req_done or ex.buffered > client.lim.request_buffer:
        send(client, ex)


def send(client: ClientConnection, ex: Exchange) -> None:
    """Write the head and buffered body upstream. Small bodies wait until complete, so a request
    that turns out malformed mid-body never reaches the upstream whole."""
    conn = ex.upstream
    if conn is None or ex.head_sent:
        return
    assert conn.transport is not None
    ex.head_sent = True
    body = ex.body
    if body:
        client.outbox.write(conn.transport, [ex.head_bytes, *body])
        # Keep a complete small request for one retry on a stale pooled connection; a body still
        # arriving streams through and cannot be replayed, so no retry for this exchange.
        ex.body = body if ex.req_done else []
    else:
        client.outbox.write(conn.transport, ex.head_bytes)
    if not ex.req_done:
        ex.streamed = True
    client.unblock_reading(BLOCK_BUFFER)
