"""The data-plane server of one process: listeners, client connections, the timeout sweeper,
graceful shutdown and runtime (config) swaps.

Example:
    >>> import asyncio
    >>> from pulsegate.config import load_config_text
    >>> async def main():
    ...     server = Server(load_config_text("listen: '127.0.0.1:0'"))
    ...     addrs = await server.start()
    ...     await server.stop(timeout=1.0)
    ...     return addrs[0][0]
    >>> asyncio.run(main())
    '127.0.0.1'
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from typing import Any, Final, cast

from pulsegate.accesslog import AccessLog
from pulsegate.balancing.target import split_address
from pulsegate.config import GatewayConfig
from pulsegate.health.checker import CheckResult, HealthChecker
from pulsegate.health.monitor import TargetState, apply_verdict, check_specs, outlier_logger, target_states
from pulsegate.health.ratelimit import SharedBuckets
from pulsegate.metrics.registry import Registry
from pulsegate.proxy import ending
from pulsegate.proxy.client import ClientConnection
from pulsegate.proxy.outbox import Outbox
from pulsegate.proxy.pool import TargetPool
from pulsegate.proxy.runtime import Runtime

# Timers are swept, not scheduled per request: a loop.call_later per request and per keep-alive
# costs about a microsecond each; one pass over the connections a few times a second costs far less.
MIN_TICK: Final = 0.01
MAX_TICK: Final = 0.5


class Server:
    """Serves one config generation at a time on the configured listen addresses."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        reuse_port: bool = False,
        sockets: Sequence[socket.socket] = (),
        access_log: AccessLog | None = None,
        workers: int = 1,
        health_checks: bool = True,
        buckets: int | None = None,
    ) -> None:
        """``workers``: how many processes share the gateway's limits (circuit breaker split);
        ``health_checks``: run the active checks here (False in a worker: the supervisor runs
        them and forwards verdicts to :meth:`health_verdict`); ``buckets``: the path of a shared
        rate-limit table (a descriptor; else one is created when a route needs it)."""
        self.registry = Registry()
        #: Record per-request metrics (``metrics.enabled``); the registry exists either way.
        self.metrics_on = config.metrics.enabled
        self.access_log = access_log
        self.workers = workers
        self.buckets: SharedBuckets | None = SharedBuckets.from_fd(buckets) if buckets is not None else None
        self._on_outlier = outlier_logger(self.registry)
        self.runtime = self._build(config, None)
        self.checker: HealthChecker | None = None
        self._run_checks = health_checks
        self._set_live()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.outbox: Outbox = None  # type: ignore[assignment]  # set by start()
        #: A coarse clock for deadlines (loop time, refreshed each sweep): reading an attribute is
        #: cheaper than calling loop.time() several times per request, and deadlines only need
        #: the sweep's own precision.
        self.now = 0.0
        self.connections: set[ClientConnection] = set()
        #: Upgraded (WebSocket) connections open now.
        self.tunnels = 0
        self.draining = False
        self.reuse_port = reuse_port
        #: Listening sockets handed over by a supervisor (used instead of binding ``listen``).
        self.sockets = list(sockets)
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        #: Pools of targets a reload removed, swept until their last exchange gave them back.
        self._retired: list[TargetPool] = []
        self._rid_prefix = os.urandom(6).hex().encode()
        self._rid_counter = 0
        self._all_closed = asyncio.Event()

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the loop that will run the connections (done by :meth:`start`)."""
        self.loop = loop
        self.outbox = Outbox(loop)
        self.now = loop.time()

    def forget(self, conn: ClientConnection) -> None:
        """A client connection closed."""
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self._all_closed.set()

    def next_request_id(self) -> bytes:
        """A process-unique request id: a random per-process prefix and a counter (no syscall)."""
        self._rid_counter += 1
        return b"%s-%x" % (self._rid_prefix, self._rid_counter)

    async def start(self) -> list[tuple[str, int]]:
        """Bind every listen address (or serve the handed-over ``sockets``); returns the bound
        (host, port) pairs (port 0 = ephemeral)."""
        self.attach_loop(asyncio.get_running_loop())
        if self.access_log is not None:
            self.access_log.start(self.loop)
        bound: list[tuple[str, int]] = []
        servers: list[asyncio.Server] = []
        # A loop, not a comprehension: mypyc cannot compile an await inside one.
        for sock in self.sockets:
            srv = await self.loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=4096)
            servers.append(srv)
        for address in self.runtime.config.listen if not self.sockets else ():
            host, port = split_address(address, allow_port_zero=True)
            servers.append(
                await self.loop.create_server(
                    lambda: ClientConnection(self),
                    host,
                    port,
                    reuse_port=self.reuse_port or None,
                    backlog=4096,
                )
            )
        for srv in servers:
            self._servers.append(srv)
            # uvloop's Server.sockets is a list where typeshed says tuple, and this module is
            # compiled (mypyc checks declared types at runtime): read it untyped.
            for sock in cast(Any, srv).sockets:
                name = sock.getsockname()
                bound.append((str(name[0]), int(name[1])))
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sweeper = self.loop.create_task(self._sweep_forever())
        if self._run_checks:
            self.checker = HealthChecker(self._check_result)
            self.checker.configure(check_specs(self.runtime.config))
            self.checker.start()
        return bound

    def _build(self, config: GatewayConfig, previous: Runtime | None) -> Runtime:
        if self.buckets is None and any(r.rate_limit is not None for r in config.routes):
            self.buckets = SharedBuckets.create()
            self.buckets.unlink()  # nothing to clean up later, whatever happens
        return Runtime.build(
            config,
            previous=previous,
            registry=self.registry,
            buckets=self.buckets,
            workers=self.workers,
            on_outlier=self._on_outlier,
            now=self.now if previous is not None else 0.0,
        )

    def _check_result(self, result: CheckResult) -> None:
        if result.changed:
            state = "healthy" if result.healthy else "unhealthy"
            self.registry.count("health_transitions", result.upstream, result.address, state)
        self.health_verdict(result.upstream, result.address, result.healthy, result.ok)

    def health_verdict(self, upstream: str, address: str, healthy: bool, ok: bool) -> None:
        """An active health check's verdict on one target (from our checker or the supervisor's)."""
        apply_verdict(self.runtime, upstream, address, healthy=healthy, ok=ok, now=self.now)

    def target_states(self) -> list[TargetState]:
        """Every target's health, ejection and load figures (for the admin API)."""
        return target_states(self.runtime, self.loop.time() if self.loop is not None else self.now)

    def apply(self, config: GatewayConfig) -> None:
        """Swap in a new config generation between requests: requests already started finish on
        the old one; kept targets keep their pools; removed targets' pools drain, then close."""
        old = self.runtime
        self.runtime = self._build(config, old)
        if self.checker is not None:
            self.checker.configure(check_specs(config))
        self.metrics_on = config.metrics.enabled
        kept = {id(p) for p in self.runtime.pools()}
        for pool in old.pools():
            if id(pool) not in kept:
                pool.retire()
                self._retired.append(pool)
        self._set_live()

    def _set_live(self) -> None:
        rt = self.runtime
        self.registry.set_live(
            rt.config_route_names(), [(u.name, t.address) for u in rt.upstreams.values() for t in u.targets]
        )

    def pool_gauges(self) -> dict[str, tuple[int, int, int]]:
        """``upstream/address`` -> (in-flight requests, idle connections, busy connections)."""
        gauges: dict[str, tuple[int, int, int]] = {}
        for pool in [*self.runtime.pools(), *self._retired]:
            st = pool.stats
            key = f"{st.upstream}/{st.address}"
            # A target removed and added back has a draining pool and a live one: add them up.
            inflight, idle, busy = gauges.get(key, (0, 0, 0))
            gauges[key] = (inflight + pool.target.inflight, idle + len(pool.idle), busy + pool.busy)
        return gauges

    def tick(self) -> float:
        return max(MIN_TICK, min(MAX_TICK, self.runtime.min_timeout() / 10))

    def sweep(self, now: float) -> None:
        """Fire every expired deadline (connections, pools). Deterministic given ``now``."""
        self.now = now
        for conn in [c for c in self.connections if c.deadline <= now]:
            ending.timed_out(conn, now)
        for up in self.runtime.upstreams.values():
            for pool in up.pools.values():
                pool.sweep(now)
            up.budget.tick(now)
            if up.outlier is not None and up.outlier.ejected:
                up.outlier.sweep(now)
        if self._retired:
            for pool in self._retired:
                pool.sweep(now)
            self._retired = [p for p in self._retired if not p.drained]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick())
            self.sweep(self.loop.time())

    async def stop(self, timeout: float) -> None:
        """Stop accepting, let in-flight exchanges finish for up to ``timeout`` s, then close all."""
        self.draining = True
        for srv in self._servers:
            srv.close()
        if self.checker is not None:
            await self.checker.stop()
        for conn in list(self.connections):
            conn.close_if_idle()
        if self.connections:
            try:
                async with asyncio.timeout(timeout):
                    await self._all_closed.wait()
            except TimeoutError:
                pass
        if self.tunnels:
            # Tunnels outlived the drain: close them with a FIN (after queued bytes), not a reset.
            for conn in list(self.connections):
                conn.close_tunnel()
            try:
                async with asyncio.timeout(1.0):
                    await self._all_closed.wait()
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.transport.abort()
        await asyncio.sleep(0)  # abort() reports connection_lost on the next iteration: count them
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.runtime.close()
        for pool in self._retired:
            pool.close()
        if self.access_log is not None:
            self.access_log.close()
        if self.buckets is not None:
            self.buckets.close()
        for srv in self._servers:
            await srv.wait_closed()


def bound_urls(addresses: Sequence[tuple[str, int]]) -> list[str]:
    """``http://host:port`` for each bound address (IPv6 in brackets)."""
    return [f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}" for h, p in addresses]
