"""CPU per request at a fixed rate: pulsegate and nginx side by side, below the rig's ceiling.

    .venv/bin/python benchmarks/fixed_rate_bench.py [--rps-per-conn 625] [--connections 64]
        [--duration 10] [--repeat 3] [--peers nginx,pulsegate]

At the throughput ceiling (proxy_bench.py) the load core limits what a fast proxy can show. Here
every proxy gets the same fixed load, ``h2load --h1 -t1 -c64 --rps=625 -D 10`` (40,000 requests/s,
Debian's nghttp2-client), and we read the proxy's own CPU time from /proc: CPU microseconds per
request compare the proxies' efficiency directly. The proxy runs on the first usable core; h2load
and the nginx origin on the last.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import proxy_peers as peers
import proxy_rig as rig
from proxy_bench import git_revision, log

_DONE_RE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded")
_RPS_RE = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")


def run_h2load(
    children: rig.Children, h2load: str, url: str, *, rps: int, conns: int, seconds: int, cpu: int
) -> tuple[int, float]:
    """(requests that succeeded, achieved req/s) of one bounded h2load run."""
    argv = [h2load, "--h1", "-t1", f"-c{conns}", f"--rps={rps}", "-D", str(seconds), url]
    child = children.spawn(f"h2load-{time.monotonic_ns()}", argv, cpu=cpu)
    code = child.popen.wait(timeout=seconds + 60)
    children.stop(child, grace_s=1.0)
    text = child.log_path.read_text(errors="replace")
    done, rate = _DONE_RE.search(text), _RPS_RE.search(text)
    if code != 0 or done is None or rate is None:
        raise RuntimeError(f"h2load failed (code {code}): {text.strip()[-300:]}")
    return int(done.group(2)), float(rate.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rps-per-conn", type=int, default=625)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default="nginx,pulsegate")
    args = ap.parse_args()
    nginx, h2load = rig.find_tool("nginx"), rig.find_tool("h2load")
    if nginx is None or h2load is None:
        problem = rig.apt_install(["nginx-light", "nghttp2-client"], 300)
        nginx, h2load = rig.find_tool("nginx"), rig.find_tool("h2load")
        if nginx is None or h2load is None:
            log(f"nginx or h2load missing and not installable: {problem}")
            return 77
    exe = Path(sys.executable).parent / "pulsegate"
    table = {
        "nginx": peers.Peer("nginx", peers.nginx_proxy_builder(nginx, 64)),
        "pulsegate": peers.pulsegate_peer(exe, 1),
        "pulsegate-bare": peers.pulsegate_peer(exe, 1, variant="bare", name="pulsegate-bare"),
    }
    chosen = [table[name] for name in args.peers.split(",")]
    cpus = rig.usable_cpus()
    proxy_cpu, load_cpu = cpus[0], cpus[-1]
    rate = args.rps_per_conn * args.connections
    log(f"fixed-rate benchmark, tree {git_revision()}: {' '.join(sys.argv)} ({rate:,} req/s offered)")
    results: dict[str, list[tuple[float, float]]] = {p.name: [] for p in chosen}
    with tempfile.TemporaryDirectory() as tmp, rig.Children(Path(tmp), taskset=None) as children:
        upstream_port = rig.free_port()
        argv = peers.nginx_upstream_argv(nginx, Path(tmp) / "origin", upstream_port)
        origin = children.spawn("origin", argv, cpu=load_cpu)
        problem = rig.wait_http_ready(origin, upstream_port, peers.UPSTREAM_BODY, 10.0)
        if problem:
            log(problem)
            return 1
        for rep in range(args.repeat):
            for peer in chosen:
                assert peer.build is not None
                port = rig.free_port()
                child = children.spawn(
                    f"{peer.name}-{rep}", peer.build(Path(tmp) / f"{peer.name}-{rep}", port, upstream_port),
                    cpu=proxy_cpu, cwd=Path(tmp),
                )  # fmt: skip
                try:
                    why = rig.wait_http_ready(child, port, peers.UPSTREAM_BODY, 20.0)
                    if why:
                        log(f"{peer.name}: {why}")
                        return 1
                    url = f"http://127.0.0.1:{port}/"
                    run_h2load(children, h2load, url, rps=args.rps_per_conn, conns=args.connections,
                               seconds=2, cpu=load_cpu)  # fmt: skip
                    cpu0 = rig.group_cpu_seconds(child.pid)
                    done, achieved = run_h2load(
                        children, h2load, url, rps=args.rps_per_conn, conns=args.connections,
                        seconds=args.duration, cpu=load_cpu,
                    )  # fmt: skip
                    cpu_s = rig.group_cpu_seconds(child.pid) - cpu0
                finally:
                    children.stop(child)
                us = cpu_s * 1e6 / done if done else float("nan")
                results[peer.name].append((us, achieved))
                log(f"{peer.name} round {rep + 1}: {achieved:,.0f} req/s, {us:.2f} µs CPU per request")
    base = statistics.median(us for us, _ in results["nginx"]) if "nginx" in results else None
    print(f"\n{'proxy':<16} {'req/s':>9} {'CPU µs/req':>11} {'vs nginx':>9}")
    for name, rows in results.items():
        us = statistics.median(u for u, _ in rows)
        rps = statistics.median(r for _, r in rows)
        ratio = f"{us / base:.2f}x" if base else ""
        print(f"{name:<16} {rps:>9,.0f} {us:>11.2f} {ratio:>9}")
    if base is not None and "pulsegate" in results:
        us = statistics.median(u for u, _ in results["pulsegate"])
        print(f"\npulsegate CPU per request: {us / base:.2f}x nginx's (issue 6 target <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
