"""CI-safe guard for the per-request Python path: printed, asserted only against a generous ceiling.

The real gate is the side-by-side benchmark (benchmarks/proxy_bench.py); this catches an order-of-
magnitude regression (say, a per-request log call or an accidental O(n) scan) on any machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import hotpath_bench


def test_hot_path_python_cost_is_printed_and_sane() -> None:
    ns = min(hotpath_bench.measure(20_000, hotpath_bench.REQUEST) for _ in range(2))
    print(f"\nhot path: {ns / 1000:.2f} us of Python per proxied request (wrk-style GET)")
    assert ns < 150_000, "per-request Python cost regressed by an order of magnitude"
