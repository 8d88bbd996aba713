"""The command line as operators use it: real subprocesses, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

PULSEGATE = [sys.executable, "-m", "pulsegate"]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PULSEGATE, *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_check_valid(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("upstreams: {api: {targets: ['127.0.0.1:9001']}}\nroutes: [{name: api, upstream: api}]\n")
    out = run_cli("check", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        f"{cfg}: OK: 1 listener (127.0.0.1:8080), 1 upstream (1 target), 1 route"
    ]


def test_check_invalid_lists_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        "upstreams: {api: {targets: ['127.0.0.1:9001']}}\n"
        "routes:\n  - {upstream: api}\n  - {upstream: apii}\n"
        "limits: {max_heder_bytes: 1KiB}\n"
    )
    out = run_cli("check", "-c", str(cfg))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert f"{cfg}: routes[1].upstream: unknown upstream 'apii' (known: api)" in lines
    assert f"{cfg}: limits.max_heder_bytes: unknown key" in lines
    assert out.stdout == ""


def _start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*PULSEGATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the readiness line: an event, not a sleep
    return proc, line


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)  # also closes the pipes
    assert "Traceback" not in err, err
    return proc.returncode


def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    # An upstream with nothing listening is enough to prove the data path answers (502).
    cfg.write_text(
        "listen: '127.0.0.1:0'\nadmin: {listen: '127.0.0.1:0'}\nmetrics: {history: {path: 'off'}}\n"
        "upstreams: {u: {targets: ['127.0.0.1:9']}}\nroutes: [{upstream: u}]\n"
    )
    proc, line = _start(["run", "-c", str(cfg)])
    try:
        assert line.startswith("pulsegate: listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "/x", timeout=10)
        assert err.value.code == 502
        err.value.close()
    finally:
        assert _stop(proc) == 0


def test_run_refuses_broken_config(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("routes: [{upstream: nope}]\n")
    out = run_cli("run", "-c", str(cfg))
    assert out.returncode == 2
    assert f"{cfg}: routes[0].upstream: unknown upstream 'nope'" in out.stderr


def test_demo_serves_its_services() -> None:
    proc, line = _start(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
    try:
        assert line.startswith("pulsegate demo: gateway listening on http://127.0.0.1:"), line
        base = line.split()[-1]
        served = set()
        for _ in range(4):
            with urllib.request.urlopen(base + "/api/items/2", timeout=10) as resp:
                assert resp.status == 200
                body = resp.read().decode()
                served.add(body.split('"served_by": "')[1].split('"')[0])
        assert served == {"catalog-a", "catalog-b"}  # round robin over both instances
        with urllib.request.urlopen(base + "/echo/hi", data=b"ping", timeout=10) as resp:
            assert b'"ping"' in resp.read()
    finally:
        assert _stop(proc) == 0


def test_python_dash_m_and_console_script_agree() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("pulsegate ")
    script = Path(sys.executable).with_name("pulsegate")
    if script.exists():
        out2 = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        assert out2.stdout == out.stdout


def test_run_writes_and_removes_its_pid_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        "listen: '127.0.0.1:0'\nadmin: {listen: '127.0.0.1:0'}\n"
        "metrics: {history: {path: 'off'}}\nworkers: 1\n"
    )
    pid_file = tmp_path / "gw.pid"
    proc, line = _start(["run", "-c", str(cfg), "--pid-file", str(pid_file)])
    try:
        assert line.startswith("pulsegate: listening on "), line
        assert pid_file.read_text().strip() == str(proc.pid)
    finally:
        assert _stop(proc) == 0
    assert not pid_file.exists()
