"""Worker malloc settings: large, varied buffers (socket reads, body chunks) are reused from the
heap instead of being mapped, faulted in and unmapped each time."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CYCLES = """
import resource, sys
from pulsegate.runtime.malloc import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(200):
    size = (64 + (i * 37) % 448) << 10  # 64-512 KiB, varied like socket reads
    buf = bytearray(size)
    buf[::4096] = b"x" * len(buf[::4096])  # touch every page
    del buf
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, timeout=30, check=True
    )
    return int(out.stdout)


def test_large_buffers_are_reused_not_faulted_in_again() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc: no mallopt to tune")
    default, tuned = page_faults("default"), page_faults("tuned")
    print(f"\npage faults over 200 large allocations: default {default}, tuned {tuned}")
    assert tuned * 4 < default
