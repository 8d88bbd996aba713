"""Nanoseconds per ``pick()`` for every balancer, with 3 and 50 targets.

Run: ``.venv/bin/python benchmarks/balancing_bench.py`` (about 20 s). Prints a Markdown table
(the one in ``docs/balancing.md``). Each figure is the best of 5 runs of a tight loop calling the
bound ``pick`` method, i.e. what the proxy pays per call, Python call overhead included.

Scenarios:
- ``equal``: all weights 1, all available, under load (``inflight`` 1..8, ``ewma_us`` 300..3000);
- ``weighted``: weights 1..5, same load;
- ``idle``: equal weights, nothing in flight (least_conn stops at the first idle target);
- ``one down``: weights 1..5, one target unavailable (round robin runs nginx's O(N) loop);
- ``equal, one down``: equal weights, one target unavailable (round robin rotates past it).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import timeit
from collections.abc import Callable

from pulsegate.balancing import (
    BALANCER_KINDS,
    HashKeyFunc,
    Target,
    compile_hash_key,
    key_hash,
    make_balancer,
)

NUMBER = 100_000
REPEAT = 5


def make_targets(n: int, *, weighted: bool, loaded: bool, seed: int = 1) -> list[Target]:
    rng = random.Random(seed)
    targets = []
    for i in range(n):
        t = Target(f"10.0.{i // 250}.{i % 250 + 1}:8080", weight=rng.randint(1, 5) if weighted else 1)
        if loaded:
            t.inflight = rng.randint(1, 8)
            t.ewma_us = rng.uniform(300.0, 3000.0)
        targets.append(t)
    return targets


def ns_per_call(fn: Callable[[], object]) -> float:
    return min(timeit.repeat(fn, number=NUMBER, repeat=REPEAT)) / NUMBER * 1e9


def bench_pick(kind: str, targets: list[Target]) -> float:
    balancer = make_balancer(kind, targets, rng=random.Random(7))
    pick = balancer.pick
    if kind == "consistent_hash":
        # Varying keys; the cost of the lambda and of cycling through the keys is subtracted.
        next_key = itertools.cycle([f"user-{i}".encode() for i in range(1024)]).__next__
        overhead = ns_per_call(lambda: next_key())  # noqa: PLW0108 -- the lambda frame is the point
        return ns_per_call(lambda: pick(next_key())) - overhead
    return ns_per_call(pick)


def main() -> None:
    scenarios = {
        "equal": {"weighted": False, "loaded": True, "down": False},
        "weighted": {"weighted": True, "loaded": True, "down": False},
        "idle": {"weighted": False, "loaded": False, "down": False},
        "one down": {"weighted": True, "loaded": True, "down": True},
        "equal, one down": {"weighted": False, "loaded": True, "down": True},
    }
    print("| algorithm | scenario | 3 targets | 50 targets |")
    print("|---|---|---:|---:|")
    for kind in BALANCER_KINDS:
        for name, sc in scenarios.items():
            row = []
            for n in (3, 50):
                targets = make_targets(n, weighted=sc["weighted"], loaded=sc["loaded"])
                if sc["down"]:
                    targets[1].available = False
                row.append(f"{bench_pick(kind, targets):.0f} ns")
            print(f"| {kind} | {name} | {' | '.join(row)} |")

    print()
    key = b"user-1234567"
    print(f"key_hash (crc32 + 64-bit mix): {ns_per_call(lambda: key_hash(key)):.0f} ns")
    blake = hashlib.blake2b
    from_bytes = int.from_bytes
    alt = ns_per_call(lambda: from_bytes(blake(key, digest_size=8).digest(), "little"))
    print(f"alternative, blake2b(digest_size=8) -> int: {alt:.0f} ns")
    headers = [
        (b"Host", b"api.example.com"),
        (b"User-Agent", b"curl/8.5.0"),
        (b"Accept", b"*/*"),
        (b"Accept-Encoding", b"gzip"),
        (b"X-Request-Id", b"0f1e2d3c"),
        (b"X-User", b"alice"),
        (b"Cookie", b"theme=dark; lang=en; session=abc123def456"),
    ]
    for spec in ("client_ip", "header:x-user", "cookie:session"):
        get = compile_hash_key(spec)

        def extract(get: HashKeyFunc = get) -> bytes | None:
            return get(b"10.1.2.3", b"/v1/x", headers)

        print(f"hash key {spec} (7 headers): {ns_per_call(extract):.0f} ns")


if __name__ == "__main__":
    main()
