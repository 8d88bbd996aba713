"""Upstream faults against a real ``pulsegate run`` (supervisor + worker processes): an upstream
process killed mid-response, an upstream that accepts and never answers, an upstream that resets.

Each faulty upstream is the only target of its upstream, so the outcome is about the fault itself
(a retry could only reach the same broken target). Requests whose outcome a retry or an ejection
could change (an answer the upstream never started) are POSTs, which the gateway never retries.
After every fault the same gateway must serve a healthy route, from the same worker (no crash and
no restart), and it must shut down cleanly (the ``gateway`` helper asserts exit 0, no traceback).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import GatewayProcess, gateway, get, origin_thread

FULL_LENGTH = 1_000_000
PARTIAL = 1000

# An upstream *process*: answers its first request with a head announcing FULL_LENGTH bytes and
# PARTIAL of them, says so on stdout, then waits (for SIGKILL).
PARTIAL_UPSTREAM = f"""
import socket, sys
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(16)
print(ls.getsockname()[1], flush=True)
conn, _ = ls.accept()
data = b""
while b"\\r\\n\\r\\n" not in data:
    chunk = conn.recv(65536)
    if not chunk:
        sys.exit(1)
    data += chunk
head = b"HTTP/1.1 200 OK\\r\\nContent-Length: {FULL_LENGTH}\\r\\n\\r\\n"
conn.sendall(head + b"x" * {PARTIAL})
print("answered", flush=True)
sys.stdin.read()  # until killed
"""


def healthy(req: Request) -> Reply:
    return Reply(200, body=b"healthy " + req.path)


def _config(faulty: str, origin: str, **faulty_opts: Any) -> dict[str, Any]:
    """Route ``/faulty`` to the single faulty target, everything else to a healthy origin."""
    return {
        "workers": 1,
        "upstreams": {
            "faulty": {"targets": [faulty], **faulty_opts},
            "healthy": {"targets": [origin]},
        },
        "routes": [
            {"name": "faulty", "match": {"path_prefix": "/faulty"}, "upstream": "faulty"},
            {"name": "healthy", "match": {"path_prefix": "/"}, "upstream": "healthy"},
        ],
    }


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line from the child's stdout, waiting at most ``timeout`` seconds for it."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"upstream process said nothing within {timeout}s"
    return proc.stdout.readline().strip()


@contextlib.contextmanager
def upstream_process(script: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A Python upstream in its own process; yields it and the port it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc, int(_readline(proc, 10))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def read_request(conn: socket.socket) -> bytes:
    """A request head and its Content-Length body (what the gateway forwards), or what came."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class ThreadUpstream:
    """A real TCP listener on 127.0.0.1 that hands each accepted connection to ``handle``
    in its own thread; stopping it shuts down the listener and every connection still open."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.handle = handle
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was shut down
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handle(conn)

    def __enter__(self) -> ThreadUpstream:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self.listener.close()
        self._acceptor.join(5)
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv()
        for t in self.threads:
            t.join(5)
        for conn in self.conns:
            conn.close()


def post(port: int, path: str, body: bytes = b"payload", timeout: float = 10.0) -> tuple[int, bytes, float]:
    """One POST on a fresh connection: (status, body, seconds taken)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        start = time.monotonic()
        conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, time.monotonic() - start
    finally:
        conn.close()


def _parse_head(data: bytes) -> tuple[int, dict[bytes, bytes], int]:
    """(status, lower-cased headers, offset of the body) of a response head in ``data``."""
    end = data.index(b"\r\n\r\n")
    lines = data[:end].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, end + 4


def _assert_same_worker(gw: GatewayProcess, before: list[dict[str, Any]]) -> None:
    after = gw.workers()
    assert [(w["pid"], w["restarts"]) for w in after] == [(w["pid"], 0) for w in before], after


def test_upstream_process_killed_mid_response(tmp_path: Path) -> None:
    """The upstream process sends a 200 head announcing 1,000,000 bytes and 1,000 of them, the
    client has received those, and then the process is SIGKILLed. Proves: the client is not left
    waiting for the missing bytes (no hang) and is never handed a full-length response: the
    gateway ends the client connection with a clean close (FIN, no reset) after the partial
    body, within a bounded time. A 502 would be the only other honest answer, but it cannot occur
    here: the head had already reached the client when the kill happened (GET is fine: a response
    that has started cannot be retried). Then the same worker keeps serving another route (200)."""
    with (
        upstream_process(PARTIAL_UPSTREAM) as (proc, uport),
        origin_thread(healthy) as origin,
        gateway(tmp_path, _config(f"127.0.0.1:{uport}", origin)) as gw,
    ):
        workers = gw.workers()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as client:
            client.sendall(b"GET /faulty/big HTTP/1.1\r\nHost: test\r\n\r\n")
            assert _readline(proc, 10) == "answered"
            data = b""
            while b"\r\n\r\n" not in data or len(data) - data.index(b"\r\n\r\n") - 4 < PARTIAL:
                chunk = client.recv(65536)
                assert chunk, f"closed before the partial body arrived: {data[:300]!r}"
                data += chunk
            status, headers, body_at = _parse_head(data)
            assert status == 200 and headers[b"content-length"] == str(FULL_LENGTH).encode()

            os.kill(proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            proc.wait(5)
            try:
                while chunk := client.recv(65536):  # a hang ends in socket.timeout (5 s)
                    data += chunk
            except ConnectionResetError as exc:
                raise AssertionError("the gateway reset the client instead of closing it") from exc
            closed_after = time.monotonic() - killed_at
        body = len(data) - body_at
        assert body == PARTIAL < FULL_LENGTH, body  # exactly what the upstream sent, then the end
        assert closed_after < 3.0, closed_after

        assert get(gw.port, "/after") == (200, b"healthy /after")
        _assert_same_worker(gw, workers)


def test_upstream_that_never_answers_504(tmp_path: Path) -> None:
    """The upstream accepts the connection and reads the request, then sends nothing. Proves:
    with ``timeouts.read: 500ms`` the client gets a 504 naming its request id after about
    half a second (not before the timeout, and well within 3 s: never a hang); the gateway closes
    the stalled upstream connection instead of leaking it; the same worker keeps serving another
    route (200)."""
    arrived, released = threading.Event(), threading.Event()

    def stall(conn: socket.socket) -> None:
        assert read_request(conn).startswith(b"POST /faulty/stall ")
        arrived.set()
        while conn.recv(65536):  # never answer; wait for the gateway to give up and close
            pass
        released.set()

    with (
        ThreadUpstream(stall) as up,
        origin_thread(healthy) as origin,
        gateway(tmp_path, _config(up.target, origin, timeouts={"connect": "1s", "read": "500ms"})) as gw,
    ):
        workers = gw.workers()
        status, body, took = post(gw.port, "/faulty/stall")
        assert arrived.is_set(), "the request never reached the upstream"
        assert status == 504, (status, body)
        assert b"timed out" in body, body
        assert 0.45 < took < 3.0, took
        assert released.wait(3), "the gateway kept the timed-out upstream connection open"

        assert get(gw.port, "/after") == (200, b"healthy /after")
        _assert_same_worker(gw, workers)


def test_upstream_reset_502(tmp_path: Path) -> None:
    """The upstream accepts, reads the whole request, then closes with ``SO_LINGER`` 0, so the
    gateway gets a TCP reset instead of an answer. Proves: the client gets a prompt 502 (not a
    hang, not a dropped connection), and the same worker keeps serving another route (200)."""
    got_request = threading.Event()

    def reset(conn: socket.socket) -> None:
        assert read_request(conn).endswith(b"\r\n\r\npayload")
        got_request.set()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST

    with (
        ThreadUpstream(reset) as up,
        origin_thread(healthy) as origin,
        gateway(tmp_path, _config(up.target, origin)) as gw,
    ):
        workers = gw.workers()
        status, body, took = post(gw.port, "/faulty/reset")
        assert got_request.is_set(), "the request never reached the upstream"
        assert status == 502, (status, body)
        assert took < 3.0, took

        assert get(gw.port, "/after") == (200, b"healthy /after")
        _assert_same_worker(gw, workers)
