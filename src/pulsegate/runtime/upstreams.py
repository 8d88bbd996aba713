"""The supervisor's side of upstream health: it runs the active checks once for the whole gateway,
forwards every verdict to the workers, owns the shared rate-limit table, and merges what each
worker reports about its targets (passive ejections, in-flight counts, latency) into the view
``GET /api/upstreams`` serves.

One checker per gateway, not per worker: N workers would multiply the probe traffic by N and could
disagree about a target's health.

Example::

    hub = UpstreamHub(send_all=lambda msg: ..., aggregator=supervisor.aggregator)
    hub.start(config)          # in the supervisor's loop
    hub.view(config)           # {"upstreams": [...]}
"""

from __future__ import annotations

from collections.abc import Callable

from pulsegate.config import GatewayConfig
from pulsegate.health.checker import CheckResult, HealthChecker
from pulsegate.health.monitor import TargetState, check_specs
from pulsegate.health.ratelimit import SharedBuckets
from pulsegate.logs import get_logger
from pulsegate.metrics.aggregator import Aggregator
from pulsegate.runtime.messages import Message, TargetHealth

log = get_logger("pulsegate.health")


class UpstreamHub:
    """Active checks, verdict fan-out, the rate-limit table and the merged per-target view."""

    def __init__(self, send_all: Callable[[Message], None], aggregator: Aggregator) -> None:
        self._send_all = send_all
        self._aggregator = aggregator
        self.checker = HealthChecker(self._on_result)
        self.buckets: SharedBuckets | None = None
        #: The latest target states each worker reported, by worker slot.
        self._reports: dict[int, list[TargetState]] = {}

    def start(self, config: GatewayConfig) -> None:
        # Always created, so a reload that adds the first rate_limit finds the table in place
        # (tmpfs pages are only allocated once touched). Unlinked at once: workers inherit the
        # descriptor, so no file outlives the gateway, even after a SIGKILL.
        self.buckets = SharedBuckets.create()
        self.buckets.unlink()
        self.checker.configure(check_specs(config))
        self.checker.start()

    def configure(self, config: GatewayConfig) -> None:
        self.checker.configure(check_specs(config))

    async def stop(self) -> None:
        await self.checker.stop()
        if self.buckets is not None:
            self.buckets.close()

    def _on_result(self, result: CheckResult) -> None:
        if result.changed:
            state = "healthy" if result.healthy else "unhealthy"
            self._aggregator.count("health_transitions", result.upstream, result.address, state)
            log.info(
                "upstream.check_healthy" if result.healthy else "upstream.check_unhealthy",
                upstream=result.upstream,
                target=result.address,
                status=result.status,
                reason=result.reason,
            )
        # Every result goes out, not only changes: a passing check also readmits a target a
        # worker ejected on its own.
        self._send_all(
            TargetHealth(
                upstream=result.upstream, address=result.address, healthy=result.healthy, ok=result.ok
            )
        )

    def verdicts(self) -> list[TargetHealth]:
        """The current verdicts, for a worker that just started (it assumes every target healthy)."""
        return [
            TargetHealth(upstream=u, address=a, healthy=state.healthy, ok=last.ok if last else True)
            for (u, a), (state, last) in self.checker.states().items()
            if not state.healthy
        ]

    def report(self, worker: int, states: list[TargetState]) -> None:
        self._reports[worker] = states

    def forget(self, worker: int) -> None:
        self._reports.pop(worker, None)

    def view(self, config: GatewayConfig) -> dict[str, object]:
        """Per upstream and target: active health, ejections by worker, load, last check."""
        checks = self.checker.states()
        merged: dict[tuple[str, str], list[tuple[int, TargetState]]] = {}
        for worker, states in sorted(self._reports.items()):
            for st in states:
                merged.setdefault((st.upstream, st.address), []).append((worker, st))
        upstreams: list[dict[str, object]] = []
        for name, up in config.upstreams.items():
            targets: list[dict[str, object]] = []
            for tc in up.targets:
                key = (name, tc.address)
                seen = merged.get(key, [])
                check = checks.get(key)
                last = check[1] if check else None
                ejected = [
                    {
                        "worker": w,
                        "until": st.ejected_until,
                        "reason": st.eject_reason,
                        "ejections": st.ejections,
                    }
                    for w, st in seen
                    if st.ejected_until
                ]
                ewmas = [st.ewma_ms for _, st in seen if st.ewma_ms]
                healthy = check[0].healthy if check else True
                until = [st.ejected_until for _, st in seen if st.ejected_until]
                targets.append(
                    {
                        "address": tc.address,
                        "weight": tc.weight,
                        "healthy": healthy,
                        "available": all(st.available for _, st in seen) if seen else healthy,
                        "ejected": ejected,
                        "ejected_until": max(until) if until else None,
                        "reason": _reason(healthy, last, ejected),
                        "last_check": None
                        if last is None
                        else {
                            "at": last.at,
                            "ok": last.ok,
                            "status": last.status or None,
                            "latency_ms": round(last.latency * 1000, 3),
                            "reason": last.reason,
                        },
                        "latency_ewma_ms": round(sum(ewmas) / len(ewmas), 3) if ewmas else None,
                        "in_flight": sum(st.in_flight for _, st in seen),
                        "consecutive_errors": max((st.consecutive_errors for _, st in seen), default=0),
                    }
                )
            upstreams.append(
                {
                    "name": name,
                    "balance": up.balance,
                    "health_checks": up.health is not None,
                    "fail_open": up.fail_open,
                    "targets": targets,
                }
            )
        return {"upstreams": upstreams}


def _reason(healthy: bool, last: CheckResult | None, ejected: list[dict[str, object]]) -> str:
    if not healthy:
        return (
            f"health check failing: {last.reason}"
            if last is not None and last.reason
            else "health check failing"
        )
    if ejected:
        return f"ejected: {ejected[0]['reason']}"
    return ""
