"""A real ``pulsegate run`` (supervisor + worker processes) for tests: started from a config file,
ready when it prints its listening lines, with its JSON event log collected as it is written."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

Event = dict[str, Any]


class GatewayProcess:
    def __init__(self, config_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulsegate", "run", "-c", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[Event] = []
        self.other_lines: list[str] = []
        self._cond = threading.Condition()
        self._stderr = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr.start()
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # readiness lines: events, not sleeps
        if not first.startswith("pulsegate: listening on "):
            self.proc.kill()
            self.proc.wait(10)
            self._stderr.join(5)
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
            raise AssertionError(f"gateway did not start: {first!r}\n{self.stderr_text()}")
        self.url = first.split()[-1].rstrip(",")
        self.port = int(self.url.rsplit(":", 1)[1])
        admin = self.proc.stdout.readline()
        self.admin_url = admin.split()[-1]
        self.admin_port = int(self.admin_url.rsplit(":", 1)[1])

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._cond:
                if isinstance(event, dict):
                    self.events.append(event)
                else:
                    self.other_lines.append(line)
                self._cond.notify_all()

    def stderr_text(self) -> str:
        with self._cond:
            return "".join(json.dumps(e) + "\n" for e in self.events) + "".join(self.other_lines)

    def wait_event(self, pred: Callable[[Event], bool], timeout: float = 10.0, start: int = 0) -> Event:
        """The first logged event (from index ``start``) matching ``pred``; waits on the log reader."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if pred(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching event within {timeout}s; log:\n{self.stderr_text()}")
                self._cond.wait(remaining)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def admin(
        self, method: str, path: str, *, token: str | None = None, timeout: float = 15.0
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def admin_json(self, method: str, path: str, **kw: Any) -> Any:
        status, _, body = self.admin(method, path, **kw)
        assert status == 200, (status, body)
        return json.loads(body)

    def workers(self) -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = self.admin_json("GET", "/api/workers")["workers"]
        return workers

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise
        self._stderr.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code


def write_config(path: Path, config: dict[str, Any]) -> Path:
    base: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "admin": {"listen": "127.0.0.1:0"},
        "logging": {"format": "json"},
        "metrics": {"history": {"path": "off"}},
        "supervisor": {"ping_interval": "200ms", "ping_timeout": "2s"},
        "shutdown_timeout": "10s",
    }
    merged = _merge(base, config)
    path.write_text(yaml.safe_dump(merged))
    return path


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@contextlib.contextmanager
def gateway(tmp_path: Path, config: dict[str, Any], name: str = "gw.yaml") -> Iterator[GatewayProcess]:
    gw = GatewayProcess(write_config(tmp_path / name, config))
    try:
        yield gw
    finally:
        code = gw.stop()
        assert "Traceback" not in gw.stderr_text(), gw.stderr_text()
        assert code == 0, f"exit {code}\n{gw.stderr_text()}"


@contextlib.contextmanager
def origin_thread(handler: Callable[..., Any]) -> Iterator[str]:
    """A real origin server on its own event loop in a thread; yields its ``host:port``."""
    import asyncio

    import uvloop

    from pulsegate.origin import Origin

    loop = uvloop.new_event_loop()
    origin = Origin(handler)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(origin.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "origin did not start"
    try:
        yield origin.target
    finally:
        asyncio.run_coroutine_threadsafe(origin.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """One GET (on ``conn`` when given, keeping it alive)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            c.close()


T = TypeVar("T")


def poll(fetch: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float = 10.0) -> T:
    """``fetch()`` until ``done`` holds, for at most ``timeout`` s. Only for figures the workers
    push periodically (once a second): there is no event to wait on for "the snapshot arrived"."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout}s; last: {value!r}"
        time.sleep(0.1)  # the next snapshot is at most a second away
