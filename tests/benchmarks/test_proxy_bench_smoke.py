"""Smoke tests for benchmarks/proxy_bench.py: a tiny real run must print the table with an nginx row.

The benchmark needs nginx and wrk (Debian packages). The script installs them when it can; when it
cannot it exits 77 and says why, and these tests skip with that reason instead of failing. The
generated haproxy and origin configs and the wrk Lua scripts are also checked without any load.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "proxy_bench.py"
EXIT_TOOLS_MISSING = 77

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:40000/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.12us  120.50us   1.20s    90.00%
    Req/Sec    25.01k     1.20k   27.00k    80.00%
  Latency Distribution
     50%  250.00us
     75%  400.00us
     90%    1.50ms
     99%    2.10s
  25010 requests in 1.00s, 3.70MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  25005.50
Transfer/sec:      3.70MB
"""


@functools.cache
def _load(stem: str) -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the helper module by path. dataclasses
    # look their module up in sys.modules while the class is built, so register it first.
    name = f"_pulsegate_bench_{stem}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_rig() -> ModuleType:
    return _load("proxy_rig")


def _run_bench(args: list[str], out_json: Path) -> subprocess.CompletedProcess[str]:
    """Run the script bounded in time; skip (printing why) when it exits 77 for missing tools."""
    # The script bounds its own installs (75 s) and each run (1 s + readiness 10 s per peer).
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--install-timeout", "75", "--json", str(out_json), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=115,
        check=False,
    )
    if proc.returncode == EXIT_TOOLS_MISSING:
        reason = (proc.stdout.strip().splitlines() or ["nginx or wrk unavailable"])[-1]
        print(reason)
        pytest.skip(reason)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_parse_wrk_units_and_errors() -> None:
    res = _load_rig().parse_wrk(WRK_OUTPUT)
    assert res.requests == 25010
    assert res.seconds == pytest.approx(1.0)
    assert res.rps == pytest.approx(25005.5)
    assert res.latency_ms == pytest.approx({"50": 0.25, "75": 0.4, "90": 1.5, "99": 2100.0})
    assert res.non_2xx == 5
    assert res.errors == 8


def test_parse_wrk_rejects_output_without_latency() -> None:
    rig = _load_rig()
    without = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%  " not in line)
    with pytest.raises(ValueError, match="latency"):
        rig.parse_wrk(without)


@pytest.mark.timeout(120)
def test_proxy_bench_smoke(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    out = _run_bench([], out_json).stdout
    assert re.search(r"^proxy\s+req/s\s+p50 ms\s+p99 ms\s+CPU us/req\s", out, re.MULTILINE), out
    row = re.search(r"^nginx\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s", out, re.MULTILINE)
    assert row is not None, out
    assert int(row.group(1)) > 0
    assert "pulsegate/nginx req/s ratio:" in out

    doc = json.loads(out_json.read_text())
    nginx_runs = [run for run in doc["runs"] if run["peer"] == "nginx"]
    assert len(nginx_runs) == 1
    assert nginx_runs[0]["requests"] > 0
    assert nginx_runs[0]["cpu_us_per_req"] > 0
    # Every peer the script knows is either measured or skipped with a reason.
    measured = {run["peer"] for run in doc["runs"]}
    assert measured | set(doc["skipped"]) == {
        "nginx",
        "haproxy",
        "pulsegate",
        "node-http-proxy",
        "node-undici",
    }
    assert doc["workload"]["name"] == "hello"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workload", ["browser", "large", "post"])
def test_proxy_bench_workload_smoke(tmp_path: Path, workload: str) -> None:
    out_json = tmp_path / "bench.json"
    out = _run_bench(["--workload", workload, "--peers", "nginx,pulsegate"], out_json).stdout
    assert re.search(rf"^workload {workload}: ", out, re.MULTILINE), out
    assert re.search(r"^nginx\s+(\d+)\s", out, re.MULTILINE), out

    doc = json.loads(out_json.read_text())
    assert doc["workload"]["name"] == workload
    runs = doc["runs"]
    assert {run["peer"] for run in runs} | set(doc["skipped"]) == {"nginx", "pulsegate"}
    assert any(run["peer"] == "nginx" for run in runs), doc["skipped"]
    for run in runs:
        assert run["requests"] > 0, run
        assert run["errors"] == 0, run
        # The origin's stub_status must have seen (about) every request wrk completed.
        assert abs(run["upstream_requests"] - run["requests"]) <= max(16, run["requests"] // 100), run


def _lua() -> ctypes.CDLL:
    # wrk runs its scripts with LuaJIT; the shared library comes with Debian's wrk package.
    try:
        lib = ctypes.CDLL("libluajit-5.1.so.2")
    except OSError as exc:
        pytest.skip(f"libluajit-5.1 not available: {exc}")
    lib.luaL_newstate.restype = ctypes.c_void_p
    lib.luaL_openlibs.argtypes = [ctypes.c_void_p]
    lib.luaL_loadstring.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.lua_pcall.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.lua_tolstring.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.lua_tolstring.restype = ctypes.c_char_p
    lib.lua_close.argtypes = [ctypes.c_void_p]
    return lib


def test_browser_json_is_exact_and_nginx_safe() -> None:
    text = _load("workloads").browser_json()
    assert len(text.encode()) == 2048
    assert json.loads(text)["items"]
    assert not set("$\\'") & set(text)


@pytest.mark.parametrize("workload", ["browser", "large", "post"])
def test_wrk_script_matches_workload(workload: str) -> None:
    """Run the script under LuaJIT with a stand-in for wrk's table and compare with the workload."""
    w = _load("workloads").WORKLOADS[workload]
    assert w.script is not None and w.script.is_file()
    lib = _lua()
    chunk = f"""
        wrk = {{method = "GET", path = "/", headers = {{}}}}
        dofile({json.dumps(str(w.script))})
        local n = 0
        for _ in pairs(wrk.headers) do n = n + 1 end
        return string.format("%s|%s|%d|%d", wrk.method, wrk.path, wrk.body and #wrk.body or 0, n)
    """
    state = lib.luaL_newstate()
    try:
        lib.luaL_openlibs(state)
        rc = lib.luaL_loadstring(state, chunk.encode()) or lib.lua_pcall(state, 0, 1, 0)
        raw = lib.lua_tolstring(state, -1, None)
        result = raw.decode() if raw is not None else "(no string result)"
    finally:
        lib.lua_close(state)
    assert rc == 0, result
    method, path, body, headers = result.split("|")
    assert (method, path, int(body)) == (w.method, w.path, w.request_bytes)
    # wrk adds Host, and Content-Length when there is a body.
    assert int(headers) + 1 + (1 if w.request_bytes else 0) == w.request_headers


@pytest.mark.parametrize("workload", ["hello", "browser", "large", "post"])
def test_origin_config_is_valid(tmp_path: Path, workload: str) -> None:
    nginx = _load_rig().find_tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed")
    w = _load("workloads").WORKLOADS[workload]
    argv = _load("proxy_peers").nginx_upstream_argv(nginx, tmp_path, 1, w.origin_locations(tmp_path))
    proc = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr


def test_haproxy_config() -> None:
    peers = _load("proxy_peers")
    # Without the binary the peer is listed as skipped with the reason, never started.
    missing = peers.haproxy_peer(None, "haproxy is not installed")
    assert (missing.build, missing.unavailable) == (None, "haproxy is not installed")
    cfg = peers.haproxy_cfg(40001, 40002)
    for line in ("nbthread 1", "mode http", "option http-keep-alive", "http-reuse always"):
        assert re.search(rf"^\s*{line}$", cfg, re.MULTILINE), line
    assert "bind 127.0.0.1:40001" in cfg
    assert "server origin 127.0.0.1:40002" in cfg
    assert not re.search(r"^\s*log\b", cfg, re.MULTILINE)
    haproxy = _load_rig().find_tool("haproxy")
    if haproxy is None:
        return
    # -c only parses the file: nothing binds or starts.
    check = subprocess.run(
        [haproxy, "-c", "-f", "/dev/stdin"],
        input=cfg,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
