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
from pulsegate.config.resilience import RateLimitConfig
from pulsegate.health.breaker import Breaker
from pulsegate.health.budget import RetryBudget
from pulsegate.health.outlier import OnChange, OutlierDetector
from pulsegate.health.ratelimit import Decision, SharedBuckets
from pulsegate.metrics.registry import Registry
from pulsegate.metrics.stats import RouteStats
from pulsegate.proxy.pool import TargetPool
from pulsegate.routing import RouteTable
from pulsegate.routing.rule import RouteRule

HashKey = Callable[[bytes, bytes, Sequence[tuple[bytes, bytes]]], bytes | None]


class UpstreamRuntime:
    """An upstream's balancer, per-target pools, timeouts and failure handling (retries and their
    budget, outlier ejection, circuit breaker)."""

    __slots__ = (
        "_next_any",
        "attempts",
        "balancer",
        "breaker",
        "budget",
        "fail_open",
        "hash_key",
        "name",
        "outlier",
        "pools",
        "read_timeout",
        "targets",
        "try_timeout",
    )

    def __init__(
        self,
        name: str,
        cfg: UpstreamConfig,
        rng: random.Random | None = None,
        previous: UpstreamRuntime | None = None,
        registry: Registry | None = None,
        *,
        workers: int = 1,
        on_outlier: OnChange | None = None,
        now: float = 0.0,
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
        rc = cfg.retries
        self.attempts = rc.attempts
        #: The wait for an attempt's response head (then read_timeout applies between reads).
        self.try_timeout = rc.per_try_timeout if rc.per_try_timeout is not None else self.read_timeout
        self.budget: RetryBudget
        if previous is not None:
            # The window of requests and retries carries over, so a reload cannot reset the budget.
            self.budget = previous.budget
            self.budget.ratio, self.budget.min_per_second = rc.budget, rc.min_per_second
        else:
            self.budget = RetryBudget(rc.budget, rc.min_per_second, now)
        self.fail_open = cfg.fail_open
        self.outlier = (
            OutlierDetector(name, cfg.outlier, self.targets, on_outlier) if cfg.outlier.enabled else None
        )
        if cfg.health is None:
            for target in self.targets:
                if not target.healthy:  # checks turned off by a reload: no verdict will come
                    target.healthy = True
                    target.refresh()
        if self.outlier is None:
            for target in self.targets:
                if target.ejected_until:  # ejection turned off by a reload: readmit
                    target.ejected_until = 0.0
                    target.refresh()
        bc = cfg.circuit_breaker
        self.breaker: Breaker | None = None
        if bc.max_connections is not None or bc.max_pending is not None or bc.max_in_flight is not None:
            self.breaker = Breaker(bc, workers)
            if registry is not None:
                self.breaker.on_trip = lambda kind: registry.count("breaker_trips", name, kind)
            self.breaker.pools = list(self.pools.values())
        for pool in self.pools.values():
            pool.breaker = self.breaker
        self._next_any = 0

    def any_target(self, exclude: Target | None) -> Target | None:
        """Fail-open choice, availability ignored: the next target in turn other than ``exclude``."""
        targets = self.targets
        for _ in range(len(targets)):
            t = targets[self._next_any % len(targets)]
            self._next_any += 1
            if t is not exclude:
                return t
        return None

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


class RateLimiter:
    """A route's ``rate_limit``: which bucket a request draws from, in the shared bucket table.

    Example:
        >>> from pulsegate.config.resilience import RateLimitConfig
        >>> buckets = SharedBuckets.create(slots=64)
        >>> rl = RateLimiter("api", RateLimitConfig(rate=1, burst=2), buckets)
        >>> [rl.take(b"10.0.0.1", [], 0.0).allowed for _ in range(3)], rl.take(b"10.0.0.2", [], 0.0).allowed
        ([True, True, False], True)
        >>> buckets.unlink()
    """

    __slots__ = ("buckets", "burst", "header", "policy", "prefix", "rate")

    def __init__(self, route: str, cfg: RateLimitConfig, buckets: SharedBuckets) -> None:
        self.buckets = buckets
        self.rate = cfg.rate
        self.burst = cfg.burst or 1
        #: The bucket key is this prefix plus the request's key value.
        self.prefix = f"{route}\0{cfg.key}\0".encode()
        kind, _, name = cfg.key.partition(":")
        #: Lower-case header name for ``header:NAME``; b"" for client_ip; None for route.
        self.header: bytes | None = (
            name.encode() if kind == "header" else (b"" if kind == "client_ip" else None)
        )
        window = max(1, -int(-self.burst / self.rate // 1))
        self.policy = b"RateLimit-Policy: %d;w=%d\r\n" % (self.burst, window)

    def take(self, client_ip: bytes, headers: Sequence[tuple[bytes, bytes]], now: float) -> Decision:
        header = self.header
        if header is None:
            key = self.prefix
        elif not header:
            key = self.prefix + client_ip
        else:
            key = self.prefix
            for name, value in headers:
                if len(name) == len(header) and name.lower() == header:
                    key = self.prefix + b"=" + value
                    break
        return self.buckets.take(key, self.rate, self.burst, now)


class RouteRuntime:
    """What a matched route tells the proxy."""

    __slots__ = ("limiter", "name", "preserve_host", "stats", "strip", "upstream")

    def __init__(
        self,
        name: str,
        upstream: UpstreamRuntime,
        strip: bytes | None,
        preserve_host: bool,
        stats: RouteStats | None = None,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.name = name
        self.limiter = limiter
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
    tunnel_idle_timeout: float


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
            tunnel_idle_timeout=lim.tunnel_idle_timeout,
        )

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        rng: random.Random | None = None,
        *,
        previous: Runtime | None = None,
        registry: Registry | None = None,
        buckets: SharedBuckets | None = None,
        workers: int = 1,
        on_outlier: OnChange | None = None,
        now: float = 0.0,
    ) -> Runtime:
        """Compile ``config``; with ``previous``, carry over its targets and pools where the
        upstream name and target address stay (see the module docstring).

        ``buckets`` holds rate-limit state (required when a route sets ``rate_limit``);
        ``workers`` splits circuit-breaker limits; ``on_outlier`` hears ejections."""
        before = previous.upstreams if previous is not None else {}
        upstreams = {
            name: UpstreamRuntime(
                name, u, rng, before.get(name), registry, workers=workers, on_outlier=on_outlier, now=now
            )
            for name, u in config.upstreams.items()
        }
        rules: list[RouteRule[RouteRuntime]] = []
        for rule, route in zip(route_rules(config), config.routes, strict=True):
            strip = None
            if route.strip_prefix and route.match.path_prefix:
                strip = route.match.path_prefix.encode()
            stats = registry.route(rule.name) if registry is not None else None
            limiter = None
            if route.rate_limit is not None:
                if buckets is None:
                    raise ValueError(f"route '{rule.name}' has a rate_limit but no bucket table was given")
                limiter = RateLimiter(rule.name, route.rate_limit, buckets)
            rt = RouteRuntime(
                rule.name, upstreams[route.upstream], strip, route.preserve_host, stats, limiter=limiter
            )
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
            if u.retries.per_try_timeout is not None:
                values.append(u.retries.per_try_timeout)
        return min(values)

    def config_route_names(self) -> list[str]:
        return [r.name for r in self.config.routes]

    def pools(self) -> list[TargetPool]:
        return [pool for u in self.upstreams.values() for pool in u.pools.values()]

    def close(self) -> None:
        for u in self.upstreams.values():
            u.close()
