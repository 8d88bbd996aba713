"""Glue between health verdicts and the data path: check specs from a config, applying a verdict
to a runtime's targets, logging and counting state changes, and the per-target view the admin API
shows.

Active checks run once per gateway (in the supervisor, or in an in-process server) and their
verdicts reach every worker; passive ejection is decided by each worker from its own traffic.

Example:
    >>> from pulsegate.config import load_config_text
    >>> cfg = load_config_text("upstreams: {a: {targets: ['127.0.0.1:9001'], health: {path: /up}}}")
    >>> [(s.upstream, s.address, s.path, s.interval) for s in check_specs(cfg)]
    [('a', '127.0.0.1:9001', '/up', 5.0)]
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from pulsegate.balancing.target import Target
from pulsegate.config import GatewayConfig
from pulsegate.health.checker import CheckSpec
from pulsegate.health.outlier import OnChange
from pulsegate.logs import get_logger
from pulsegate.metrics.registry import Registry

if TYPE_CHECKING:
    from pulsegate.proxy.runtime import Runtime

log = get_logger("pulsegate.health")


class TargetState(msgspec.Struct):
    """One target as one worker sees it (sent with each metrics push, shown by ``/api/upstreams``)."""

    upstream: str
    address: str
    healthy: bool
    available: bool
    #: Wall-clock end of the passive ejection (0.0 when not ejected).
    ejected_until: float = 0.0
    eject_reason: str = ""
    ejections: int = 0
    in_flight: int = 0
    ewma_ms: float = 0.0
    consecutive_errors: int = 0


def check_specs(config: GatewayConfig) -> list[CheckSpec]:
    """One :class:`CheckSpec` per target of every upstream with a ``health`` section."""
    return [
        CheckSpec(
            upstream=name,
            address=t.address,
            path=h.path,
            interval=h.interval,
            timeout=h.timeout,
            expect=h.expect_status,
            rise=h.rise,
            fall=h.fall,
            jitter=h.jitter,
            host=h.host,
        )
        for name, up in config.upstreams.items()
        if (h := up.health) is not None
        for t in up.targets
    ]


def apply_verdict(
    runtime: Runtime, upstream: str, address: str, *, healthy: bool, ok: bool, now: float
) -> None:
    """Apply an active check's result to the target in ``runtime``: the healthy flag, and a passing
    check readmits a passively ejected target early (as Envoy does by default)."""
    up = runtime.upstreams.get(upstream)
    if up is None:
        return
    target = next((t for t in up.targets if t.address == address), None)
    if target is None:
        return
    if target.healthy != healthy:
        target.healthy = healthy
        target.refresh()
        log.info(
            "upstream.target_healthy" if healthy else "upstream.target_unhealthy",
            upstream=upstream,
            target=address,
        )
    if ok and target.ejected_until and up.outlier is not None:
        up.outlier.readmit(target, now, "health check passed")


def outlier_logger(registry: Registry) -> OnChange:
    """An ``on_change`` hook for :class:`~pulsegate.health.outlier.OutlierDetector`: log and count."""

    def on_change(kind: str, upstream: str, target: Target, reason: str) -> None:
        if kind == "ejected":
            registry.count("ejections", upstream, target.address)
            log.warning(
                "upstream.target_ejected",
                upstream=upstream,
                target=target.address,
                reason=reason,
                ejections=target.ejections,
            )
        else:
            log.info("upstream.target_readmitted", upstream=upstream, target=target.address, reason=reason)

    return on_change


def target_states(runtime: Runtime, loop_now: float) -> list[TargetState]:
    """Every target of ``runtime`` as a :class:`TargetState` (ejection times as wall-clock)."""
    wall = time.time()
    return [
        TargetState(
            upstream=up.name,
            address=t.address,
            healthy=t.healthy,
            available=t.available,
            ejected_until=wall + (t.ejected_until - loop_now) if t.ejected_until else 0.0,
            eject_reason=t.eject_reason,
            ejections=t.ejections,
            in_flight=t.inflight,
            ewma_ms=round(t.ewma_us / 1000, 3),
            consecutive_errors=t.errors,
        )
        for up in runtime.upstreams.values()
        for t in up.targets
    ]
