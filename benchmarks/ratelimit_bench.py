"""Cost of SharedBuckets.take(): one process (one hot key, many keys, eviction churn), the share of
it spent in fcntl record locks, and two processes contending on one key vs on separate keys.

Usage:
    python benchmarks/ratelimit_bench.py            # ~5 s
    python benchmarks/ratelimit_bench.py --quick    # ~2 s smoke run

Single-process rows are the best of several timed batches (µs per call). Multi-process rows run
each worker flat out for a fixed wall time and report µs per take as each worker saw it, plus
the combined takes per second; with one key every take serialises on the same lock.
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import platform
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pulsegate.health import ratelimit
from pulsegate.health.ratelimit import SharedBuckets

RATE, BURST = 1000.0, 100.0
FLOOD = 300_000


def best_us(fn: Callable[[int], None], n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def single_process(n: int, repeats: int) -> list[tuple[str, float]]:
    table = SharedBuckets.create(slots=65536)
    take, mono = table.take, time.monotonic
    many = [b"client-%d" % i for i in range(10_000)]
    flood = [b"flood-%d" % i for i in range(FLOOD)]

    def one_key(k: int) -> None:
        for _ in range(k):
            take(b"hot", RATE, BURST, mono())

    def many_keys(k: int) -> None:
        for i in range(k):
            take(many[i % 10_000], RATE, BURST, mono())

    flood_at = [0]

    def evicting(k: int) -> None:  # cycling FLOOD keys through 65,536 slots: every take evicts
        start = flood_at[0]
        for i in range(start, start + k):
            take(flood[i % FLOOD], RATE, BURST, mono())
        flood_at[0] = start + k

    for key in flood[:100_000]:
        take(key, RATE, BURST, mono())  # fill the table so the eviction row really evicts
    fd = os.open(table.path, os.O_RDWR)

    def lock_pair(k: int) -> None:
        for _ in range(k):
            fcntl.lockf(fd, fcntl.LOCK_EX, 256, 64)
            fcntl.lockf(fd, fcntl.LOCK_UN, 256, 64)

    rows = [
        ("take, 1 key", best_us(one_key, n, repeats)),
        ("take, 10,000 keys", best_us(many_keys, n, repeats)),
        ("take, 300k keys in 65,536 slots (evicting)", best_us(evicting, n, repeats)),
        ("part of every take: lockf LOCK_EX + LOCK_UN", best_us(lock_pair, n, repeats)),
    ]
    # Same take() with the record locks stubbed out, to show what the rest costs.
    stub = types.SimpleNamespace(lockf=lambda *a: None, LOCK_EX=fcntl.LOCK_EX, LOCK_UN=fcntl.LOCK_UN)
    module_globals = vars(ratelimit)
    module_globals["fcntl"] = stub
    try:
        rows.append(("take, 10,000 keys, lockf stubbed out", best_us(many_keys, n, repeats)))
    finally:
        module_globals["fcntl"] = fcntl

    def clock(k: int) -> None:
        for _ in range(k):
            mono()

    rows.append(("part of every caller: time.monotonic()", best_us(clock, n, repeats)))
    os.close(fd)
    table.close()
    table.unlink()
    return rows


def _worker(path: str, key: bytes, barrier: Any, out: Any, seconds: float) -> None:
    table = SharedBuckets.attach(path)
    take, mono = table.take, time.monotonic
    barrier.wait(timeout=30)
    count = allowed = 0
    t0 = mono()
    deadline = t0 + seconds
    now = t0
    while now < deadline:
        allowed += take(key, RATE, BURST, now).allowed
        count += 1
        now = mono()
    out.put((count, allowed, now - t0))
    table.close()


def multi_process(keys: list[bytes], seconds: float) -> tuple[float, float, int]:
    ctx = multiprocessing.get_context("spawn")
    table = SharedBuckets.create(slots=65536)
    barrier, out = ctx.Barrier(len(keys) + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(table.path, k, barrier, out, seconds)) for k in keys]
    try:
        for p in procs:
            p.start()
        barrier.wait(timeout=30)
        got = [out.get(timeout=30 + seconds) for _ in procs]
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        table.close()
        table.unlink()
    us = max(elapsed / count * 1e6 for count, _, elapsed in got)
    per_s = sum(count / elapsed for count, _, elapsed in got)
    return us, per_s, sum(a for _, a, _ in got)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller batches, shorter windows")
    args = parser.parse_args()
    n, repeats, seconds = (20_000, 3, 0.3) if args.quick else (50_000, 3, 1.0)

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'case':<48} {'µs/take':>8}")
    for name, us in single_process(n, repeats):
        print(f"{name:<48} {us:>8.2f}")
    for label, keys in (
        ("2 processes, same key (contended)", [b"shared", b"shared"]),
        ("2 processes, different keys", [b"a", b"b"]),
    ):
        us, per_s, allowed = multi_process(keys, seconds)
        extra = f"  ({per_s / 1e3:.0f}k takes/s total, {allowed} allowed in {seconds:g} s)"
        print(f"{label:<48} {us:>8.2f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
