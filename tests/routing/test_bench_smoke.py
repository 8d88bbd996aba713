"""benchmarks/routing_bench.py --quick runs, checks its own answers and prints the report format.

Timing is not asserted here (shared CI machines are noisy); ``make bench-routing`` enforces it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "routing_bench.py"


def test_quick_run_reports_every_size_and_a_verdict() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=50, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^call\+loop overhead \(no-op function\): \d+ ns/lookup$", out, re.M)
    assert re.search(r"^\s*routes\s+build_ms\s+ns/lookup$", out, re.M)
    sizes = [int(m[1]) for m in re.finditer(r"^\s*(\d+)\s+\d+\.\d\s+\d+$", out, re.M)]
    assert sizes == [10, 100, 1000, 10000]
    assert re.search(r"^ratio 10000/10: \d+\.\d\d \(limit 2\.00\)$", out, re.M)
    assert re.search(r"^(PASS|FAIL) \(quick run: verdict not enforced\)$", out.splitlines()[-1])
