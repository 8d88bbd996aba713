"""A real Prometheus server scrapes the admin API's ``/metrics``: the exposition is what Prometheus
accepts, the bearer token works with its ``authorization`` scrape config, and the counters it
stores are the requests the gateway served.

Needs the ``prometheus`` binary (Debian package ``prometheus``; ``.ci/run`` installs it as root).
Without it the test skips and says why.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import gateway, get, origin_thread

TOKEN = "scrape-secret-7c1e"
REQUESTS = 50
JOB = "pulsegate"
# Loopback only: never let an http_proxy from the environment see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def hello(req: Request) -> Reply:
    return Reply(200, body=b"hello " + req.path)


class PrometheusProcess:
    """``prometheus`` on an ephemeral loopback port (``--web.listen-address=127.0.0.1:0``; the port
    is read from its "Listening on" log line), ready when it logs that it serves web requests."""

    def __init__(self, binary: str, tmp_path: Path, config: dict[str, Any]) -> None:
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                "--web.listen-address=127.0.0.1:0",
                # info, not warn: the actual port and readiness are only logged at info.
                "--log.level=info",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.address: str | None = None
        self._ready = False
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                if (m := re.search(r'msg="Listening on" address=(\S+)', line)) is not None:
                    self.address = m.group(1)
                if "Server is ready to receive web requests" in line:
                    self._ready = True
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def log(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_ready(self, timeout: float = 20.0) -> str:
        """The base URL, once Prometheus listens and is ready (waits on its log, no sleeps)."""
        with self._cond:
            done = self._cond.wait_for(lambda: (self._ready and self.address) or self._eof, timeout)
            if not done or self._eof:
                raise AssertionError(f"prometheus not ready within {timeout}s:\n{self.log()}")
            return f"http://{self.address}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextlib.contextmanager
def prometheus(binary: str, tmp_path: Path, config: dict[str, Any]) -> Iterator[PrometheusProcess]:
    prom = PrometheusProcess(binary, tmp_path, config)
    try:
        yield prom
    finally:
        prom.stop()


def api(base: str, path: str, **params: str) -> Any:
    """``data`` of a Prometheus HTTP API answer (``status`` must be ``success``)."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with _OPENER.open(url, timeout=5) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as exc:
        with exc:
            raise AssertionError(f"GET {url}: {exc.code} {exc.read()!r}") from None
    assert doc["status"] == "success", doc
    return doc["data"]


def scalar(base: str, query: str) -> float | None:
    """The value of a single-series instant query, or ``None`` while it has no series."""
    result = api(base, "/api/v1/query", query=query)["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


@pytest.mark.timeout(90)
def test_prometheus_scrapes_admin_metrics(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        reason = "prometheus not found on PATH (Debian package 'prometheus'; .ci/run installs it as root)"
        print(reason)
        pytest.skip(reason)

    with origin_thread(hello) as origin:
        cfg = {
            "workers": 2,
            "admin": {"token": TOKEN},
            "upstreams": {"app": {"targets": [origin]}},
            "routes": [{"name": "app", "match": {"path_prefix": "/"}, "upstream": "app"}],
        }
        with gateway(tmp_path, cfg) as gw:
            # A fresh connection each time, so both workers' counts go into the sum.
            for i in range(REQUESTS):
                assert get(gw.port, f"/r{i}") == (200, f"hello /r{i}".encode())
            assert gw.admin("GET", "/metrics")[0] == 401  # the token is really required

            prom_config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "metrics_path": "/metrics",
                        "authorization": {"type": "Bearer", "credentials": TOKEN},
                        "static_configs": [{"targets": [f"127.0.0.1:{gw.admin_port}"]}],
                    }
                ],
            }
            with prometheus(binary, tmp_path, prom_config) as prom:
                base = prom.wait_ready()
                requests = f'sum(pulsegate_requests_total{{route="app",job="{JOB}"}})'
                # Polled: Prometheus scrapes once a second and the workers push their counts to the
                # supervisor once a second, so the stored value catches up within a few seconds and
                # nothing signals when. 0.5 s is half the scrape interval; 30 s bounds the wait.
                deadline = time.monotonic() + 30
                while (value := scalar(base, requests)) != REQUESTS:
                    if time.monotonic() > deadline:
                        targets = api(base, "/api/v1/targets")
                        raise AssertionError(
                            f"{requests} = {value}, want {REQUESTS}\ntargets: {targets}\n"
                            f"prometheus log:\n{prom.log()}\ngateway log:\n{gw.stderr_text()}"
                        )
                    time.sleep(0.5)

                assert scalar(base, f'up{{job="{JOB}"}}') == 1
                [target] = api(base, "/api/v1/targets", state="active")["activeTargets"]
                assert target["health"] == "up", target
                assert target["lastError"] == "", target
                assert target["scrapeUrl"] == f"http://127.0.0.1:{gw.admin_port}/metrics"
                # Every family was ingested, not only the counter we waited for.
                assert scalar(base, 'pulsegate_responses_total{route="app",code_class="2xx"}') == REQUESTS
                assert scalar(base, 'pulsegate_request_duration_seconds_count{route="app"}') == REQUESTS
                assert scalar(base, 'count(pulsegate_request_duration_seconds_bucket{route="app"})') == 17
                assert scalar(base, "pulsegate_workers") == 2
                # Scrape problems (rejected samples, duplicate series...) are logged at warn/error.
                problems = [ln for ln in prom.log().splitlines() if re.search(r"level=(warn|error)", ln)]
                assert problems == [], prom.log()

            # The same exposition through prometheus_client's own parser agrees with Prometheus.
            status, headers, body = gw.admin("GET", "/metrics", token=TOKEN)
            # prometheus_client 0.26 labels it text format 1.0.0; Prometheus 2.x parses any text/plain
            # as the classic format (OpenMetrics only when asked for and served as such).
            assert status == 200 and headers["content-type"].startswith("text/plain;"), headers
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            [sample] = [s for s in families["pulsegate_requests"].samples if s.labels == {"route": "app"}]
            assert sample.name == "pulsegate_requests_total" and sample.value == REQUESTS
            assert families["pulsegate_request_duration_seconds"].type == "histogram"
