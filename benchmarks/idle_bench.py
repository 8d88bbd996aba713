"""Idle keep-alive connections: how much resident memory one pulsegate worker spends per idle
client connection, and whether it still answers a fresh request quickly while holding them.

One run starts an origin (nginx when installed, else a Python origin) and ``pulsegate run`` with
one worker and a long keepalive_timeout, warms it up, then opens N client connections that each
make one request and stay open, idle. It prints the worker's VmRSS (from /proc, the worker's pid
from the admin API) before and after, KiB per idle connection, the latency of fresh requests made
while the connections are held, and the RSS once they are closed again. The test
``tests/proxy/test_scale.py::test_10k_idle_keepalive_connections`` makes the same measurement with a
loose regression bound; docs/benchmarks.md records the figures.

    .venv/bin/python benchmarks/idle_bench.py [--connections 10000] [--concurrency 100]

Exit status: 0 after a measurement (also when the target is missed, unless --check), 1 on --check
failure or when the rig breaks, 2 when RLIMIT_NOFILE cannot be raised far enough, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import resource
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

import proxy_peers as peers
import proxy_rig as rig
from proxy_bench import git_revision, log

EXIT_CHECK_FAILED, EXIT_NOFILE, EXIT_INTERRUPTED = 1, 2, 130
READY_TIMEOUT_S = 10.0
TARGET_KIB = 16.0
FRESH_REQUESTS = 20
REQUEST = b"GET / HTTP/1.1\r\nHost: idle.bench\r\n\r\n"

# Used when nginx is not installed: pulsegate's own test origin, answering peers.UPSTREAM_BODY.
PYTHON_ORIGIN = """
import sys, uvloop
from pulsegate.origin import Origin, Reply

async def main() -> None:
    origin = Origin(lambda req: Reply(200, body=sys.argv[2].encode()))
    await origin.start("127.0.0.1", int(sys.argv[1]))
    await __import__("asyncio").Event().wait()

uvloop.run(main())
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=10_000, help="idle connections (default 10000)")
    p.add_argument("--concurrency", type=int, default=100, help="connections opened at once (default 100)")
    p.add_argument("--origin", choices=("auto", "nginx", "python"), default="auto", help="default auto")
    p.add_argument("--target-kib", type=float, default=TARGET_KIB, help="KiB per idle connection target")
    p.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    p.add_argument("--keep-work", action="store_true", help="keep configs and logs under benchmarks/.work")
    args = p.parse_args(argv)
    if args.connections < 1 or args.concurrency < 1:
        p.error("--connections and --concurrency must be >= 1")
    return args


def raise_nofile(needed: int) -> str | None:
    """Soft RLIMIT_NOFILE := hard (children inherit it); as root also the hard limit when too low.
    Returns why the limit cannot hold ``needed`` descriptors, or None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))  # needs CAP_SYS_RESOURCE
        except (OSError, ValueError) as exc:
            return f"RLIMIT_NOFILE hard limit {hard} < {needed} needed and cannot be raised: {exc}"
        return None
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return None


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def admin_workers(admin_port: int) -> list[dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        conn.request("GET", "/api/workers")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"GET /api/workers answered {resp.status}: {body[:200]!r}")
    workers: list[dict[str, object]] = json.loads(body)["workers"]
    return workers


def wait_reported_connections(admin_port: int, predicate: str, n: int, timeout_s: float = 10.0) -> int:
    """Poll the admin API (workers push vitals once a second) until the worker's open connections
    are ``>=`` / ``<=`` ``n``; returns the last count seen, also on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = sum(int(str(w["connections"])) for w in admin_workers(admin_port))
        if (seen >= n if predicate == ">=" else seen <= n) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


async def read_response(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ConnectionError(f"closed mid-response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ConnectionError(f"closed mid-body: {data!r}")
        body += chunk
    return head + b"\r\n\r\n" + body


async def open_idle(port: int, n: int, concurrency: int, out: list[socket.socket]) -> None:
    """Append ``n`` connections to ``out``, each after one answered request (kept alive, idle).
    Plain non-blocking sockets: a few hundred bytes each on this side, not a stream pair."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            sock = socket.socket()
            out.append(sock)  # closed by the caller, also on failure
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, REQUEST)
            resp = await read_response(loop, sock)
            if not resp.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"unexpected answer: {resp[:120]!r}")

    await asyncio.gather(*(one() for _ in range(n)))


def still_open(sock: socket.socket) -> bool:
    try:
        sock.recv(1, socket.MSG_PEEK)  # b"": closed by the gateway
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False


def fresh_request_ms(port: int) -> tuple[int, float]:
    """One GET on a new connection: (status, milliseconds including the connect)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/fresh")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    return resp.status, (time.perf_counter() - t0) * 1e3


def gateway_yaml(port: int, upstream_port: int, admin_port: int) -> str:
    """proxy_bench's pulsegate config, one worker, a known admin port and a long keep-alive."""
    cfg = yaml.safe_load(peers.pulsegate_yaml(port, upstream_port, workers=1))
    cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    cfg["limits"] = {"keepalive_timeout": "600s"}
    text: str = yaml.safe_dump(cfg)
    return text


def start_origin(children: rig.Children, workdir: Path, args: argparse.Namespace) -> tuple[rig.Child, int]:
    nginx = rig.find_tool("nginx")
    if args.origin == "nginx" and nginx is None:
        raise SystemExit("--origin nginx: nginx is not installed")
    port = rig.free_port()
    if nginx is not None and args.origin != "python":
        argv = peers.nginx_upstream_argv(nginx, workdir / "upstream", port)
    else:
        argv = [sys.executable, "-c", PYTHON_ORIGIN, str(port), peers.UPSTREAM_BODY.decode()]
    child = children.spawn("origin", argv, cpu=None)
    why = rig.wait_http_ready(child, port, peers.UPSTREAM_BODY, READY_TIMEOUT_S)
    if why:
        raise RuntimeError(f"the origin did not start: {why}\n{child.log_tail()}")
    log(f"origin: {'nginx' if argv[0] == nginx else 'python'} on port {port}")
    return child, port


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    n = args.connections
    with rig.Children(workdir, taskset=None) as children:
        _, upstream_port = start_origin(children, workdir, args)
        port, admin_port = rig.free_port(), rig.free_port()
        conf = workdir / "pulsegate.yaml"
        conf.write_text(gateway_yaml(port, upstream_port, admin_port))
        exe = Path(sys.executable).parent / "pulsegate"
        gw = children.spawn("pulsegate", [str(exe), "run", "-c", str(conf)], cpu=None)
        why = rig.wait_http_ready(gw, port, peers.UPSTREAM_BODY, READY_TIMEOUT_S)
        if why:
            raise RuntimeError(f"pulsegate did not start: {why}\n{gw.log_tail()}")
        (worker,) = admin_workers(admin_port)
        pid = int(str(worker["pid"]))

        socks: list[socket.socket] = []
        try:
            # Warm-up at the same concurrency: the upstream pool, the allocator's arenas and lazily
            # built objects exist before the baseline, so the difference is per connection.
            asyncio.run(open_idle(port, args.concurrency * 4, args.concurrency, socks))
            for s in socks:
                s.close()
            socks.clear()
            wait_reported_connections(admin_port, "<=", 0)
            before = vm_rss_kib(pid)

            t0 = time.monotonic()
            asyncio.run(open_idle(port, n, args.concurrency, socks))
            open_s = time.monotonic() - t0
            reported = wait_reported_connections(admin_port, ">=", n)
            fresh = [fresh_request_ms(port) for _ in range(FRESH_REQUESTS)]
            after = vm_rss_kib(pid)
            alive = sum(still_open(s) for s in socks)
        finally:
            for s in socks:
                s.close()
        left = wait_reported_connections(admin_port, "<=", 0)
        closed = vm_rss_kib(pid)
        if gw.popen.poll() is not None:
            raise RuntimeError(f"pulsegate exited with code {gw.popen.returncode}\n{gw.log_tail()}")
    statuses = sorted({status for status, _ in fresh})
    times = sorted(ms for _, ms in fresh)
    return {
        "connections": n,
        "open_s": open_s,
        "reported": reported,
        "alive": alive,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_closed_kib": closed,
        "reported_after_close": left,
        "kib_per_conn": (after - before) / n,
        "fresh_statuses": statuses,
        "fresh_median_ms": statistics.median(times),
        "fresh_max_ms": times[-1],
    }


def report(r: dict[str, object], args: argparse.Namespace) -> bool:
    n = args.connections
    kib = float(str(r["kib_per_conn"]))
    print(f"idle connection benchmark, tree {git_revision()}: {shlex.join(['python', *sys.argv])}")
    print(
        f"1 worker; {n} connections opened in {float(str(r['open_s'])):.1f} s ({args.concurrency} at a time)"
    )
    print(f"worker reports {r['reported']} open connections; {r['alive']} of {n} still open at the end")
    print(f"worker VmRSS before:  {r['rss_before_kib']} KiB")
    print(f"worker VmRSS after:   {r['rss_after_kib']} KiB")
    print(f"worker VmRSS closed:  {r['rss_closed_kib']} KiB (after closing them again)")
    print(f"per idle connection:  {kib:.2f} KiB")
    served = r["fresh_statuses"] == [200]
    print(
        f"fresh request while held: {'served' if served else 'NOT served'} (statuses {r['fresh_statuses']}), "
        f"median {float(str(r['fresh_median_ms'])):.2f} ms, max {float(str(r['fresh_max_ms'])):.2f} ms "
        f"over {FRESH_REQUESTS} new connections"
    )
    met = served and kib <= args.target_kib and r["alive"] == n
    print(f"target <= {args.target_kib:g} KiB per idle connection: {'met' if met else 'MISSED'}")
    return met


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    why = raise_nofile(args.connections + 1024)
    if why:
        print(f"ERROR: {why}", file=sys.stderr)
        return EXIT_NOFILE
    work_root = peers.BENCH_DIR / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="idle-", dir=work_root))
    t0 = time.monotonic()
    try:
        with rig.signals_as_interrupt():
            result = measure(args, workdir)
    except KeyboardInterrupt:
        print("interrupted: all child processes were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    finally:
        if args.keep_work:
            log(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    met = report(result, args)
    log(f"done in {time.monotonic() - t0:.0f} s")
    return EXIT_CHECK_FAILED if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
