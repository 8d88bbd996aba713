"""The admin API of a real ``pulsegate run``: health, workers, the redacted config, bearer tokens,
the OpenAPI document, Prometheus ``/metrics``, reloads (API and SIGHUP) and the metric history.

Worker metrics reach the supervisor as a snapshot pushed once a second, so assertions on counters
poll the admin API with a bounded deadline (:func:`poll`); everything else waits on log events.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import GatewayProcess, gateway, get, origin_thread, poll, write_config

Samples = dict[str, list[tuple[dict[str, str], float]]]

TOKEN = "s3cret-admin-token-7f3a"
GUARDED = [
    ("GET", "/api/workers"),
    ("GET", "/api/config"),
    ("GET", "/api/metrics/history?seconds=10"),
    ("GET", "/metrics"),
    ("POST", "/api/config/reload"),
]
WORKER_FIELDS = {
    "id",
    "pid",
    "alive",
    "ready",
    "uptime_s",
    "restarts",
    "rss_bytes",
    "cpu_percent",
    "loop_lag_ms",
    "requests_per_s",
    "requests_total",
    "connections",
}


def hello(req: Request) -> Reply:
    return Reply(200, body=b"a " + req.path)


def other(req: Request) -> Reply:
    return Reply(200, body=b"b " + req.path)


def _config(origin: str, workers: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "workers": workers,
        "upstreams": {"a": {"targets": [origin]}},
        "routes": [{"name": "app", "match": {"path_prefix": "/"}, "upstream": "a"}],
        **extra,
    }


def _two_routes(origin_a: str, origin_b: str) -> dict[str, Any]:
    return {
        "workers": 2,
        "upstreams": {"a": {"targets": [origin_a]}, "b": {"targets": [origin_b]}},
        "routes": [
            {"name": "second", "match": {"path_prefix": "/b/"}, "upstream": "b"},
            {"name": "app", "match": {"path_prefix": "/"}, "upstream": "a"},
        ],
    }


def _invalid(origin_a: str, origin_b: str) -> dict[str, Any]:
    config = _two_routes(origin_a, origin_b)
    config["routes"] = [*config["routes"], {"name": "broken", "upstream": "nowhere"}]
    config["bogus_key"] = 1
    return config


def check_lines(path: Path) -> list[str]:
    """What ``pulsegate check -c path`` prints on stderr for an invalid file, one problem a line."""
    done = subprocess.run(
        [sys.executable, "-m", "pulsegate", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    return done.stderr.splitlines()


def admin_raw(
    gw: GatewayProcess, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=15)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def metric_samples(body: bytes) -> Samples:
    """Sample name -> [(labels, value)] of a text exposition (parsed by prometheus_client)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def values_of(samples: Samples, name: str, **labels: str) -> list[float]:
    return [v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]


def value_of(samples: Samples, name: str, **labels: str) -> float:
    matches = values_of(samples, name, **labels)
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]


def wait_events(gw: GatewayProcess, name: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    """The first ``count`` events called ``name`` (from index ``start``), waiting on the log reader."""
    found: list[dict[str, Any]] = []
    for _ in range(count):
        event = gw.wait_event(lambda e: e["event"] == name and not any(e is f for f in found), start=start)
        found.append(event)
    return found


# -- health and workers ----------------------------------------------------------------------------


def test_health_and_worker_vitals(tmp_path: Path) -> None:
    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin)) as gw:
        status, headers, body = gw.admin("GET", "/api/health")
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        health = json.loads(body)
        assert health["status"] == "ok"
        assert (health["workers"], health["workers_ready"], health["stopping"]) == (2, 2, False)
        assert health["uptime_s"] > 0

        for i in range(7):
            assert get(gw.port, f"/w{i}") == (200, f"a /w{i}".encode())
        # rss_bytes and the request counts come with the workers' once-a-second snapshots.
        workers = poll(
            gw.workers,
            lambda ws: all(w["rss_bytes"] > 0 for w in ws) and sum(w["requests_total"] for w in ws) == 7,
            "worker snapshots",
        )
        started = {e["worker_id"]: e["pid"] for e in wait_events(gw, "worker.started", 2)}
        assert [w["id"] for w in workers] == [1, 2]
        for w in workers:
            assert set(w) == WORKER_FIELDS, w
            assert w["pid"] == started[w["id"]]
            assert w["alive"] is True and w["ready"] is True
            assert w["uptime_s"] > 0 and w["restarts"] == 0
            assert isinstance(w["rss_bytes"], int) and w["rss_bytes"] > 1_000_000
            assert w["cpu_percent"] >= 0 and w["loop_lag_ms"] >= 0 and w["requests_per_s"] >= 0
            assert isinstance(w["requests_total"], int) and w["requests_total"] >= 0
            assert isinstance(w["connections"], int) and w["connections"] >= 0
        assert len({w["pid"] for w in workers}) == 2


def test_config_is_served_with_the_token_redacted(tmp_path: Path) -> None:
    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin, admin={"token": TOKEN})) as gw:
        status, _, body = gw.admin("GET", "/api/config", token=TOKEN)
        assert status == 200, body
        assert TOKEN.encode() not in body
        doc = json.loads(body)
        assert doc["path"] == str(gw.config_path)
        config = doc["config"]
        assert config["admin"]["token"] == "***"
        assert config["workers"] == 2
        assert config["upstreams"]["a"]["targets"] == [{"address": origin, "weight": 1}]
        assert [r["name"] for r in config["routes"]] == ["app"]
        assert config["supervisor"]["ping_interval"] == 0.2  # effective values: units resolved
        assert config["logging"]["access_log"]["path"] == "off"


def test_config_without_a_token_shows_null(tmp_path: Path) -> None:
    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin, workers=1)) as gw:
        assert gw.admin_json("GET", "/api/config")["config"]["admin"]["token"] is None


def test_bearer_token_guards_everything_but_health(tmp_path: Path) -> None:
    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin, admin={"token": TOKEN})) as gw:
        for method, path in GUARDED:
            for token in (None, "wrong", TOKEN[:-1], TOKEN + "x"):
                status, headers, body = gw.admin(method, path, token=token)
                assert status == 401, (method, path, token, status, body)
                assert headers.get("www-authenticate") == "Bearer", (method, path, headers)
                assert TOKEN.encode() not in body
            for header in (f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"):
                status, headers = admin_raw(gw, method, path, {"Authorization": header})
                assert status == 401 and headers.get("www-authenticate") == "Bearer", (path, header)
            status, _, body = gw.admin(method, path, token=TOKEN)
            assert status == 200, (method, path, status, body)
            # The scheme is case-insensitive (RFC 9110 11.1).
            assert admin_raw(gw, method, path, {"Authorization": f"bearer {TOKEN}"})[0] == 200
        status, _, body = gw.admin("GET", "/api/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert gw.admin("GET", "/api/health", token="wrong")[0] == 200
        # The reloads above (one per right token) read the unchanged file: all succeeded.
        reloaded = wait_events(gw, "config.reloaded", 2)
        assert all(e["source"] == "api" for e in reloaded)
        assert not [e for e in gw.events if e["event"] == "config.reload_failed"]


def test_openapi_document(tmp_path: Path) -> None:
    from fastapi.openapi.models import OpenAPI

    from pulsegate import __version__

    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin, workers=1)) as gw:
        status, headers, body = gw.admin("GET", "/openapi.json")
    assert status == 200
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    OpenAPI.model_validate(doc)  # the OpenAPI 3.1 object model: raises on a malformed document
    assert doc["openapi"].startswith("3.")
    assert doc["info"] == {"title": "pulsegate admin API", "version": __version__}
    expected = {
        "/api/health": "get",
        "/api/config": "get",
        "/api/workers": "get",
        "/api/config/reload": "post",
        "/api/metrics/history": "get",
        "/api/upstreams": "get",
        "/metrics": "get",
    }
    assert set(doc["paths"]) == set(expected)
    for path, method in expected.items():
        operation = doc["paths"][path][method]
        assert operation["summary"] and "200" in operation["responses"], (path, operation)
    params = {p["name"] for p in doc["paths"]["/api/metrics/history"]["get"]["parameters"]}
    assert params == {"seconds", "resolution"}


# -- Prometheus -------------------------------------------------------------------------------------


def test_metrics_exposition(tmp_path: Path) -> None:
    routed, unrouted = 12, 5
    marker = "zq7mark"  # every request path carries it: no exposition label may
    with origin_thread(hello) as origin:
        config = _config(origin, routes=[{"name": "app", "match": {"path_prefix": "/app/"}, "upstream": "a"}])
        with gateway(tmp_path, config) as gw:
            for i in range(routed):
                assert get(gw.port, f"/app/{marker}-{i}?q={marker}")[0] == 200
            for i in range(unrouted):
                assert get(gw.port, f"/{marker}-miss-{i}")[0] == 404

            def scrape() -> tuple[str, bytes]:
                status, headers, body = gw.admin("GET", "/metrics")
                assert status == 200, body
                return headers["content-type"], body

            def complete(result: tuple[str, bytes]) -> bool:
                s = metric_samples(result[1])
                rss = {lab["worker"]: v for lab, v in s.get("pulsegate_worker_resident_memory_bytes", [])}
                return (
                    values_of(s, "pulsegate_requests_total", route="app") == [routed]
                    and values_of(s, "pulsegate_requests_total", route="(none)") == [unrouted]
                    and set(rss) == {"1", "2"}
                    and all(v > 0 for v in rss.values())
                )

            content_type, body = poll(scrape, complete, "metrics snapshot with every request")

    assert content_type.startswith("text/plain")
    s = metric_samples(body)
    # Responses by code class.
    for code_class in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        app = value_of(s, "pulsegate_responses_total", route="app", code_class=code_class)
        none = value_of(s, "pulsegate_responses_total", route="(none)", code_class=code_class)
        assert app == (routed if code_class == "2xx" else 0), (code_class, app)
        assert none == (unrouted if code_class == "4xx" else 0), (code_class, none)
    assert value_of(s, "pulsegate_response_bytes_total", route="app") >= routed * len(b"a /app/")
    assert value_of(s, "pulsegate_requests_in_flight", route="app") == 0
    # Histograms: cumulative buckets never decrease, +Inf is the count.
    for family in ("request_duration", "upstream_duration", "gateway_overhead"):
        name = f"pulsegate_{family}_seconds"
        for route in ("app", "(none)"):
            buckets = sorted((float(lab["le"]), v) for lab, v in s[f"{name}_bucket"] if lab["route"] == route)
            assert len(buckets) == 17 and buckets[-1][0] == float("inf")
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), (name, route, buckets)
            count = value_of(s, f"{name}_count", route=route)
            assert counts[-1] == count
            assert value_of(s, f"{name}_sum", route=route) >= 0
            # Every request is timed (overhead: all of it when no upstream answered); only the
            # ones an upstream answered have an upstream duration.
            sent = routed if route == "app" else unrouted
            assert count == (0 if (route, family) == ("(none)", "upstream_duration") else sent)
    assert value_of(s, "pulsegate_upstream_requests_total", upstream="a", target=origin) == routed
    assert value_of(
        s, "pulsegate_upstream_responses_total", upstream="a", target=origin, code_class="2xx"
    ) == (routed)
    # Worker metrics: both slots, from their own snapshots.
    for name in (
        "pulsegate_worker_requests_total",
        "pulsegate_worker_accepted_connections_total",
        "pulsegate_worker_connections",
        "pulsegate_worker_resident_memory_bytes",
        "pulsegate_worker_cpu_percent",
        "pulsegate_worker_event_loop_lag_max_seconds",
        "pulsegate_worker_gc_pause_seconds_total",
        "pulsegate_worker_restarts_total",
    ):
        assert sorted(lab["worker"] for lab, _ in s[name]) == ["1", "2"], (name, s.get(name))
    assert sum(v for _, v in s["pulsegate_worker_requests_total"]) == routed + unrouted
    assert sum(v for _, v in s["pulsegate_worker_accepted_connections_total"]) == routed + unrouted
    assert all(v == 0 for _, v in s["pulsegate_worker_restarts_total"])
    assert value_of(s, "pulsegate_workers") == 2
    assert value_of(s, "pulsegate_config_reloads_total", result="ok") == 0
    assert value_of(s, "pulsegate_config_reloads_total", result="failed") == 0
    # Cardinality comes from the config: no request path (or query) ever becomes a label value.
    assert marker.encode() not in body
    routes = {lab["route"] for samples in s.values() for lab, _ in samples if "route" in lab}
    assert routes == {"app", "(none)"}
    label_values = {v for samples in s.values() for lab, _ in samples for v in lab.values()}
    assert not [v for v in label_values if "/" in v], label_values


# -- reloads ----------------------------------------------------------------------------------------


def _write_invalid(gw: GatewayProcess, invalid: dict[str, Any]) -> list[str]:
    """Write ``invalid`` over the gateway's config file; returns what ``pulsegate check`` says."""
    write_config(gw.config_path, invalid)
    expected = check_lines(gw.config_path)
    assert any("bogus_key" in line for line in expected) and any("nowhere" in line for line in expected)
    return expected


def test_reload_via_api(tmp_path: Path) -> None:
    with (
        origin_thread(hello) as origin_a,
        origin_thread(other) as origin_b,
        gateway(tmp_path, _config(origin_a)) as gw,
    ):
        assert get(gw.port, "/b/1") == (200, b"a /b/1")
        mark = gw.mark()
        write_config(gw.config_path, _two_routes(origin_a, origin_b))
        status, _, body = gw.admin("POST", "/api/config/reload")
        assert status == 200, body
        assert json.loads(body) == {"ok": True, "errors": [], "restart_required": [], "workers": 2}
        event = gw.wait_event(lambda e: e["event"] == "config.reloaded", start=mark)
        assert (event["source"], event["workers"], event["restart_required"]) == ("api", 2, [])
        # Both workers confirmed before the answer: every new connection, whichever worker takes it,
        # routes with the new config.
        for i in range(6):
            assert get(gw.port, f"/b/{i}") == (200, f"b /b/{i}".encode())
            assert get(gw.port, f"/x/{i}") == (200, f"a /x/{i}".encode())
        assert [r["name"] for r in gw.admin_json("GET", "/api/config")["config"]["routes"]] == [
            "second",
            "app",
        ]

        mark = gw.mark()
        expected = _write_invalid(gw, _invalid(origin_a, origin_b))
        status, _, body = gw.admin("POST", "/api/config/reload")
        assert status == 422, body
        outcome = json.loads(body)
        assert outcome["ok"] is False and outcome["workers"] == 0
        assert outcome["errors"] == expected
        failed = gw.wait_event(lambda e: e["event"] == "config.reload_failed", start=mark)
        assert failed["level"] == "error" and failed["source"] == "api"
        assert failed["errors"] == expected
        # Nothing changed: the previous routes keep serving, the effective config is the previous one.
        for i in range(4):
            assert get(gw.port, f"/b/after-{i}") == (200, f"b /b/after-{i}".encode())
            assert get(gw.port, f"/x/after-{i}") == (200, f"a /x/after-{i}".encode())
        config = gw.admin_json("GET", "/api/config")["config"]
        assert [r["name"] for r in config["routes"]] == ["second", "app"]
        assert "bogus_key" not in config
        _, _, metrics = gw.admin("GET", "/metrics")
        s = metric_samples(metrics)
        assert value_of(s, "pulsegate_config_reloads_total", result="ok") == 1
        assert value_of(s, "pulsegate_config_reloads_total", result="failed") == 1


def test_reload_via_sighup(tmp_path: Path) -> None:
    with (
        origin_thread(hello) as origin_a,
        origin_thread(other) as origin_b,
        gateway(tmp_path, _config(origin_a)) as gw,
    ):
        assert get(gw.port, "/b/1") == (200, b"a /b/1")
        mark = gw.mark()
        write_config(gw.config_path, _two_routes(origin_a, origin_b))
        os.kill(gw.proc.pid, signal.SIGHUP)
        event = gw.wait_event(lambda e: e["event"] in ("config.reloaded", "config.reload_failed"), start=mark)
        assert event["event"] == "config.reloaded", event
        assert (event["source"], event["workers"], event["restart_required"]) == ("SIGHUP", 2, [])
        for i in range(6):
            assert get(gw.port, f"/b/{i}") == (200, f"b /b/{i}".encode())
            assert get(gw.port, f"/x/{i}") == (200, f"a /x/{i}".encode())

        mark = gw.mark()
        expected = _write_invalid(gw, _invalid(origin_a, origin_b))
        os.kill(gw.proc.pid, signal.SIGHUP)
        event = gw.wait_event(lambda e: e["event"] in ("config.reloaded", "config.reload_failed"), start=mark)
        assert event["event"] == "config.reload_failed", event
        assert event["source"] == "SIGHUP" and event["errors"] == expected
        for i in range(4):
            assert get(gw.port, f"/b/after-{i}") == (200, f"b /b/after-{i}".encode())
            assert get(gw.port, f"/x/after-{i}") == (200, f"a /x/after-{i}".encode())
        assert gw.proc.poll() is None
        assert not [e for e in gw.events if e["event"] == "worker.died"]


def test_reload_of_an_unreadable_file_reports_what_check_prints(tmp_path: Path) -> None:
    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin, workers=1)) as gw:
        moved = gw.config_path.with_suffix(".moved")
        gw.config_path.rename(moved)
        try:
            expected = check_lines(gw.config_path)
            status, _, body = gw.admin("POST", "/api/config/reload")
            assert status == 422, body
            assert json.loads(body)["errors"] == expected
        finally:
            moved.rename(gw.config_path)


def test_token_rotation_by_reload_is_live_and_not_reported_as_needing_a_restart(tmp_path: Path) -> None:
    with origin_thread(hello) as origin:
        config = _config(origin, workers=1, admin={"token": TOKEN})
        with gateway(tmp_path, config) as gw:
            write_config(gw.config_path, {**config, "admin": {"token": "rotated-token"}})
            status, _, body = gw.admin("POST", "/api/config/reload", token=TOKEN)
            assert status == 200, body
            outcome = json.loads(body)
            assert gw.admin("GET", "/api/workers", token="rotated-token")[0] == 200
            assert gw.admin("GET", "/api/workers", token=TOKEN)[0] == 401
            assert outcome["restart_required"] == [], outcome


# -- history ----------------------------------------------------------------------------------------


def test_metric_history_endpoint(tmp_path: Path) -> None:
    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin)) as gw:
        for i in range(9):
            assert get(gw.port, f"/h{i}")[0] == 200

        def points() -> dict[str, Any]:
            doc: dict[str, Any] = gw.admin_json("GET", "/api/metrics/history?seconds=30")
            return doc

        # The supervisor closes a 1 s point each second from the snapshots that arrived.
        doc = poll(points, lambda d: sum(p["requests"] for p in d["points"]) == 9, "history points")
        assert doc["resolution"] == 1.0
        pts = doc["points"]
        times = [p["time"] for p in pts]
        # Whole seconds, in order. Not checked strictly increasing: Supervisor._points_forever labels
        # a point int(time.time()) - 1 after a sleep that can end microseconds before the second
        # boundary, so now and then two points carry the same second and the next one is missing.
        assert times == sorted(times) and all(t == int(t) for t in times)
        assert time.time() - 32 <= times[0] and times[-1] <= time.time()
        for p in pts:
            assert set(p) == {"time", "requests", "requests_per_s", "status", "latency_ms"}
            assert set(p["status"]) == {"1xx", "2xx", "3xx", "4xx", "5xx"}
            assert set(p["latency_ms"]) == {"p50", "p90", "p99", "p999"}
            assert p["requests_per_s"] == p["requests"]  # 1 s points
            assert sum(p["status"].values()) == p["requests"]
        busy = [p for p in pts if p["requests"]]
        assert sum(p["status"]["2xx"] for p in busy) == 9
        for p in busy:
            lat = p["latency_ms"]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] < 10_000

        # Rollups: the stored resolution (default 10 s) and its multiples; anything else is refused.
        rolled = gw.admin_json("GET", "/api/metrics/history?seconds=60&resolution=10")
        assert rolled["resolution"] == 10
        assert sum(p["requests"] for p in rolled["points"]) == 9
        for query in ("seconds=0", "seconds=-1", "resolution=0.5", "seconds=60&resolution=3"):
            status, _, body = gw.admin("GET", f"/api/metrics/history?{query}")
            assert status == 422, (query, status, body)
