"""Route table lookup cost vs table size: 10,000 routes must cost < 2x what 10 routes cost.

Usage:
    python benchmarks/routing_bench.py            # full run (~10 s), exit 1 on FAIL
    python benchmarks/routing_bench.py --quick    # smoke run: same output, verdict not enforced
    python benchmarks/routing_bench.py --detail   # also ns per request kind, 10 and 10,000 routes

Every table holds the same 10 "core" routes (prefix/exact paths on a few exact hosts, wildcard
hosts, method- and header-conditioned rules, and the same 3 regex rules) plus filler routes up
to the size: mostly prefix and exact paths spread over the same hosts, some nested under core
prefixes, a few more wildcard hosts and conditioned rules. The same fixed mix of hitting and
missing requests is timed against each table (results are checked first), best of several
repeats, sizes interleaved so background noise hits them alike.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pulsegate.routing import RouteRule, RouteTable

SIZES = (10, 100, 1_000, 10_000)
LIMIT = 2.0
HOSTS = ("api.example.com", "www.example.com", "static.example.com", "admin.example.com")

Headers = Sequence[tuple[bytes, bytes]]
Request = tuple[bytes, bytes, bytes, Headers]

BROWSER_HEADERS: Headers = (
    (b"Host", b"www.example.com"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"),
    (b"Accept", b"text/html,application/xhtml+xml"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Connection", b"keep-alive"),
    (b"Cookie", b"session=abc123"),
    (b"X-Beta", b"1"),
)
API_HEADERS: Headers = (
    (b"host", b"api.example.com"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer xyz"),
    (b"content-length", b"42"),
)

CORE: list[RouteRule[str]] = [
    RouteRule("users", "p", host="api.example.com", path_prefix="/v1/users/"),
    RouteRule("health", "p", host="api.example.com", path="/v1/health"),
    RouteRule("v1-post", "p", host="api.example.com", path_prefix="/v1/", methods=("POST", "PUT")),
    RouteRule("v1", "p", host="api.example.com", path_prefix="/v1/"),
    RouteRule("assets", "p", host="*.example.com", path_prefix="/assets/"),
    RouteRule("apps", "p", host="*.apps.example.org"),
    RouteRule("beta", "p", path_prefix="/beta/", headers=(("X-Beta", "1"),)),
    RouteRule("profile", "p", path_regex=r"/u/[0-9]+/profile$"),
    RouteRule("blog", "p", host="www.example.com", path_regex=r"/blog/\d{4}/"),
    RouteRule("images", "p", path_regex=r"/files/.*\.(png|jpg)$"),
]

# (method, host, path, headers, expected route name or None)
REQUESTS: list[tuple[bytes, bytes, bytes, Headers, str | None]] = [
    (b"GET", b"api.example.com", b"/v1/users/42", API_HEADERS, "users"),
    (b"GET", b"api.example.com", b"/v1/health", API_HEADERS, "health"),
    (b"POST", b"api.example.com", b"/v1/orders", API_HEADERS, "v1-post"),
    (b"GET", b"api.example.com", b"/v1/orders/7", API_HEADERS, "v1"),
    (b"GET", b"cdn.example.com", b"/assets/app.js", BROWSER_HEADERS, "assets"),
    (b"GET", b"x.eu.apps.example.org", b"/anything", BROWSER_HEADERS, "apps"),
    (b"GET", b"www.example.com", b"/beta/new", BROWSER_HEADERS, "beta"),
    (b"GET", b"example.net", b"/u/123/profile", BROWSER_HEADERS, "profile"),
    (b"GET", b"www.example.com", b"/blog/2024/hello", BROWSER_HEADERS, "blog"),
    (b"GET", b"static.example.com", b"/files/a/b.png", BROWSER_HEADERS, "images"),
    (b"GET", b"unknown.org", b"/nothing/here", BROWSER_HEADERS, None),
    (b"GET", b"api.example.com", b"/v2/users", API_HEADERS, None),
    (b"GET", b"", b"/", (), None),
    (b"DELETE", b"admin.example.com", b"/svc-missing/x", API_HEADERS, None),
]


def filler(k: int) -> RouteRule[str]:
    """The k-th filler route: distinct path keys that interleave with the core ones when sorted."""
    name = f"f{k}"
    host: str | None = (*HOSTS, None)[k % 5]
    if k % 500 == 499:  # a few more wildcard hosts
        return RouteRule(name, "p", host=f"*.t{k}.example.net", path_prefix=f"/svc{k:05d}/")
    if k % 50 == 7:  # a few method-conditioned rules
        return RouteRule(name, "p", host=host, path_prefix=f"/svc{k:05d}/", methods=("POST",))
    if k % 50 == 17:  # a few header-conditioned rules
        return RouteRule(name, "p", host=host, path_prefix=f"/svc{k:05d}/", headers=(("X-Tenant", "t"),))
    if k % 10 == 3:  # nested under a core prefix
        return RouteRule(name, "p", host="api.example.com", path_prefix=f"/v1/users/{k:05d}/")
    if k % 3 == 0:
        return RouteRule(name, "p", host=host, path=f"/svc{k:05d}/item")
    return RouteRule(name, "p", host=host, path_prefix=f"/svc{k:05d}/")


def rules(size: int) -> list[RouteRule[str]]:
    return CORE + [filler(k) for k in range(size - len(CORE))]


def time_lookups(
    fn: Callable[[bytes, bytes, bytes, Headers], object], iterations: int, reqs: list[Request] | None = None
) -> int:
    """Nanoseconds for ``iterations`` passes over the request mix (or over ``reqs``)."""
    if reqs is None:
        reqs = [(m, h, p, hd) for m, h, p, hd, _ in REQUESTS]
    t0 = time.perf_counter_ns()
    for _ in range(iterations):
        for m, h, p, hd in reqs:
            fn(m, h, p, hd)
    return time.perf_counter_ns() - t0


def _noop(method: bytes, host: bytes, path: bytes, headers: Headers) -> None:
    return None


def print_detail(tables: dict[int, RouteTable[str]], iterations: int, repeats: int) -> None:
    small, large = SIZES[0], SIZES[-1]
    print(f"{'request':<52} {'expect':>8} {small:>7} {large:>7}  (ns/lookup)")
    for m, h, p, hd, want in REQUESTS:
        one: list[Request] = [(m, h, p, hd)] * 16
        ns = {
            size: min(time_lookups(tables[size].match, iterations // 4, one) for _ in range(repeats))
            / (len(one) * (iterations // 4))
            for size in (small, large)
        }
        label = f"{m.decode()} {h.decode() or '-'} {p.decode()}"
        print(f"{label:<52} {want or 'miss':>8} {ns[small]:>7.0f} {ns[large]:>7.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few iterations, never fails")
    parser.add_argument("--detail", action="store_true", help="also time each request kind on its own")
    args = parser.parse_args(argv)
    iterations, repeats = (300, 2) if args.quick else (20_000, 7)

    tables: dict[int, RouteTable[str]] = {}
    build_ms: dict[int, float] = {}
    for size in SIZES:
        rs = rules(size)
        t0 = time.perf_counter_ns()
        tables[size] = RouteTable(rs)
        build_ms[size] = (time.perf_counter_ns() - t0) / 1e6
        for m, h, p, hd, want in REQUESTS:  # make sure hits hit and misses miss
            got = tables[size].match(m, h, p, hd)
            if (got.name if got else None) != want:
                print(f"size {size}: {m!r} {h!r} {p!r} -> {got}, expected {want}", file=sys.stderr)
                return 2

    lookups = iterations * len(REQUESTS)
    best = dict.fromkeys(SIZES, float("inf"))
    base = float("inf")
    for _ in range(repeats):
        base = min(base, time_lookups(_noop, iterations) / lookups)
        for size in SIZES:
            best[size] = min(best[size], time_lookups(tables[size].match, iterations) / lookups)

    impl = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"routing benchmark: {impl}, {len(REQUESTS)} requests x {iterations} x best of {repeats}")
    print(f"call+loop overhead (no-op function): {base:.0f} ns/lookup")
    print(f"{'routes':>8} {'build_ms':>10} {'ns/lookup':>10}")
    for size in SIZES:
        print(f"{size:>8} {build_ms[size]:>10.1f} {best[size]:>10.0f}")
    if args.detail:
        print_detail(tables, iterations, repeats)
    ratio = best[SIZES[-1]] / best[SIZES[0]]
    print(f"ratio {SIZES[-1]}/{SIZES[0]}: {ratio:.2f} (limit {LIMIT:.2f})")
    ok = ratio < LIMIT
    if args.quick:
        print(("PASS" if ok else "FAIL") + " (quick run: verdict not enforced)")
        return 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
