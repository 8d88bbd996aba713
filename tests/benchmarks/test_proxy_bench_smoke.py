"""Smoke test for benchmarks/proxy_bench.py: a tiny real run must print the table with an nginx row.

The benchmark needs nginx and wrk (Debian packages). The script installs them when it can; when it
cannot it exits 77 and says why, and this test skips with that reason instead of failing.
"""

from __future__ import annotations

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
def _load_rig() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the helper module by path. dataclasses
    # look their module up in sys.modules while the class is built, so register it first.
    name = "_pulsegate_bench_proxy_rig"
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "proxy_rig.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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
    # The script bounds its own installs (75 s) and each run (1 s + readiness 10 s per peer).
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--install-timeout", "75", "--json", str(out_json)],
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

    out = proc.stdout
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
    assert measured | set(doc["skipped"]) == {"nginx", "pulsegate", "node-http-proxy", "node-undici"}
