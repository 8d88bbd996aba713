"""Keep-alive connection pool for one upstream target.

Idle connections are kept LIFO: the most recently used one is the warmest (its TCP window open,
least likely to have been closed by the upstream's own idle timer). ``max_connections`` bounds
idle + busy + connecting; requests beyond it wait (bounded by the connect timeout) for a release.

Example (the pool's state shows in its repr, as httpcore's does):
    >>> from pulsegate.balancing.target import Target
    >>> TargetPool(Target("127.0.0.1:9001"), max_idle=4, max_connections=8, idle_timeout=60.0,
    ...            connect_timeout=2.0)
    <TargetPool 127.0.0.1:9001 busy=0 idle=0 waiting=0 max=8>
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from pulsegate.balancing.target import Target
from pulsegate.errors import ConnectError, GatewayError, UpstreamError
from pulsegate.metrics.stats import TargetStats

if TYPE_CHECKING:
    from pulsegate.health.breaker import Breaker
    from pulsegate.proxy.upstream import UpstreamConnection

# Where a connection is, for the counts: handed out (or opening), idle in the pool, or gone.
BUSY: Final = 0
IDLE: Final = 1
GONE: Final = 2

#: Called with a connection, or with the error that prevented one.
OnReady = Callable[["UpstreamConnection | None", "GatewayError | None"], None]


class TargetPool:
    """Connections to one target: take an idle one, open a new one, or wait for a release."""

    __slots__ = (
        "breaker",
        "busy",
        "closed",
        "connect_timeout",
        "host_line",
        "idle",
        "idle_timeout",
        "max_connections",
        "max_idle",
        "retired",
        "stats",
        "target",
        "waiters",
    )

    def __init__(
        self,
        target: Target,
        *,
        max_idle: int,
        max_connections: int,
        idle_timeout: float,
        connect_timeout: float,
        stats: TargetStats | None = None,
    ) -> None:
        self.target = target
        self.max_idle = max_idle
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        #: The request line's end and the Host header sent when a route does not preserve the
        #: client's, built once per target.
        self.host_line = b" HTTP/1.1\r\nHost: " + target.address.encode() + b"\r\n"
        self.idle: deque[UpstreamConnection] = deque()
        #: Connections handed out or being opened.
        self.busy = 0
        self.waiters: deque[tuple[float, OnReady]] = deque()
        self.closed = False
        #: Dropped by a reload: serves the exchanges still holding it, keeps nothing idle.
        self.retired = False
        self.stats = stats if stats is not None else TargetStats("", target.address)
        #: The upstream's circuit breaker, when it sets limits across its targets.
        self.breaker: Breaker | None = None

    def configure(
        self, *, max_idle: int, max_connections: int, idle_timeout: float, connect_timeout: float
    ) -> None:
        """Apply a reloaded config's limits in place: pooled connections and waiters carry over."""
        self.max_idle = max_idle
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        while len(self.idle) > max_idle:
            conn = self.idle.popleft()  # the coldest first
            conn.state = GONE
            conn.close()
        # A raised max_connections serves requests already waiting, not only new ones.
        waiting = -1
        while self.waiters and len(self.waiters) != waiting:
            waiting = len(self.waiters)
            self.kick()

    def retire(self) -> None:
        """The target left the config: close idle connections; busy ones close when released, and
        requests already waiting for a connection are still served."""
        self.retired = True
        self.max_idle = 0
        while self.idle:
            conn = self.idle.pop()
            conn.state = GONE
            conn.close()

    @property
    def drained(self) -> bool:
        """Nothing in use, nothing waiting (a retired pool can then be forgotten)."""
        return self.busy == 0 and not self.waiters and not self.idle

    def take(self) -> UpstreamConnection | None:
        """An idle connection, or None. The hot path: no allocation, no await."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                conn.state = BUSY
                self.busy += 1
                return conn
            conn.state = GONE  # closing already; its connection_lost will find nothing to undo
        return None

    def acquire(self, on_ready: OnReady, now: float) -> bool:
        """Open a connection or queue for one; ``on_ready`` is called exactly once, later.

        False (and ``on_ready`` never called) when the request would have to wait and the
        breaker's ``max_pending`` is reached."""
        br = self.breaker
        if self.closed:
            on_ready(None, UpstreamError("upstream pool closed", status=503, retryable=True))
        elif self.busy + len(self.idle) < self.max_connections and (
            br is None or br.may_connect() or br.reclaim_idle(self)
        ):
            self.busy += 1
            asyncio.get_running_loop().create_task(self._connect(on_ready))
        elif br is not None and br.max_pending is not None and br.pending() >= br.max_pending:
            br.trip("pending")
            return False
        else:
            if br is not None and br.max_connections is not None and not br.may_connect():
                br.trip("connections")
            self.waiters.append((now + self.connect_timeout, on_ready))
        return True

    def cancel(self, on_ready: object) -> None:
        """Withdraw a queued request (its client left); nothing happens if it is not queued."""
        for i, (_, waiting) in enumerate(self.waiters):
            if waiting is on_ready:
                del self.waiters[i]
                return

    def drop_coldest(self) -> None:
        """Close the longest-idle connection (its slot is wanted elsewhere)."""
        conn = self.idle.popleft()
        conn.state = GONE
        conn.close()

    def kick(self) -> None:
        """Capacity was freed: let the oldest waiter open a connection if it now fits."""
        br = self.breaker
        if (
            self.waiters
            and not self.closed
            and self.busy + len(self.idle) < self.max_connections
            and (br is None or br.may_connect() or br.reclaim_idle(self))
        ):
            _, on_ready = self.waiters.popleft()
            self.acquire(on_ready, 0.0)

    async def _connect(self, on_ready: OnReady) -> None:
        from pulsegate.proxy.upstream import UpstreamConnection

        t = self.target
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: UpstreamConnection(self), t.host, t.port)
        except TimeoutError:
            self.busy -= 1
            self.stats.timeouts += 1
            on_ready(None, ConnectError(f"connect to {t.address} timed out", status=504))
            self._freed()
            return
        except OSError as exc:
            self.busy -= 1
            self.stats.connect_failures += 1
            reason = exc.strerror or type(exc).__name__
            on_ready(None, ConnectError(f"connect to {t.address} failed: {reason}"))
            self._freed()
            return
        conn.state = BUSY
        on_ready(conn, None)

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Give back a connection whose exchange ended cleanly; it is reused or closed."""
        if self.waiters and not self.closed:
            _, on_ready = self.waiters.popleft()
            on_ready(conn, None)  # stays busy: handed straight to the next request
            return
        self.busy -= 1
        br = self.breaker
        if len(self.idle) < self.max_idle and not self.closed and (br is None or not br.starved()):
            conn.state = IDLE
            conn.idle_since = now
            self.idle.append(conn)
        else:
            conn.state = GONE
            conn.close()
            self._freed()

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: drop it from the counts wherever it was."""
        state = conn.state
        conn.state = GONE
        if state == IDLE:
            self.idle.remove(conn)
            self._freed()
        elif state == BUSY:
            self.busy -= 1
            self._freed()

    def _freed(self) -> None:
        """A connection slot was freed: waiters here first, then (breaker) the upstream's others."""
        self.kick()
        br = self.breaker
        if br is not None and br.max_connections is not None:
            br.kick()

    def sweep(self, now: float) -> None:
        """Close idle connections past ``idle_timeout`` and fail waiters past their deadline."""
        idle = self.idle
        # LIFO: the oldest idle connections are at the bottom of the stack.
        while idle and idle[0].idle_since + self.idle_timeout <= now:
            conn = idle.popleft()
            conn.state = GONE
            conn.close()
        while self.waiters and self.waiters[0][0] <= now:
            _, on_ready = self.waiters.popleft()
            on_ready(None, UpstreamError("no upstream connection available", status=503, retryable=True))

    def close(self) -> None:
        """Close idle connections and refuse new ones (busy ones close when released)."""
        self.closed = True
        while self.idle:
            conn = self.idle.pop()
            conn.state = GONE
            conn.close()
        while self.waiters:
            _, on_ready = self.waiters.popleft()
            on_ready(None, UpstreamError("upstream pool closed", status=503, retryable=True))

    def __repr__(self) -> str:
        return (
            f"<TargetPool {self.target.address} busy={self.busy} idle={len(self.idle)} "
            f"waiting={len(self.waiters)} max={self.max_connections}>"
        )
