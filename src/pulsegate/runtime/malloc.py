"""glibc malloc settings for a worker: keep large body buffers in the heap instead of mapping and
unmapping them for every read.

Why: a body chunk of 128 KiB or more is above glibc's initial mmap threshold, so each one is a
fresh ``mmap`` (page faults and memory-cgroup charging on first touch) and an ``munmap`` when it is
freed; heap memory above the trim threshold is handed back and faulted in again the same way. With
one-megabyte responses that was half of the worker's CPU (perf: ``exc_page_fault`` under httptools'
body copy). Raising both thresholds lets freed chunks be reused while still hot. Measured on the
benchmark rig, 1 MiB responses: 785 -> 887 requests/s at the same CPU (docs/benchmarks.md).

The trim threshold bounds what a quiet worker keeps: at most that much freed memory above the heap's
live top stays resident.

Example (on glibc):
    >>> tune_malloc()
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20


def tune_malloc(*, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Apply the thresholds; False where the C library has no ``mallopt`` (not glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
