"""Smoke test for benchmarks/body_bench.py: 32 MiB each way must stream through pulsegate with exact
byte counts, and through nginx too when it is installed (the script skips it, saying why, if not)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "body_bench.py"
SIZE = 32 * 1024 * 1024


@pytest.mark.timeout(60)
def test_body_bench_smoke(tmp_path: Path) -> None:
    out_json = tmp_path / "body.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--bytes", str(SIZE), "--timeout", "30", "--json", str(out_json)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert re.search(r"^direction\s+proxy\s+MiB/s\s+RSS base MiB\s+peak growth MiB\s", out, re.MULTILINE), out

    nginx_skipped = re.search(r"^nginx: skipped \((.+)\)$", out, re.MULTILINE)
    proxies = ["pulsegate"] if nginx_skipped else ["pulsegate", "nginx"]
    for proxy in proxies:
        for direction in ("download", "upload"):
            row = rf"^{direction}\s+{proxy}\s+(\d+)\s+[\d.]+\s+-?[\d.]+\s+.*\s{SIZE} verified\s+(ok|OVER)$"
            assert re.search(row, out, re.MULTILINE), f"no verified {direction} row for {proxy}:\n{out}"
    if nginx_skipped:
        print(f"nginx rows skipped: {nginx_skipped.group(1)}")

    doc = json.loads(out_json.read_text())
    measured = {(r["proxy"], r["direction"]) for r in doc["results"] if r["verified"]}
    assert measured == {(p, d) for p in proxies for d in ("download", "upload")}
    assert all(r["bytes"] == SIZE and r["error"] is None for r in doc["results"])
