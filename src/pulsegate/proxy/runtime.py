"""The compiled form of one config generation: route table, upstreams, balancers and pools.

A reload builds a new :class:`Runtime` and swaps it in; each request reads the current one when it
starts, so in-flight exchanges finish on the generation they began with. Targets whose upstream
and address stay are carried over with their pools (idle connections, waiters, in-flight counts
and latency EWMA), so a reload neither cold-starts the upstreams nor strands a waiting request.

Example:
    >>> from pulsegate.config import load_config_text
    >>> rt = Runtime.build(load_config_text(
    ...     "upstreams: {a: {targets: ['127.0.0.1:9001']}}\\nroutes: [{upstream: a}]"))
    >>> rt.table.match(b"GET", b"x", b"/", []).payload.upstream.name
    'a'
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from pulsegate.balancing import Balancer, compile_hash_key, make_balancer
from pulsegate.balancing.target import Target
from pulsegate.config import GatewayConfig, UpstreamConfig, route_rules
from pulsegate.metrics.registry import Registry
from pulsegate.metrics.stats import RouteStats
from pulsegate.proxy.pool import TargetPool
from pulsegate.routing import RouteTable
from pulsegate.routing.rule import RouteRule

HashKey = Callable[[bytes, bytes, Sequence[tuple[bytes, bytes]]], bytes | None]


class UpstreamRuntime:
    """An upstream's balancer, per-target pools and timeouts."""

    __slots__ = ("balancer", "hash_key", "name", "pools", "read_timeout", "targets")

    def __init__(
        self,
        name: str,
        cfg: UpstreamConfig,
        rng: random.Random | None = None,
        previous: UpstreamRuntime | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.name = name
        old = {t.address: (t, previous.pools[t]) for t in previous.targets} if previous else {}
        self.targets: list[Target] = []
        self.pools: dict[Target, TargetPool] = {}
        for tc in cfg.targets:
            pc, connect = cfg.pool, cfg.timeouts.connect
            kept = old.get(tc.address)
            if kept is not None:
                target, pool = kept
                target.weight = tc.weight
                pool.configure(
                    max_idle=pc.max_idle,
                    max_connections=pc.max_connections,
                    idle_timeout=pc.idle_timeout,
                    connect_timeout=connect,
                )
            else:
                target = Target(tc.address, tc.weight)
                pool = TargetPool(
                    target,
                    max_idle=pc.max_idle,
                    max_connections=pc.max_connections,
                    idle_timeout=pc.idle_timeout,
                    connect_timeout=connect,
                    stats=registry.target(name, tc.address) if registry is not None else None,
                )
            self.targets.append(target)
            self.pools[target] = pool
        self.balancer: Balancer = make_balancer(cfg.balance, self.targets, rng=rng)
        self.hash_key: HashKey | None = (
            compile_hash_key(cfg.hash_key) if cfg.balance == "consistent_hash" else None
        )
        self.read_timeout = cfg.timeouts.read

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


class RouteRuntime:
    """What a matched route tells the proxy."""

    __slots__ = ("name", "preserve_host", "stats", "strip", "upstream")

    def __init__(
        self,
        name: str,
        upstream: UpstreamRuntime,
        strip: bytes | None,
        preserve_host: bool,
        stats: RouteStats | None = None,
    ) -> None:
        self.name = name
        self.stats = stats if stats is not None else RouteStats(name)
        self.upstream = upstream
        #: The prefix to remove from the path, when the route has ``strip_prefix: true``.
        self.strip = strip
        self.preserve_host = preserve_host


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int
    max_body_bytes: int
    header_timeout: float
    keepalive_timeout: float
    request_buffer: int
    max_pipelined: int


class Runtime:
    """One config generation, compiled."""

    __slots__ = ("config", "limits", "table", "upstreams")

    def __init__(
        self,
        config: GatewayConfig,
        table: RouteTable[RouteRuntime],
        upstreams: dict[str, UpstreamRuntime],
    ) -> None:
        self.config = config
        self.table = table
        self.upstreams = upstreams
        lim = config.limits
        self.limits = Limits(
            max_header_bytes=lim.max_header_bytes,
            max_body_bytes=lim.max_body_bytes,
            header_timeout=lim.header_timeout,
            keepalive_timeout=lim.keepalive_timeout,
            request_buffer=lim.request_buffer,
            max_pipelined=lim.max_pipelined,
        )

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        rng: random.Random | None = None,
        *,
        previous: Runtime | None = None,
        registry: Registry | None = None,
    ) -> Runtime:
        """Compile ``config``; with ``previous``, carry over its targets and pools where the
        upstream name and target address stay (see the module docstring)."""
        before = previous.upstreams if previous is not None else {}
        upstreams = {
            name: UpstreamRuntime(name, u, rng, before.get(name), registry)
            for name, u in config.upstreams.items()
        }
        rules: list[RouteRule[RouteRuntime]] = []
        for rule, route in zip(route_rules(config), config.routes, strict=True):
            strip = None
            if route.strip_prefix and route.match.path_prefix:
                strip = route.match.path_prefix.encode()
            stats = registry.route(rule.name) if registry is not None else None
            rt = RouteRuntime(rule.name, upstreams[route.upstream], strip, route.preserve_host, stats)
            rules.append(
                RouteRule(
                    name=rule.name,
                    payload=rt,
                    host=rule.host,
                    path=rule.path,
                    path_prefix=rule.path_prefix,
                    path_regex=rule.path_regex,
                    methods=rule.methods,
                    headers=rule.headers,
                )
            )
        return cls(config, RouteTable(rules), upstreams)

    def min_timeout(self) -> float:
        """The shortest configured timeout: the sweeper ticks a fraction of it."""
        values = [self.limits.header_timeout, self.limits.keepalive_timeout]
        for u in self.config.upstreams.values():
            values += [u.timeouts.read, u.timeouts.connect, u.pool.idle_timeout]
        return min(values)

    def config_route_names(self) -> list[str]:
        return [r.name for r in self.config.routes]

    def pools(self) -> list[TargetPool]:
        return [pool for u in self.upstreams.values() for pool in u.pools.values()]

    def close(self) -> None:
        for u in self.upstreams.values():
            u.close()
