"""``pulsegate load`` as operators run it: a real subprocess against a real local server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import origin_thread


def ok(req: Request) -> Reply:
    return Reply(200, body=b"ok")


def load(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulsegate", "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(60)
def test_sustained_run_writes_reports_and_gates_on_the_slo(tmp_path: Path) -> None:
    with origin_thread(ok) as target:
        url = f"http://{target}/x"
        good = load("sustained", url, "--rate", "100", "--duration", "2s", "--processes", "1",
                    "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"),
                    "--slo", "p99<500ms,errors<1%")  # fmt: skip
        assert good.returncode == 0, good.stderr
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["schema"] == 1 and report["scenario"] == "sustained"
        assert report["requests"] == 200 and report["errors"] == {}
        assert report["rate_target"] == 100.0 and len(report["timeline"]) == 2
        assert set(report["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max"}
        assert report["slo"] == {"p99<500ms": True, "errors<1%": True}
        assert "<svg" in (tmp_path / "r.html").read_text()
        assert "p99" in good.stdout and "PASS" in good.stdout
        missed = load("sustained", url, "--rate", "50", "--duration", "1s", "--processes", "1",
                      "--slo", "p50<1us")  # fmt: skip
        assert missed.returncode == 1, missed.stderr
        assert "FAIL" in missed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sustained", "ftp://127.0.0.1/", "--rate", "10"], "invalid URL"),
        (["sustained", "http://127.0.0.1:1/", "--rate", "10", "--slo", "p99<<3"], "invalid SLO"),
        (["sustained", "http://127.0.0.1:1/", "--rate", "10", "--duration", "soon"], "--duration"),
        (["closed", "http://10.1.2.3:80/"], "not a loopback address"),
        (["sustained", "http://127.0.0.1:1/", "--rate", "10", "-H", "nocolon"], "-H"),
        (["run", "/nonexistent/scenario.yaml"], "nonexistent"),
        (
            ["stress", "http://127.0.0.1:1/", "--start", "10", "--step", "5", "--error-threshold", "0.5"],
            "SLO",
        ),
        (["stress", "http://127.0.0.1:1/", "--start", "10", "--step", "5", "--max-rate", "5"], "max_rate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    res = load(*args, timeout=30)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert res.stdout == ""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "scenario", [["sustained", "--rate", "100"], ["closed", "--connections", "4"]], ids=["open", "closed"]
)
def test_ctrl_c_stops_promptly_and_prints_the_partial_report(tmp_path: Path, scenario: list[str]) -> None:
    served = threading.Event()
    count = [0]

    def counting(req: Request) -> Reply:
        count[0] += 1
        if count[0] == 150:
            served.set()  # well into the run: time to interrupt it
        return Reply(200, body=b"ok")

    with origin_thread(counting) as target:
        kind, *opts = scenario
        proc = subprocess.Popen(
            [sys.executable, "-m", "pulsegate", "load", kind, f"http://{target}/", *opts,
             "--duration", "60s", "--processes", "1", "--json", str(tmp_path / "r.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert served.wait(30)
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - stopped
    assert proc.returncode == 130, err
    assert took < 5.0  # not the rest of the 60 s
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True and report["requests"] >= 150
    assert report["duration_s"] < 30
    assert "requests" in out


@pytest.mark.timeout(90)
def test_stress_finds_the_knee() -> None:
    """A server that serves one request at a time (5 ms each): about 200/s at most, so a ramp of
    50, 100, 150, ... with p99<50ms breaks somewhere above 100 and below 400."""
    import asyncio

    lock = asyncio.Lock()

    async def serial(req: Request) -> Reply:
        async with lock:
            await asyncio.sleep(0.005)
        return Reply(200, body=b"ok")

    with origin_thread(serial) as target:
        res = load("stress", f"http://{target}/", "--start", "50", "--step", "50", "--step-duration", "2s",
                   "--max-steps", "8", "--processes", "1", "--slo", "p99<50ms", "--json", "/dev/stdout",
                   "--quiet", timeout=80)  # fmt: skip
    assert res.returncode == 1  # the SLO broke at the last step
    report = json.loads(res.stdout[res.stdout.index('{"schema"') :])
    # 50/s is easy for it even on a slow machine; 400/s is twice what it can serve.
    assert report["knee_rate"] is not None and 50 <= report["knee_rate"] < 400, report["steps"]
    assert report["broke_at"] == report["knee_rate"] + 50
    assert [s["ok"] for s in report["steps"]][-1] is False


@pytest.mark.timeout(60)
def test_scenario_file_with_stages_and_a_weighted_mix(tmp_path: Path) -> None:
    seen: dict[str, int] = {}

    def record(req: Request) -> Reply:
        path = req.path.decode()
        seen[path] = seen.get(path, 0) + 1
        return Reply(200, body=b"ok")

    with origin_thread(record) as target:
        (tmp_path / "s.yaml").write_text(
            f"""
name: ramp-and-hold
url: http://{target}/a
requests:
  - {{url: http://{target}/a, weight: 3}}
  - {{url: http://{target}/b, method: POST, body: hello, weight: 1}}
connections: 8
stages:
  - {{duration: 1s, target: 200}}
  - {{duration: 1s, target: 200}}
slo: "errors<1%"
"""
        )
        res = load("run", str(tmp_path / "s.yaml"), "--processes", "1", "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scenario"] == "run" and report["slo"] == {"errors<1%": True}
    # A ramp 0 -> 200/s over 1 s (100 requests) and a hold at 200/s (200 requests).
    assert report["requests"] == pytest.approx(300, abs=3)
    assert seen["/a"] + seen["/b"] == report["requests"]
    assert 0.65 <= seen["/a"] / report["requests"] <= 0.85  # weights 3:1


@pytest.mark.timeout(60)
def test_a_generator_that_cannot_keep_the_rate_says_so(tmp_path: Path) -> None:
    """Two connections to a 50 ms upstream carry 40 requests/s at most: asked for 200/s, the run
    reports late sends and a lower achieved rate instead of quietly sending less."""
    import asyncio

    async def slow(req: Request) -> Reply:
        await asyncio.sleep(0.05)
        return Reply(200, body=b"ok")

    with origin_thread(slow) as target:
        res = load("sustained", f"http://{target}/", "--rate", "200", "--duration", "2s",
                   "--connections", "2", "--processes", "1", "--timeout", "20s",
                   "--json", str(tmp_path / "r.json"))  # fmt: skip
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["late_sends"] + report["missed_sends"] > 100, report
    assert report["rate_achieved"] < 0.6 * report["rate_target"]
    # Latency counts from the planned send time: the queue's wait is in it.
    assert report["latency_ms"]["p50"] > 200
    assert "late sends" in res.stdout
