"""pulsegate's load generator side by side with wrk, against the same nginx origin.

    .venv/bin/python benchmarks/load_bench.py [--duration 10] [--connections 64] [--moderate 4]

The origin (nginx, one worker) runs on the last usable core and the generator under test on the
first, one at a time. It prints:
- closed-model throughput at ``--connections`` connections: pulsegate (1 process) vs wrk
  (1 thread), and the ratio (the target is >= 0.5);
- p50 at a moderate load (``--moderate`` connections, closed model, both tools), and whether they
  agree within 20 %.
Every run is bounded by ``--duration``; nginx and wrk come from apt (installed when missing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import proxy_peers as peers
import proxy_rig as rig
from proxy_bench import git_revision, log


def pulsegate_closed(
    children: rig.Children, url: str, *, connections: int, duration: int, cpu: int
) -> tuple[float, float]:
    """(requests/s, p50 ms) of ``pulsegate load closed`` with one generator process on ``cpu``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        argv = [
            str(Path(sys.executable).parent / "pulsegate"),
            "load",
            "closed",
            url,
            "--connections",
            str(connections),
            "--duration",
            f"{duration}s",
            "--processes",
            "1",
            "--quiet",
            "--json",
            out.name,
        ]
        child = children.spawn(f"load-{time.monotonic_ns()}", argv, cpu=cpu)
        code = child.popen.wait(timeout=duration + 60)
        children.stop(child, grace_s=1.0)
        if code != 0:
            raise RuntimeError(f"pulsegate load exited {code}: {child.log_tail()}")
        report = json.loads(Path(out.name).read_bytes())
    return float(report["rate_achieved"]), float(report["latency_ms"]["p50"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--moderate", type=int, default=4, help="connections for the p50 comparison")
    args = ap.parse_args()
    nginx, wrk = rig.find_tool("nginx"), rig.find_tool("wrk")
    if nginx is None or wrk is None:
        problem = rig.apt_install(["nginx-light", "wrk"], 300)
        nginx, wrk = rig.find_tool("nginx"), rig.find_tool("wrk")
        if nginx is None or wrk is None:
            log(f"nginx or wrk missing and not installable: {problem}")
            return 77
    cpus = rig.usable_cpus()
    gen_cpu, origin_cpu = cpus[0], cpus[-1]
    log(f"load generator benchmark, tree {git_revision()}: {' '.join(sys.argv)}")
    with tempfile.TemporaryDirectory() as tmp, rig.Children(Path(tmp), taskset=None) as children:
        port = rig.free_port()
        origin = children.spawn(
            "nginx", peers.nginx_upstream_argv(nginx, Path(tmp) / "origin", port), cpu=origin_cpu
        )
        problem = rig.wait_http_ready(origin, port, peers.UPSTREAM_BODY, 10.0)
        if problem:
            log(problem)
            return 1
        url = f"http://127.0.0.1:{port}/"
        rows = []
        for conns in (args.connections, args.moderate):
            w = rig.run_wrk(
                children, wrk, url, duration_s=args.duration, connections=conns, threads=1, cpu=gen_cpu
            )
            rps, p50 = pulsegate_closed(children, url, connections=conns, duration=args.duration, cpu=gen_cpu)
            rows.append((conns, w.rps, w.latency_ms["50"], rps, p50))
    head = f"{'connections':>11} {'wrk req/s':>11} {'wrk p50':>9} {'pulsegate req/s':>16} {'p50':>9}"
    print(f"\n{head} {'ratio':>6}")
    for conns, wrps, wp50, prps, pp50 in rows:
        print(f"{conns:>11} {wrps:>11,.0f} {wp50:>7.3f}ms {prps:>16,.0f} {pp50:>7.3f}ms {prps / wrps:>6.2f}")
    conns, wrps, _, prps, _ = rows[0]
    print(f"\nclosed-model throughput at {conns} connections: {prps / wrps:.2f}x wrk (target >= 0.50)")
    _, _, wp50, _, pp50 = rows[1]
    agree = abs(pp50 - wp50) / wp50 if wp50 else float("inf")
    both = f"wrk {wp50:.3f} ms, pulsegate {pp50:.3f} ms"
    print(f"p50 at {args.moderate} connections: {both}, differ by {agree:.0%} (target within 20%)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.TimeoutExpired:
        sys.exit(1)
