"""The admin API (FastAPI): health, effective config, workers, reload, metric history and
Prometheus ``/metrics``. It runs inside the supervisor and reads the supervisor's state.

With ``admin.token`` set, every endpoint except ``GET /api/health`` requires
``Authorization: Bearer <token>`` (health stays open for load-balancer and orchestrator probes,
as Envoy's and Traefik's ping endpoints do). The OpenAPI document is at ``/openapi.json``.

Example::

    app = create_app(supervisor)   # served by pulsegate.admin.server.AdminServer
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from pulsegate import __version__
from pulsegate.config import redacted
from pulsegate.metrics.aggregator import Point
from pulsegate.metrics.exposition import build_registry, render, supervisor_metrics
from pulsegate.metrics.histogram import merge_into, percentiles
from pulsegate.metrics.history import HistoryError

if TYPE_CHECKING:
    from pulsegate.runtime.supervisor import Supervisor

QUANTILES = (50.0, 90.0, 99.0, 99.9)


def create_app(sup: Supervisor) -> FastAPI:
    """The admin application over a running supervisor."""
    registry = build_registry(sup.aggregator, extra=lambda: _extra_metrics(sup))

    # Every handler is `async def`: FastAPI runs plain `def` handlers in a thread pool, and the
    # supervisor's state (aggregator, history's SQLite connection) belongs to the event loop thread.
    async def authorize(request: Request) -> None:
        token = sup.config.admin.token
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(
        title="pulsegate admin API",
        version=__version__,
        docs_url=None,  # Swagger UI loads its assets from a CDN; /openapi.json is what tools need
        redoc_url=None,
    )
    guarded = [Depends(authorize)]

    @app.get("/api/health", summary="Liveness and readiness of the gateway")
    async def health() -> JSONResponse:
        body = sup.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/api/config", dependencies=guarded, summary="The effective config (secrets redacted)")
    async def config() -> dict[str, Any]:
        return {"path": sup.config_path, "config": redacted(sup.config)}

    @app.get("/api/upstreams", dependencies=guarded, summary="Targets: health, ejections, load")
    async def upstreams() -> dict[str, object]:
        """Per upstream target: active health (and the last check), passive ejections by worker
        (until when, why), latency EWMA and requests in flight, summed over workers."""
        return sup.upstreams.view(sup.config)

    @app.get("/api/workers", dependencies=guarded, summary="Worker processes and their vitals")
    async def workers() -> dict[str, Any]:
        return {"workers": sup.workers_info()}

    @app.post("/api/config/reload", dependencies=guarded, summary="Re-read, validate and apply the config")
    async def reload() -> JSONResponse:
        outcome = await sup.reload(source="api")
        body = {
            "ok": outcome.ok,
            "errors": outcome.errors,
            "restart_required": outcome.restart_required,
            "workers": outcome.workers,
        }
        # 422: the file is invalid and nothing changed; 500: valid, but a worker failed to apply it.
        status = 200 if outcome.ok else (422 if outcome.workers == 0 else 500)
        return JSONResponse(body, status_code=status)

    @app.get("/api/metrics/history", dependencies=guarded, summary="Totals and latency over time")
    async def history(
        seconds: float = Query(60.0, gt=0, le=366 * 86400, description="how far back"),
        resolution: float | None = Query(
            None, ge=1, description="seconds per point: omit for the 1 s points kept in memory"
        ),
    ) -> dict[str, Any]:
        hist = sup.history
        if hist is None:
            return {"resolution": resolution or 1.0, "points": []}
        try:
            if resolution is None:
                points = hist.recent(min(seconds, sup.config.metrics.history.memory_window))
            else:
                points = hist.query(time.time() - seconds, resolution=resolution)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except HistoryError as exc:
            raise HTTPException(503, str(exc)) from None
        return {"resolution": resolution or 1.0, "points": [_point_summary(p) for p in points]}

    @app.get("/metrics", dependencies=guarded, summary="Prometheus text exposition")
    async def metrics() -> Response:
        body, content_type = render(registry)
        return Response(body, media_type=content_type)

    return app


def _point_summary(point: Point) -> dict[str, Any]:
    total: dict[int, int] = {}
    status = [0] * 6
    for r in point.routes.values():
        merge_into(total, r.total)
        status = [a + b for a, b in zip(status, r.status, strict=True)]
    p50, p90, p99, p999 = percentiles(total, QUANTILES)
    requests = sum(r.requests for r in point.routes.values())
    return {
        "time": point.time,
        "requests": requests,
        "requests_per_s": requests / point.interval if point.interval else 0.0,
        "status": {f"{i}xx": status[i] for i in range(1, 6)},
        "latency_ms": {"p50": p50 / 1000, "p90": p90 / 1000, "p99": p99 / 1000, "p999": p999 / 1000},
    }


def _extra_metrics(sup: Supervisor) -> list[Any]:
    from prometheus_client.core import CounterMetricFamily

    alive = sum(1 for s in sup.slots if s.process is not None)
    metrics = supervisor_metrics(alive, {slot.id: slot.restarts for slot in sup.slots})
    reloads = CounterMetricFamily("pulsegate_config_reloads", "Config reload attempts", labels=["result"])
    reloads.add_metric(["ok"], sup.reloads - sup.reload_failures)
    reloads.add_metric(["failed"], sup.reload_failures)
    return [*metrics, reloads]
