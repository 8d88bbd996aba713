"""Zero-downtime reload: a bounded load loop runs through 5 reloads (routes added, targets added and
removed) against 2 workers; no request may fail, and new routes serve at once, also on keep-alive
connections opened before the reloads."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import gateway, get, origin_thread, write_config

RELOADS = 5
LOAD_THREADS = 4


def named(name: str) -> Any:
    def handle(req: Request) -> Reply:
        return Reply(200, body=f"{name} ".encode() + req.path)

    return handle


def generation(k: int, a: str, b: str) -> dict[str, Any]:
    """Config generation k: the load route, one new exact route per generation, and targets that
    alternate between [a] and [a, b] (so pools are carried over, added and retired)."""
    routes: list[dict[str, Any]] = [{"name": "load", "match": {"path_prefix": "/load"}, "upstream": "app"}]
    routes += [{"name": f"gen{i}", "match": {"path": f"/gen{i}"}, "upstream": "app"} for i in range(1, k + 1)]
    return {
        "workers": 2,
        "upstreams": {"app": {"targets": [a] if k % 2 == 0 else [a, b]}},
        "routes": routes,
    }


@pytest.mark.timeout(120)
def test_five_reloads_under_load_fail_nothing(tmp_path: Path) -> None:
    with (
        origin_thread(named("a")) as a,
        origin_thread(named("b")) as b,
        gateway(tmp_path, generation(0, a, b)) as gw,
    ):
        stop = threading.Event()
        failures: list[str] = []
        counts = [0] * LOAD_THREADS
        progress = threading.Condition()

        def load(i: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
            deadline = time.monotonic() + 60  # bounded even if the main thread never stops us
            n = 0
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    # Every 50th request on a fresh connection: new accepts during reloads too.
                    if n % 50 == 49:
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
                    conn.request("GET", f"/load/{i}/{n}")
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200 or not body.endswith(f"/load/{i}/{n}".encode()):
                        failures.append(f"{resp.status} {body[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
                n += 1
                with progress:
                    counts[i] = n
                    progress.notify_all()
            conn.close()

        threads = [threading.Thread(target=load, args=(i,)) for i in range(LOAD_THREADS)]
        for t in threads:
            t.start()
        # A keep-alive connection opened before any reload, used after each one.
        veteran = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        assert get(gw.port, "/gen1", veteran)[0] == 404
        try:
            for k in range(1, RELOADS + 1):
                before = sum(counts)
                write_config(gw.config_path, generation(k, a, b))
                status, _, body = gw.admin("POST", "/api/config/reload")
                assert status == 200, body
                assert json.loads(body)["ok"] is True
                # The new route serves at once, on the old connection and on a new one.
                assert get(gw.port, f"/gen{k}", veteran)[0] == 200
                assert get(gw.port, f"/gen{k}")[0] == 200
                # Load kept flowing while we reloaded (each thread made progress).
                floor = before + 50 * LOAD_THREADS
                with progress:
                    assert progress.wait_for(lambda floor=floor: sum(counts) > floor, 20), counts
        finally:
            stop.set()
            for t in threads:
                t.join(30)
            veteran.close()
        assert not failures, failures[:10]
        assert sum(counts) > RELOADS * 50 * LOAD_THREADS
        # Both upstream targets served during the odd generations; the workers stayed the same.
        assert all(w["restarts"] == 0 for w in gw.workers())


def test_listen_change_is_reported_as_needing_a_restart(tmp_path: Path) -> None:
    with origin_thread(named("a")) as a, gateway(tmp_path, generation(0, a, a)) as gw:
        cfg = yaml.safe_load(gw.config_path.read_text())
        cfg["listen"] = "127.0.0.1:1"
        gw.config_path.write_text(yaml.safe_dump(cfg))
        status, _, body = gw.admin("POST", "/api/config/reload")
        answer = json.loads(body)
        assert status == 200 and answer["ok"] is True
        assert answer["restart_required"] == ["listen"]
        assert get(gw.port, "/load/x")[0] == 200  # still on the port it was started with
