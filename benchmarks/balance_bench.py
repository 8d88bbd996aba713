"""How evenly the worker processes share load: ``supervisor.listen_mode`` inherit vs reuseport.

Starts ``pulsegate run`` with 2 workers in each mode (not pinned), an nginx origin, and wrk; then
reads each worker's request count from the admin API. Reports requests/s and each worker's share
(an even split is 50/50). Bounded: ``--duration`` seconds of load per mode and run.

    .venv/bin/python benchmarks/balance_bench.py --connections 64 --duration 5 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_peers as peers
import proxy_rig as rig

MODES = ("inherit", "reuseport")


def worker_counts(admin_port: int) -> list[int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/api/workers", timeout=10) as resp:
        return [int(w["requests_total"]) for w in json.load(resp)["workers"]]


def one_run(
    mode: str, workdir: Path, tools: tuple[str, str], connections: int, duration: int
) -> dict[str, object]:
    nginx, wrk = tools
    upstream_port, port = rig.free_port(), rig.free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    origin = subprocess.Popen(peers.nginx_upstream_argv(nginx, workdir / "upstream", upstream_port))
    conf = workdir / "gw.yaml"
    conf.write_text(
        peers.pulsegate_yaml(port, upstream_port, 2)
        + f"supervisor: {{listen_mode: {mode}}}\nlogging: {{path: {workdir / 'events.log'}}}\n"
    )
    gw = subprocess.Popen(
        [sys.executable, "-m", "pulsegate", "run", "-c", str(conf)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert gw.stdout is not None
        gw.stdout.readline()  # listening
        admin_port = int(gw.stdout.readline().rsplit(":", 1)[1])
        before = worker_counts(admin_port)
        out = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{duration}s", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=duration + 30,
            check=True,
        ).stdout
        rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
        # Snapshots are pushed once a second: wait until the counts stop moving.
        deadline, counts = time.monotonic() + 5, worker_counts(admin_port)
        while time.monotonic() < deadline:
            time.sleep(1.1)
            again = worker_counts(admin_port)
            if again == counts:
                break
            counts = again
        served = [c - b for c, b in zip(counts, before, strict=True)]
        total = sum(served) or 1
        return {"mode": mode, "rps": rps, "shares": [round(100 * s / total, 1) for s in served]}
    finally:
        gw.terminate()
        gw.wait(30)
        if gw.stdout is not None:
            gw.stdout.close()
        origin.terminate()
        origin.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    nginx, wrk = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("wrk")
    if wrk is None or not Path(nginx).exists():
        print("SKIP: needs nginx (origin) and wrk")
        return 0
    work = peers.BENCH_DIR / ".work" / "balance"
    for i in range(args.repeat):
        for mode in MODES:
            r = one_run(mode, work / f"{mode}-{i}", (nginx, wrk), args.connections, args.duration)
            print(f"{r['mode']:>9}  {r['rps']:>9.0f} req/s  worker shares {r['shares']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
