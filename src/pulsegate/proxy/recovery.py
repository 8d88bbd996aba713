"""What a client connection does when an attempt cannot go ahead or fails: rate limiting (429),
circuit breaking (503 + ``Retry-After``), outlier bookkeeping, and retries on another target
within the upstream's attempts and retry budget. The rules are in docs/resilience.md.

Functions over a :class:`~pulsegate.proxy.client.ClientConnection`, compiled with it (mypyc);
none of them runs on the path of a request that succeeds first time, apart from the
``rate_limit`` check on routes that have one.
"""

from __future__ import annotations

from time import monotonic, perf_counter_ns
from typing import TYPE_CHECKING, Final

from pulsegate.errors import GatewayError, UpstreamError

if TYPE_CHECKING:
    from pulsegate.balancing.target import Target
    from pulsegate.proxy.client import ClientConnection
    from pulsegate.proxy.exchange import Exchange
    from pulsegate.proxy.runtime import RateLimiter, UpstreamRuntime

IDEMPOTENT: Final = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
#: Upstream answers worth another target for an idempotent request (Envoy's retry_on gateway-error).
RETRY_STATUSES: Final = frozenset((502, 503, 504))


class RetryResponse(UpstreamError):
    """Raised out of the response parser: this answer is dropped and the request retried on ``target``."""

    def __init__(self, status: int, target: Target) -> None:
        super().__init__(f"upstream answered {status}", status=status, retryable=True)
        self.target = target


def admit(conn: ClientConnection, ex: Exchange, limiter: RateLimiter) -> bool:
    """Take a rate-limit token for the request; without one, answer 429 (False)."""
    d = limiter.take(conn.client_ip, ex.headers, monotonic())
    if d.allowed:
        return True
    route = ex.route
    conn.server.registry.count("rate_limited", route.name if route is not None else "")
    retry = max(1, -int(-d.retry_after // 1))  # whole seconds, rounded up
    reset = max(retry, -int(-d.reset // 1))
    extra = b"Retry-After: %d\r\nRateLimit-Limit: %d\r\nRateLimit-Remaining: 0\r\n" % (retry, limiter.burst)
    conn.respond_local(
        ex, 429, "rate limit exceeded", extra + b"RateLimit-Reset: %d\r\n" % reset + limiter.policy
    )
    return False


def overflow(conn: ClientConnection, ex: Exchange, up: UpstreamRuntime) -> None:
    """The circuit breaker refused the request: 503 with ``Retry-After`` at once."""
    br = up.breaker
    retry = br.retry_after if br is not None else b"1"
    conn.respond_local(ex, 503, f"upstream '{up.name}' is over its limits", b"Retry-After: %s\r\n" % retry)
    conn.flush()  # also reached from upstream callbacks (a refused retry), which do not flush


def retry_target(conn: ClientConnection, ex: Exchange, any_method: bool) -> Target | None:
    """Where to retry a failed attempt, or None when it must not be retried.

    ``any_method``: nothing was sent (a connect failure), so even a POST is safe to repeat.
    Otherwise only idempotent requests whose whole body we still hold. Never the target that
    just failed; never beyond ``attempts`` or the retry budget."""
    route = ex.route
    pool = ex.pool
    if route is None or pool is None or ex.resp_started or ex.aborted or ex is not conn.ex:
        return None
    up = route.upstream
    if ex.attempts >= up.attempts:
        return None
    if not any_method and (ex.method not in IDEMPOTENT or not ex.req_done or ex.streamed):
        return None
    failed = pool.target
    nxt = up.balancer.pick(ex.key, failed)
    if nxt is None and up.fail_open:
        nxt = up.any_target(failed)
    if nxt is None or nxt is failed:
        # As nginx: a retry goes to another target or nowhere (the same one just failed).
        return None
    registry = conn.server.registry
    if not up.budget.try_withdraw():
        registry.count("retry_budget_exhausted", up.name)
        return None
    registry.count("retries", up.name)
    return nxt


def failed(
    conn: ClientConnection,
    ex: Exchange,
    err: GatewayError,
    *,
    gateway: bool,
    any_method: bool = False,
    blame: bool = True,
) -> None:
    """An attempt failed (its connection is already let go): feed outlier detection (when
    ``blame``), then retry elsewhere if allowed, else answer ``err``."""
    pool = ex.pool
    route = ex.route
    if blame and pool is not None and route is not None:
        outlier = route.upstream.outlier
        if outlier is not None:
            outlier.failure(pool.target, conn.server.now, gateway)
    conn.end_target(ex)
    nxt = retry_target(conn, ex, any_method)
    if nxt is not None and route is not None:
        ex.head_sent = False
        conn.attempt(ex, route.upstream, nxt, perf_counter_ns())
        return
    conn.respond_error(ex, err)


def note_5xx(conn: ClientConnection, ex: Exchange) -> None:
    """A 5xx answer: a mark against the target for outlier ejection."""
    route, pool = ex.route, ex.pool
    if route is not None and pool is not None and route.upstream.outlier is not None:
        route.upstream.outlier.failure(pool.target, conn.server.now, False)
