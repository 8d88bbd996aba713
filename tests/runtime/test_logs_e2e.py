"""Logs of a real ``pulsegate run``: the workers' access log (its lines, SIGUSR1 reopening it after
logrotate moved it) and the event log (JSON lines, or the console format).

The access log is written in batches every ``flush_interval``: tests read it by polling the file with
a bounded deadline (a flush is at most ``flush_interval`` away and logs no event).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import gateway, get, origin_thread

ACCESS_FIELDS = {
    "ts",
    "method",
    "path",
    "route",
    "upstream",
    "target",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "request_id",
    "client",
}
TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def echo(req: Request) -> Reply:
    return Reply(200, body=b"echo " + req.method + b" " + req.path + b" " + req.body)


def _config(origin: str, workers: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "workers": workers,
        "upstreams": {"app": {"targets": [origin]}},
        "routes": [{"name": "app", "match": {"path_prefix": "/app/"}, "upstream": "app"}],
        **extra,
    }


def _access_log(path: Path) -> dict[str, Any]:
    return {"logging": {"format": "json", "access_log": {"path": str(path), "flush_interval": "100ms"}}}


def request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes, int]:
    """One request on a fresh connection: status, headers, body, and every byte the gateway sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {len(body)}\r\n"
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
        raw = bytearray()
        while chunk := sock.recv(65536):
            raw += chunk
    head_bytes, _, payload = bytes(raw).partition(b"\r\n\r\n")
    status_line, *fields = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return int(status_line.split()[1]), headers, payload, len(raw)


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a torn line"
    return [json.loads(line) for line in text.splitlines()]


def wait_lines(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll ``path`` until it holds ``count`` JSON lines (flushed every flush_interval; no event)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = read_lines(path)
        if len(lines) >= count:
            assert len(lines) == count, lines
            return lines
        assert time.monotonic() < deadline, f"{path}: {len(lines)} of {count} lines after {timeout}s"
        time.sleep(0.05)  # the workers flush their batch every 100 ms


def test_access_log_has_one_line_per_request(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    sent: list[tuple[str, str, bytes, int, dict[str, str], int]] = []
    with (
        origin_thread(echo) as origin,
        gateway(tmp_path, {**_config(origin), **_access_log(log_path)}) as gw,
    ):
        for method, path, body in [
            ("GET", "/app/one", b""),
            ("GET", "/app/two?x=1&y=%20", b""),
            ("POST", "/app/upload", b"p" * 1234),
            ("PUT", "/app/put", b"{}"),
            ("DELETE", "/app/gone", b""),
            ("GET", "/unrouted/path", b""),
        ]:
            status, headers, payload, wire = request(gw.port, method, path, body)
            if path.startswith("/app/"):
                assert payload == f"echo {method} {path.split('?')[0]} ".encode() + body
            sent.append((method, path, body, status, headers, wire))
        lines = wait_lines(log_path, len(sent))
    # Lines are written per worker and batch, so match them to requests by their request id.
    by_id = {line["request_id"]: line for line in lines}
    assert len(by_id) == len(sent)
    for method, path, body, status, headers, wire in sent:
        rid = headers["x-request-id"]
        assert rid, headers
        line = by_id[rid]
        assert set(line) == ACCESS_FIELDS, line
        assert TS_RE.fullmatch(line["ts"]), line["ts"]
        assert (line["method"], line["path"], line["status"]) == (method, path, status)
        assert line["client"] == "127.0.0.1"
        assert line["bytes_in"] == len(body)
        # bytes_out counts what the gateway sent for the response (at least the body, at most the wire).
        assert int(headers.get("content-length", "0")) <= line["bytes_out"] <= wire, (line, wire)
        assert line["duration_ms"] >= line["upstream_ms"] >= 0
        assert line["duration_ms"] < 10_000
        if path.startswith("/app/"):
            assert status == 200
            assert (line["route"], line["upstream"], line["target"]) == ("app", "app", origin)
            assert line["upstream_ms"] > 0
        else:
            assert status == 404
            assert (line["route"], line["upstream"], line["target"]) == ("", "", "")
            assert line["upstream_ms"] == 0


def test_sigusr1_reopens_the_access_log_after_rotation(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    with (
        origin_thread(echo) as origin,
        gateway(tmp_path, {**_config(origin), **_access_log(log_path)}) as gw,
    ):
        for i in range(3):
            assert get(gw.port, f"/app/before-{i}")[0] == 200
        before = wait_lines(log_path, 3)
        log_path.rename(rotated)  # what logrotate does; the workers keep writing to the moved file
        mark = gw.mark()
        os.kill(gw.proc.pid, signal.SIGUSR1)
        gw.wait_event(lambda e: e["event"] == "logs.reopened", start=mark)
        for i in range(4):
            assert get(gw.port, f"/app/after-{i}")[0] == 200
        after = wait_lines(log_path, 4)
        assert read_lines(rotated) == before
        assert not [e for e in gw.events[mark:] if e["event"] == "logs.reopen_failed"]
    assert sorted(line["path"] for line in before) == [f"/app/before-{i}" for i in range(3)]
    assert sorted(line["path"] for line in after) == [f"/app/after-{i}" for i in range(4)]
    # Nothing more reached the rotated file, and shutdown's final flush left the new one whole.
    assert read_lines(rotated) == before
    assert len(read_lines(log_path)) == 4


def test_sigusr1_without_a_log_file_is_harmless(tmp_path: Path) -> None:
    with origin_thread(echo) as origin, gateway(tmp_path, _config(origin, workers=1)) as gw:
        mark = gw.mark()
        os.kill(gw.proc.pid, signal.SIGUSR1)
        gw.wait_event(lambda e: e["event"] == "logs.reopened", start=mark)
        assert get(gw.port, "/app/x") == (200, b"echo GET /app/x ")
        assert not [e for e in gw.events[mark:] if e["event"] == "logs.reopen_failed"]


def test_event_log_lines_are_json_with_their_source(tmp_path: Path) -> None:
    with origin_thread(echo) as origin, gateway(tmp_path, _config(origin)) as gw:
        assert get(gw.port, "/app/x")[0] == 200
        gw.wait_event(lambda e: e["event"] == "worker.ready" and e["worker"] == "1")
        gw.wait_event(lambda e: e["event"] == "worker.ready" and e["worker"] == "2")
    # The gateway has exited: every line it wrote has been read.
    assert gw.other_lines == [], gw.other_lines
    assert gw.events
    for event in gw.events:
        assert list(event)[:4] == ["ts", "level", "worker", "event"], event
        assert TS_RE.fullmatch(event["ts"]), event
        assert event["level"] in {"debug", "info", "warning", "error"}, event
        assert event["worker"] in {"supervisor", "1", "2"}, event
        assert isinstance(event["event"], str) and event["event"], event
    names = {(e["worker"], e["event"]) for e in gw.events}
    assert {
        ("supervisor", "worker.started"),
        ("supervisor", "gateway.ready"),
        ("supervisor", "gateway.stopped"),
        ("1", "worker.ready"),
        ("2", "worker.ready"),
        ("1", "worker.stopped"),
        ("2", "worker.stopped"),
    } <= names
    ready = next(e for e in gw.events if e["event"] == "gateway.ready")
    assert ready["workers"] == 2 and ready["listening"] == [gw.url]


def test_console_format_writes_human_lines(tmp_path: Path) -> None:
    config = _config("127.0.0.1:9", logging={"format": "console"})
    with gateway(tmp_path, config) as gw:
        assert get(gw.port, "/nothing-here")[0] == 404
        assert gw.admin("GET", "/api/health")[0] == 200
    assert gw.events == [], gw.events  # not a single JSON line, from the supervisor or a worker
    lines = [line.rstrip("\n") for line in gw.other_lines]
    console = re.compile(
        r"\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARN |ERROR|CRIT ) (supervisor|1|2) [\w.]+( .*)?"
    )
    assert lines and all(console.fullmatch(line) for line in lines), lines
    assert not [line for line in lines if "\x1b[" in line]  # no colours: stderr is a pipe, not a TTY
    assert any(re.search(r" supervisor worker\.started worker_id=1 pid=\d+$", line) for line in lines), lines
    assert any(" 1 worker.ready pid=" in line for line in lines), lines
    assert any(" 2 worker.stopped" in line for line in lines), lines
    assert any(" supervisor gateway.stopped" in line for line in lines), lines


def test_sigusr1_reopens_the_event_log_file(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    rotated = tmp_path / "events.log.1"
    config = _config("127.0.0.1:9", logging={"format": "json", "path": str(events)})
    with gateway(tmp_path, config) as gw:
        # The event log goes to the file: nothing reaches the harness, so the file is polled.
        wait_events(events, "gateway.ready")
        events.rename(rotated)
        os.kill(gw.proc.pid, signal.SIGUSR1)
        wait_events(events, "logs.reopened")
    assert gw.events == [] and gw.other_lines == []
    old, new = read_lines(rotated), read_lines(events)
    assert {"worker.started", "worker.ready", "gateway.ready"} <= {e["event"] for e in old}
    assert not [e for e in old if e["event"] in ("logs.reopened", "gateway.stopping", "worker.stopped")]
    assert new and new[0]["event"] == "logs.reopened", new
    # After the reopen, the workers too write to the new file (their shutdown lines land there).
    stopped = {e["worker"] for e in new if e["event"] == "worker.stopped"}
    assert stopped == {"1", "2"}, new
    assert {"gateway.stopping", "gateway.stopped"} <= {e["event"] for e in new}


def wait_events(path: Path, name: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll an event log file until it holds an event called ``name`` (no harness reader on a file)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = read_lines(path)
        if any(e["event"] == name for e in lines):
            return lines
        assert time.monotonic() < deadline, f"{path}: no {name} within {timeout}s: {lines}"
        time.sleep(0.05)  # lines are written as they happen; this only bounds the wait
