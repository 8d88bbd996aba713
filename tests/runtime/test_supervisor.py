"""The supervisor and its workers as operators run them: ``pulsegate run`` in a subprocess, real
worker processes, real signals, the admin API over HTTP."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import gateway, get, origin_thread


def hello(req: Request) -> Reply:
    return Reply(200, body=b"hello " + req.path)


def _config(origin: str, workers: int = 2, **extra: object) -> dict[str, object]:
    return {
        "workers": workers,
        "upstreams": {"app": {"targets": [origin]}},
        "routes": [{"name": "app", "match": {"path_prefix": "/"}, "upstream": "app"}],
        **extra,
    }


@pytest.mark.parametrize("mode", ["reuseport", "inherit"])
def test_workers_serve_and_report(tmp_path: Path, mode: str) -> None:
    with (
        origin_thread(hello) as origin,
        gateway(tmp_path, _config(origin, supervisor={"listen_mode": mode})) as gw,
    ):
        for i in range(20):
            assert get(gw.port, f"/r{i}") == (200, f"hello /r{i}".encode())
        workers = gw.workers()
        assert [w["id"] for w in workers] == [1, 2]
        assert all(w["alive"] and w["ready"] and w["pid"] for w in workers)
        assert len({w["pid"] for w in workers}) == 2
        assert os.getpid() not in {w["pid"] for w in workers}
        status, _, body = gw.admin("GET", "/api/health")
        assert status == 200 and b'"ok"' in body
        # Snapshots arrive each second: wait for the ones that carry our 20 requests.
        deadline = time.monotonic() + 10
        while sum(w["requests_total"] for w in gw.workers()) < 20:
            assert time.monotonic() < deadline, gw.workers()
            time.sleep(0.1)  # the admin API is polled: metrics are pushed once a second


def test_dead_worker_is_replaced_within_a_second(tmp_path: Path) -> None:
    with origin_thread(hello) as origin, gateway(tmp_path, _config(origin)) as gw:
        victim = gw.workers()[0]
        mark = gw.mark()
        os.kill(victim["pid"], signal.SIGKILL)
        died = gw.wait_event(lambda e: e["event"] == "worker.died", start=mark)
        started = gw.wait_event(lambda e: e["event"] == "worker.started", start=mark)
        ready = gw.wait_event(
            lambda e: e["event"] == "worker.ready" and e["worker"] == "supervisor", start=mark
        )
        assert died["reason"] == "signal SIGKILL"
        assert started["pid"] != victim["pid"]
        t_died, t_started = _ts(died), _ts(started)
        assert t_started - t_died < 1.0, (died, started)
        assert ready["pid"] == started["pid"]
        info = {w["id"]: w for w in gw.workers()}
        assert info[victim["id"]]["restarts"] == 1
        assert info[victim["id"]]["pid"] == started["pid"]
        assert get(gw.port, "/after") == (200, b"hello /after")
        _, _, metrics = gw.admin("GET", "/metrics")
        assert f'pulsegate_worker_restarts_total{{worker="{victim["id"]}"}} 1.0'.encode() in metrics


def test_unresponsive_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    cfg = _config("127.0.0.1:9", supervisor={"ping_interval": "100ms", "ping_timeout": "600ms"})
    with gateway(tmp_path, cfg) as gw:
        victim = gw.workers()[1]
        mark = gw.mark()
        os.kill(victim["pid"], signal.SIGSTOP)  # alive, but answers nothing
        gw.wait_event(lambda e: e["event"] == "worker.unresponsive" and e["pid"] == victim["pid"], start=mark)
        died = gw.wait_event(lambda e: e["event"] == "worker.died", start=mark)
        assert died["reason"] == "signal SIGKILL"
        gw.wait_event(lambda e: e["event"] == "worker.ready" and e["worker"] == "supervisor", start=mark)


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    import threading

    release, arrived = threading.Event(), threading.Event()

    def slow(req: Request) -> Reply:
        arrived.set()
        release.wait(10)
        return Reply(200, body=b"finished")

    results: list[tuple[int, bytes]] = []
    with origin_thread(slow) as origin, gateway(tmp_path, _config(origin, workers=1)) as gw:
        t = threading.Thread(target=lambda: results.append(get(gw.port, "/slow")))
        t.start()
        # The request is in flight once the origin holds it; then ask the gateway to stop.
        deadline = time.monotonic() + 10
        while not any(w["connections"] for w in gw.workers()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        gw.proc.send_signal(signal.SIGTERM)
        gw.wait_event(lambda e: e["event"] == "worker.draining")
        release.set()
        t.join(10)
    assert results == [(200, b"finished")]


def test_broken_listen_address_exits_with_a_reason(tmp_path: Path) -> None:
    import socket

    from tests.runtime.gateway_process import GatewayProcess, write_config

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path / "gw.yaml", {"listen": f"127.0.0.1:{port}"})
        with pytest.raises(AssertionError, match=r"cannot listen on 127\.0\.0\.1"):
            GatewayProcess(path)


def _ts(event: dict[str, object]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


def test_a_worker_that_cannot_start_backs_off_then_the_gateway_gives_up(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.runtime.gateway_process import write_config

    missing = tmp_path / "no-such-dir" / "access.log"
    cfg = write_config(
        tmp_path / "gw.yaml",
        {
            "workers": 1,
            "logging": {"access_log": {"path": str(missing)}},
            "supervisor": {"start_timeout": "2500ms", "restart_backoff_max": "1s"},
        },
    )
    out = subprocess.run(
        [sys.executable, "-m", "pulsegate", "run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    failed = [e for e in events if e["event"] == "worker.start_failed" and e["worker"] == "1"]
    assert failed and str(missing) in failed[0]["reason"]
    delays = [e["delay"] for e in events if e["event"] == "worker.restart_delayed"]
    # A crash loop: each quick death waits longer, up to the cap, instead of spinning.
    assert len(delays) >= 3, names
    assert delays[:3] == [0.25, 0.5, 1.0] and max(delays) == 1.0
    assert names.count("worker.started") <= len(delays) + 1
    assert "gateway.start_failed" in names and "Traceback" not in out.stderr
