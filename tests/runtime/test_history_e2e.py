"""The supervisor's persisted metric history, end to end: it survives a restart of ``pulsegate run``,
and a history database that cannot be opened stops the gateway from starting.

Points are closed once a second from the workers' once-a-second snapshots, so the history API is
polled with a bounded deadline until the requests show up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import GatewayProcess, gateway, get, origin_thread, write_config


def hello(req: Request) -> Reply:
    return Reply(200, body=b"hello " + req.path)


def _config(origin: str, history: Path | str) -> dict[str, Any]:
    return {
        "workers": 2,
        "upstreams": {"app": {"targets": [origin]}},
        "routes": [{"name": "app", "match": {"path_prefix": "/"}, "upstream": "app"}],
        "metrics": {"history": {"path": str(history), "resolution": "1s"}},
    }


def history(gw: GatewayProcess, query: str) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = gw.admin_json("GET", f"/api/metrics/history?{query}")["points"]
    return points


def wait_requests(gw: GatewayProcess, query: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the history until its points add up to ``count`` requests: the supervisor closes a point
    each second from the snapshots the workers push each second, and logs nothing when it does."""
    deadline = time.monotonic() + timeout
    while True:
        points = history(gw, query)
        total = sum(p["requests"] for p in points)
        if total >= count:
            assert total == count, points
            return points
        assert time.monotonic() < deadline, f"{total} of {count} requests in the history: {points}"
        time.sleep(0.1)


def stored_requests(db: Path) -> list[tuple[float, int]]:
    """(time, requests) of the 1 s rows in the database file, read with no gateway running."""
    from pulsegate.metrics.history import History

    with History(str(db), retention=86400, resolution=1, memory_window=60) as stored:
        return [(p.time, p.requests) for p in stored.query(time.time() - 300) if p.requests]


def test_history_database_survives_a_supervisor_restart(tmp_path: Path) -> None:
    db = tmp_path / "state" / "h.db"  # the parent directory is created
    sent = 11
    with origin_thread(hello) as origin:
        config = _config(origin, db)
        with gateway(tmp_path, config) as gw:
            for i in range(sent):
                assert get(gw.port, f"/r{i}") == (200, f"hello /r{i}".encode())
            # The in-memory 1 s points (no resolution) do not touch the database.
            wait_requests(gw, "seconds=60", sent)
        first = stored_requests(db)
        assert sum(n for _, n in first) == sent
        assert all(t == int(t) and time.time() - 60 < t <= time.time() for t, _ in first)

        with gateway(tmp_path, config, name="gw2.yaml") as gw2:
            # A new supervisor starts with empty memory ...
            assert sum(p["requests"] for p in history(gw2, "seconds=300")) == 0
            assert get(gw2.port, "/more") == (200, b"hello /more")
            wait_requests(gw2, "seconds=60", 1)
        # ... and adds to the file rather than replacing it.
        second = stored_requests(db)
        assert second[: len(first)] == first
        assert sum(n for _, n in second) == sent + 1


def test_history_api_shows_a_previous_runs_requests(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    sent = 7
    with origin_thread(hello) as origin:
        config = _config(origin, db)
        with gateway(tmp_path, config) as gw:
            for i in range(sent):
                assert get(gw.port, f"/r{i}")[0] == 200
            first = wait_requests(gw, "seconds=60&resolution=1", sent)
        busy = [(p["time"], p["requests"]) for p in first if p["requests"]]
        with gateway(tmp_path, config, name="gw2.yaml") as gw2:
            again = history(gw2, "seconds=300&resolution=1")
            assert [(p["time"], p["requests"]) for p in again if p["requests"]] == busy
            assert sum(p["status"]["2xx"] for p in again) == sent
            assert sum(p["requests"] for p in history(gw2, "seconds=300&resolution=60")) == sent


@pytest.mark.parametrize("kind", ["under-a-file", "not-a-database"])
def test_unopenable_history_path_stops_the_start(tmp_path: Path, kind: str) -> None:
    blocker = tmp_path / "blocker"
    if kind == "under-a-file":
        blocker.write_text("a regular file, not a directory\n")
        db = blocker / "h.db"
    else:
        blocker.write_bytes(b"this is not an SQLite database" * 100)
        db = blocker
    path = write_config(tmp_path / "gw.yaml", _config("127.0.0.1:9", db))
    done = subprocess.run(
        [sys.executable, "-m", "pulsegate", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "listening" not in done.stdout
    events = [json.loads(line) for line in done.stderr.splitlines()]
    failed = [e for e in events if e["event"] == "history.open_failed"]
    assert len(failed) == 1, events
    assert failed[0]["level"] == "error" and failed[0]["worker"] == "supervisor"
    assert failed[0]["path"] == str(db)
    assert str(db) in failed[0]["reason"]
    # It gave up before starting anything.
    assert not [e for e in events if e["event"] in ("worker.started", "gateway.ready")], events
    assert "Traceback" not in done.stderr
