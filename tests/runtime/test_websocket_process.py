"""WebSocket tunnels in a real ``pulsegate run`` (2 workers): they survive a config reload that
removes their target, are counted in ``/metrics``, and are closed when shutdown's drain time ends."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from tests.runtime.gateway_process import GatewayProcess, write_config


def echo(ws: ServerConnection) -> None:
    # The gateway's shutdown closes the tunnel without a close frame (it does not speak WebSocket).
    with contextlib.suppress(ConnectionClosed):
        for message in ws:
            ws.send(message)


@contextlib.contextmanager
def ws_origin() -> Iterator[str]:
    with serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{server.socket.getsockname()[1]}"
        finally:
            server.shutdown()
            thread.join(10)


@pytest.mark.timeout(60)
def test_tunnel_survives_reload_and_closes_at_shutdown(tmp_path: Path) -> None:
    with ws_origin() as first, ws_origin() as second:
        cfg = {
            "workers": 2,
            "shutdown_timeout": "1s",
            "upstreams": {"ws": {"targets": [first]}},
            "routes": [{"name": "ws", "upstream": "ws"}],
        }
        path = write_config(tmp_path / "gw.yaml", cfg)
        gw = GatewayProcess(path)
        try:
            stack = contextlib.ExitStack()
            tunnels = [
                stack.enter_context(connect(f"ws://127.0.0.1:{gw.port}/t{i}", open_timeout=5))
                for i in range(4)
            ]
            for i, ws in enumerate(tunnels):
                ws.send(f"hello {i}")
                assert ws.recv(timeout=5) == f"hello {i}"
            # Reload to a config without the tunnels' target: they keep running.
            write_config(path, {**cfg, "upstreams": {"ws": {"targets": [second]}}})
            mark = gw.mark()
            gw.proc.send_signal(signal.SIGHUP)
            gw.wait_event(lambda e: e.get("event") == "config.reloaded", start=mark)
            for i, ws in enumerate(tunnels):
                ws.send(f"after {i}")
                assert ws.recv(timeout=5) == f"after {i}"
            # Metrics reach the supervisor once a second: wait for the count, bounded.
            deadline = time.monotonic() + 10
            while True:
                _, _, body = gw.admin("GET", "/metrics")
                if b'pulsegate_tunnels_total{route="ws"} 4.0' in body:
                    break
                assert time.monotonic() < deadline, body.decode()[-3000:]
                time.sleep(0.1)
            assert b"pulsegate_tunnels_active 4.0" in body
            # Shutdown drains for shutdown_timeout (1 s), then closes the tunnels.
            start = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            for ws in tunnels:
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=10)
            assert 0.8 <= time.monotonic() - start < 8.0
            assert gw.proc.wait(15) == 0
            stack.close()
        finally:
            gw.stop()
        assert "Traceback" not in gw.stderr_text(), gw.stderr_text()
