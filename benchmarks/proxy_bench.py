"""Side-by-side proxy benchmark: pulsegate vs nginx, HAProxy and Node.js proxies, one core each.

One run starts an nginx origin pinned to the load core, then each proxy in turn pinned to the other
core, drives it with wrk for a fixed time and prints req/s, p50/p99 latency and CPU microseconds
per request, with ratios to nginx. See docs/benchmarks.md for the method and recorded results.

    .venv/bin/python benchmarks/proxy_bench.py [--repeat 3] [--duration 10] [--connections 64]
    .venv/bin/python benchmarks/proxy_bench.py --workload browser|large|post   (see workloads.py)

Exit status: 0 after a measurement (also when a target is missed, unless --check), 1 on --check
failure or when the rig itself breaks, 77 when nginx or wrk is missing and cannot be installed
(the smoke test skips on that), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import proxy_peers as peers
import proxy_rig as rig
import workloads

EXIT_CHECK_FAILED = 1
EXIT_TOOLS_MISSING = 77  # the autotools "skipped" convention
EXIT_INTERRUPTED = 130
PEER_ORDER = (
    "nginx",
    "haproxy",
    "pulsegate",
    "pulsegate-bare",
    "pulsegate-full",
    "node-http-proxy",
    "node-undici",
)
#: Run unless --peers says otherwise. pulsegate-bare (metrics off) and pulsegate-full (metrics and
#: an access log file) price the observability features against the default (metrics on, no log).
DEFAULT_PEERS = ("nginx", "haproxy", "pulsegate", "node-http-proxy", "node-undici")
BASELINE = "nginx"
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunResult:
    """One measured run of one proxy."""

    peer: str
    rep: int
    rps: float
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    cpu_s: float
    cpu_us_per_req: float
    upstream_cpu_us_per_req: float
    upstream_conns_opened: int  # new connections the origin accepted during the run
    upstream_requests: int  # requests the origin answered during the run
    wrk_cpu_us_per_req: float
    proxy_cpu_pct: float  # the proxy's own CPU time, percent of one core
    load_cpu_pct: float  # wrk + origin CPU time, percent of one core
    proxy_core_busy_pct: float  # everything that ran on the proxy's core
    load_core_busy_pct: float  # everything that ran on the load core
    other_cpu_pct: float  # percent of one core used by processes outside the rig
    steal_pct: float  # percent of one core taken by the hypervisor


@dataclass(frozen=True)
class Summary:
    """Medians over the interleaved repeats of one proxy."""

    peer: str
    runs: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    proxy_cpu_pct: float
    load_cpu_pct: float
    other_cpu_pct: float
    upstream_conns_opened: int
    errors: int
    rps_min: float
    rps_max: float
    rps_vs_nginx: float | None


def log(msg: str) -> None:
    """Progress goes to stderr so stdout holds only the results."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: one load core)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians reported (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured wrk seconds before each run (default 2)")
    p.add_argument(
        "--workload",
        choices=list(workloads.WORKLOADS),
        default=workloads.DEFAULT_WORKLOAD,
        help="; ".join(f"{w.name}: {w.description}" for w in workloads.WORKLOADS.values())
        + f" (default {workloads.DEFAULT_WORKLOAD})",
    )
    p.add_argument(
        "--peers",
        default=",".join(DEFAULT_PEERS),
        help=f"comma-separated subset of {','.join(PEER_ORDER)} (default {','.join(DEFAULT_PEERS)})",
    )
    p.add_argument(
        "--nginx-keepalive",
        type=int,
        default=None,
        help="idle upstream connections nginx keeps (default 64, or 2 x connections above 64)",
    )
    p.add_argument(
        "--pulsegate-workers",
        type=int,
        default=None,
        help="add 'workers: N' to the pulsegate config (default: not set, pulsegate decides)",
    )
    p.add_argument(
        "--proxy-cpu",
        type=int,
        default=None,
        help="core for the proxy (default first usable; -1: not pinned, e.g. for 2 workers)",
    )
    p.add_argument("--load-cpu", type=int, default=None, help="core for wrk + origin (default second usable)")
    p.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="niceness for proxy, origin and wrk when root (default -10; 0 = leave as is)",
    )
    p.add_argument("--target-ratio", type=float, default=0.85, help="pulsegate/nginx req/s target (issue 6)")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed or not measured")
    p.add_argument("--json", type=Path, default=None, help="write raw runs and summary to this file")
    p.add_argument("--no-install", action="store_true", help="use only the tools already installed")
    p.add_argument("--install-timeout", type=float, default=300.0, help="bound for apt-get/npm (s)")
    p.add_argument("--keep-work", action="store_true", help="keep configs and logs under benchmarks/.work")
    p.add_argument("--smoke", action="store_true", help="tiny run for the test: 1 s, 8 connections, once")
    args = p.parse_args(argv)
    if args.smoke:
        args.duration, args.connections, args.repeat, args.warmup = 1, 8, 1, 0
    if args.duration < 1 or args.connections < 1 or args.repeat < 1 or args.warmup < 0:
        p.error("--duration, --connections and --repeat must be >= 1, --warmup >= 0")
    if args.threads > args.connections:
        p.error("--threads must not exceed --connections")
    if args.nginx_keepalive is None:
        # The idle cache must hold at least one connection per concurrent request or nginx
        # closes and reopens upstream connections under load; 2x leaves headroom.
        args.nginx_keepalive = 64 if args.connections <= 64 else 2 * args.connections
    wanted = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(PEER_ORDER))
    if unknown:
        p.error(f"unknown peers: {', '.join(unknown)}")
    args.peer_list = [name for name in PEER_ORDER if name in wanted]
    return args


# --------------------------------------------------------------------------- tools


def ensure_tools(args: argparse.Namespace) -> dict[str, str | None]:
    """Find nginx, wrk, taskset, haproxy, node, npm; install the missing ones unless --no-install.

    apt-get and npm share one --install-timeout budget so the smoke test's time stays bounded.
    """
    deadline = time.monotonic() + args.install_timeout
    # haproxy is installed in a second apt-get call: a failure there must cost only its own peer,
    # while one failing package in a shared call would leave nginx and wrk out too.
    apt_steps = [
        {"nginx": "nginx", "wrk": "wrk", "taskset": "util-linux"},
        {"haproxy": "haproxy"} if "haproxy" in args.peer_list else {},
    ]
    for apt_for in apt_steps:
        pkgs = [pkg for tool, pkg in apt_for.items() if rig.find_tool(tool) is None]
        budget = deadline - time.monotonic()
        if not pkgs or args.no_install:
            continue
        if budget <= 1:
            log(f"no install time left for: {' '.join(pkgs)}")
            continue
        log(f"installing Debian packages: {' '.join(pkgs)}")
        why = rig.apt_install(pkgs, budget)
        if why:
            log(f"could not install: {why}")
    tools = {name: rig.find_tool(name) for name in ("nginx", "wrk", "taskset", "haproxy", "node", "npm")}

    wants_node = any(p.startswith("node-") for p in args.peer_list)
    modules_missing = not all(
        (peers.NODE_DIR / "node_modules" / mod / "package.json").exists() for mod in ("http-proxy", "undici")
    )
    budget = deadline - time.monotonic()
    if wants_node and modules_missing and not args.no_install and tools["npm"] and budget > 1:
        # npm ci installs exactly the committed lockfile, so every machine measures the same code.
        log(f"npm ci in {peers.NODE_DIR}")
        try:
            proc = subprocess.run(
                [tools["npm"], "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=peers.NODE_DIR,
                capture_output=True,
                text=True,
                timeout=budget,
                check=False,
            )
            if proc.returncode != 0:
                log(f"npm ci failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        except subprocess.TimeoutExpired:
            log(f"npm ci timed out after {budget:.0f} s")
    return tools


def build_peers(args: argparse.Namespace, tools: dict[str, str | None]) -> list[peers.Peer]:
    out: list[peers.Peer] = []
    for name in args.peer_list:
        if name == "nginx":
            nginx = tools["nginx"]
            assert nginx is not None  # checked by the caller: it is also the origin
            out.append(peers.Peer("nginx", peers.nginx_proxy_builder(nginx, args.nginx_keepalive)))
        elif name == "haproxy":
            how = "--no-install given" if args.no_install else "could not be installed, see the log above"
            out.append(peers.haproxy_peer(tools["haproxy"], f"haproxy is not installed ({how})"))
        elif name.startswith("pulsegate"):
            exe = Path(sys.executable).parent / "pulsegate"
            variant = name.partition("-")[2] or "default"
            out.append(peers.pulsegate_peer(exe, args.pulsegate_workers, variant=variant, name=name))
        elif name == "node-http-proxy":
            out.append(peers.node_peer(name, "http_proxy.js", tools["node"], "http-proxy"))
        elif name == "node-undici":
            out.append(peers.node_peer(name, "undici_proxy.js", tools["node"], "undici"))
    return out


def git_revision() -> str:
    """Commit of the tree being measured (read-only git calls), '-dirty' with local changes."""
    root = peers.BENCH_DIR.parent
    # --no-optional-locks: status must not refresh .git/index while the lead may be committing.
    git = ["git", "--no-optional-locks", "-C", str(root)]
    try:
        rev = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if rev.returncode != 0:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def tool_versions(tools: dict[str, str | None]) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        return lines[0].strip() if lines else "unknown"

    out: dict[str, str] = {"python": platform.python_version(), "kernel": platform.release()}
    if tools["nginx"]:
        out["nginx"] = first_line([tools["nginx"], "-v"])
    if tools["wrk"]:
        out["wrk"] = first_line([tools["wrk"], "-v"])
    if tools["haproxy"]:
        out["haproxy"] = first_line([tools["haproxy"], "-v"])
    if tools["node"]:
        out["node"] = first_line([tools["node"], "--version"])
    try:
        out["pulsegate"] = importlib.metadata.version("pulsegate")
    except importlib.metadata.PackageNotFoundError:
        out["pulsegate"] = "not installed"
    out["git"] = git_revision()
    try:
        with open("/proc/cpuinfo") as fh:
            out["cpu"] = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "unknown"
            )
    except OSError:
        out["cpu"] = "unknown"
    return out


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Rig:
    """Where things run: scratch dir, cores, tool paths, the origin."""

    children: rig.Children
    workdir: Path
    proxy_cpu: int | None
    load_cpu: int | None
    wrk: str
    upstream: rig.Child
    upstream_port: int
    workload: workloads.Workload


def measure(r: Rig, peer: peers.Peer, rep: int, args: argparse.Namespace) -> RunResult | str:
    """Start ``peer``, load it, stop it. Returns the result, or why it could not be measured."""
    assert peer.build is not None
    port = rig.free_port()
    argv = peer.build(r.workdir / f"{peer.name}-{rep}", port, r.upstream_port)
    child = r.children.spawn(f"{peer.name}-{rep}", argv, cpu=r.proxy_cpu, env=peer.env, cwd=r.workdir)
    try:
        why = rig.wait_http_ready(child, port, peers.UPSTREAM_BODY, READY_TIMEOUT_S)
        if why is None and r.workload.path != "/":
            # GET / proved the proxy forwards; the workload's own request (a body, a large
            # answer) must come back whole too, or wrk would only count errors.
            why = workloads.probe(port, r.workload)
        if why:
            tail = child.log_tail()
            return why + ("; log tail:\n    " + tail.replace("\n", "\n    ") if tail else "")

        def load(seconds: int) -> rig.WrkResult:
            return rig.run_wrk(
                r.children,
                r.wrk,
                r.workload.url(port),
                duration_s=seconds,
                connections=args.connections,
                threads=args.threads,
                cpu=r.load_cpu,
                script=r.workload.script,
            )

        try:
            if args.warmup:
                # JIT warm-up (node), pool fill and page faults happen here, not in the measured run.
                load(args.warmup)
            cpu0 = rig.group_cpu_seconds(child.pid)
            up0 = rig.group_cpu_seconds(r.upstream.pid)
            cores0 = rig.core_times()
            status0 = rig.nginx_status(r.upstream_port, peers.STATUS_PATH)
            res = load(args.duration)
        except (RuntimeError, ValueError) as exc:
            # One misbehaving proxy (e.g. one that resets every connection) must not end the
            # whole comparison: report it as skipped with wrk's complaint.
            return f"load run failed: {exc}"
        cores1 = rig.core_times()
        status1 = rig.nginx_status(r.upstream_port, peers.STATUS_PATH)
        cpu_s = rig.group_cpu_seconds(child.pid) - cpu0
        up_s = rig.group_cpu_seconds(r.upstream.pid) - up0
        if child.popen.poll() is not None:
            return f"exited with code {child.popen.returncode} during the load run"
    finally:
        r.children.stop(child)
    if res.requests == 0:
        return "wrk completed no request"
    per_req = 1e6 / res.requests
    nan = float("nan")
    usage = rig.core_usage(cores0, cores1)
    # CPU that neither the proxy, the origin nor wrk used: other people's tests, builds, daemons.
    # It shares the cores with the rig, so a few percent already moves the numbers.
    other_s = max(0.0, usage.all_busy_core_s - cpu_s - up_s - res.cpu_s)
    return RunResult(
        peer=peer.name,
        rep=rep,
        rps=res.rps,
        requests=res.requests,
        seconds=res.seconds,
        p50_ms=res.latency_ms["50"],
        p90_ms=res.latency_ms.get("90", nan),
        p99_ms=res.latency_ms["99"],
        errors=res.errors,
        cpu_s=cpu_s,
        cpu_us_per_req=cpu_s * per_req,
        upstream_cpu_us_per_req=up_s * per_req,
        # The second status request counts itself in both numbers.
        upstream_conns_opened=status1[0] - status0[0] - 1,
        upstream_requests=status1[1] - status0[1] - 1,
        wrk_cpu_us_per_req=res.cpu_s * per_req,
        proxy_cpu_pct=100.0 * cpu_s / usage.wall_s if usage.wall_s else nan,
        load_cpu_pct=100.0 * (up_s + res.cpu_s) / usage.wall_s if usage.wall_s else nan,
        proxy_core_busy_pct=usage.busy_pct.get(r.proxy_cpu, nan) if r.proxy_cpu is not None else nan,
        load_core_busy_pct=usage.busy_pct.get(r.load_cpu, nan) if r.load_cpu is not None else nan,
        other_cpu_pct=100.0 * other_s / usage.wall_s if usage.wall_s else nan,
        steal_pct=usage.steal_pct,
    )


def summarize(runs: list[RunResult]) -> list[Summary]:
    by_peer: dict[str, list[RunResult]] = {}
    for run in runs:
        by_peer.setdefault(run.peer, []).append(run)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    base = med([r.rps for r in by_peer[BASELINE]]) if BASELINE in by_peer else None
    out = []
    for name in PEER_ORDER:
        rs = by_peer.get(name)
        if not rs:
            continue
        rps = med([r.rps for r in rs])
        out.append(
            Summary(
                peer=name,
                runs=len(rs),
                rps=rps,
                p50_ms=med([r.p50_ms for r in rs]),
                p99_ms=med([r.p99_ms for r in rs]),
                cpu_us_per_req=med([r.cpu_us_per_req for r in rs]),
                proxy_cpu_pct=med([r.proxy_cpu_pct for r in rs]),
                load_cpu_pct=med([r.load_cpu_pct for r in rs]),
                other_cpu_pct=med([r.other_cpu_pct for r in rs]),
                upstream_conns_opened=round(med([float(r.upstream_conns_opened) for r in rs])),
                errors=sum(r.errors for r in rs),
                rps_min=min(r.rps for r in rs),
                rps_max=max(r.rps for r in rs),
                rps_vs_nginx=rps / base if base else None,
            )
        )
    return out


# --------------------------------------------------------------------------- output

HEADER = (
    f"{'proxy':<16} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
    f"{'proxy cpu':>9} {'load cpu':>8} {'other':>6} {'up conns':>8} {'vs nginx':>8} {'runs':>4}"
)
# Above this much CPU used by strangers (percent of one core) a run is not trustworthy.
NOISY_OTHER_PCT = 10.0
# wrk + origin using this much of their core may be what limits the rate, not the proxy.
LOAD_BOUND_PCT = 95.0


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.0f}%"


def format_table(summaries: list[Summary], skipped: dict[str, str]) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    for s in summaries:
        ratio = "n/a" if s.rps_vs_nginx is None else f"{s.rps_vs_nginx:.2f}"
        flag = " !" if s.errors else ""
        lines.append(
            f"{s.peer:<16} {s.rps:>8.0f} {s.p50_ms:>7.2f} {s.p99_ms:>7.2f} {s.cpu_us_per_req:>10.1f} "
            f"{_pct(s.proxy_cpu_pct):>9} {_pct(s.load_cpu_pct):>8} {_pct(s.other_cpu_pct):>6} "
            f"{s.upstream_conns_opened:>8} {ratio:>8} {s.runs:>4}{flag}"
        )
    lines.extend(f"{name:<16} skipped: {why}" for name, why in skipped.items())
    return "\n".join(lines)


def format_notes(summaries: list[Summary], runs: list[RunResult], connections: int) -> list[str]:
    notes = []
    churn = [s for s in summaries if s.upstream_conns_opened > connections]
    if churn:
        notes.append(
            "note: 'up conns' counts new upstream connections during a measured run (median); "
            + ", ".join(f"{s.peer} opened {s.upstream_conns_opened}" for s in churn)
            + ": upstream keep-alive is not (fully) reused"
        )
    # wrk does not count requests in flight when it stops, and a proxy may hold more queued than
    # there are client connections; the check is there to catch a proxy that does not forward.
    notes.extend(
        f"note: {run.peer} round {run.rep + 1}: the origin answered {run.upstream_requests} "
        f"requests while wrk completed {run.requests}"
        for run in runs
        if abs(run.upstream_requests - run.requests) > max(2 * connections, run.requests // 100)
    )
    if any(s.errors for s in summaries):
        notes.append("! = wrk saw non-2xx responses or socket errors; see --json for counts")
    spread = [s for s in summaries if s.runs > 1]
    if spread:
        notes.append(
            "req/s range over runs: " + ", ".join(f"{s.peer} {s.rps_min:.0f}-{s.rps_max:.0f}" for s in spread)
        )
    noisy = [s.peer for s in summaries if s.other_cpu_pct > NOISY_OTHER_PCT]
    if noisy:
        notes.append(
            f"WARNING: other processes used > {NOISY_OTHER_PCT:.0f}% of a core during {', '.join(noisy)}: "
            "the machine was not quiet. At the rig's raised priority they mostly fill idle time, "
            "but they delay wake-ups: p99 suffers first"
        )
    bound = [s.peer for s in summaries if s.load_cpu_pct > LOAD_BOUND_PCT]
    if bound:
        notes.append(
            f"note: wrk + origin used > {LOAD_BOUND_PCT:.0f}% of their core for {', '.join(bound)}: the load "
            "side may limit that rate (it is a lower bound); compare CPU us/req too"
        )
    return notes


def check_targets(summaries: list[Summary], target_ratio: float) -> tuple[list[str], bool]:
    """Lines like ``pulsegate/nginx req/s ratio: 0.74 (target >= 0.60) met``; and whether all were met."""
    by_peer = {s.peer: s for s in summaries}
    ok = True
    lines = []
    base = by_peer.get(BASELINE)
    for peer, target in (("pulsegate", target_ratio),):
        s = by_peer.get(peer)
        if s is None or s.rps_vs_nginx is None or base is None:
            lines.append(f"{peer}/nginx req/s ratio: not measured (target >= {target:.2f})")
            ok = False
            continue
        met = s.rps_vs_nginx >= target
        ok = ok and met
        verdict = "met" if met else "MISSED"
        lines.append(f"{peer}/nginx req/s ratio: {s.rps_vs_nginx:.2f} (target >= {target:.2f}) {verdict}")
        # Informational: CPU cost per request does not depend on whether the load core saturated.
        cost = base.cpu_us_per_req / s.cpu_us_per_req if s.cpu_us_per_req > 0 else float("nan")
        lines.append(f"{peer}/nginx CPU us/req ratio (nginx / {peer}): {cost:.2f} (informational)")
    return lines, ok


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------- main


def choose_cores(args: argparse.Namespace, taskset: str | None) -> tuple[int | None, int | None]:
    cpus = rig.usable_cpus()
    if taskset is None or len(cpus) < 2:
        log(f"not pinning: taskset {'found' if taskset else 'missing'}, usable cores {cpus}")
        return None, None
    if args.proxy_cpu == -1:
        load_cpu = cpus[-1] if args.load_cpu is None else args.load_cpu
        log(f"proxy not pinned (may use every core); load+origin on core {load_cpu}")
        return None, load_cpu
    proxy_cpu = cpus[0] if args.proxy_cpu is None else args.proxy_cpu
    load_cpu = next(c for c in cpus if c != proxy_cpu) if args.load_cpu is None else args.load_cpu
    if proxy_cpu == load_cpu or not {proxy_cpu, load_cpu} <= set(cpus):
        # Sharing one core would measure the scheduler, not the proxy.
        raise SystemExit(f"--proxy-cpu/--load-cpu must be two different cores among {cpus}")
    return proxy_cpu, load_cpu


def run(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    workload = workloads.WORKLOADS[args.workload]
    tools = ensure_tools(args)
    for tool in ("nginx", "wrk"):
        if tools[tool] is None:
            how = "--no-install given" if args.no_install else "and could not be installed"
            print(f"SKIP: {tool} is not installed ({how}); nginx is the origin and wrk the load")
            return EXIT_TOOLS_MISSING
    nginx, wrk = tools["nginx"], tools["wrk"]
    assert nginx is not None and wrk is not None
    proxy_cpu, load_cpu = choose_cores(args, tools["taskset"])
    # Only root may raise priority; elsewhere nice would just print a warning per process.
    nice = args.nice if os.geteuid() == 0 else 0

    work_root = peers.BENCH_DIR / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="proxy-", dir=work_root))
    # nginx started by root runs its worker as nobody, which must get through mkdtemp's 0700 to
    # the file the origin serves (--workload large); listing the directory stays refused.
    workdir.chmod(0o711)
    runs: list[RunResult] = []
    skipped: dict[str, str] = {}
    try:
        with rig.Children(workdir, taskset=tools["taskset"], nice=nice) as children:
            upstream_port = rig.free_port()
            origin_dir = workdir / "upstream"
            upstream = children.spawn(
                "upstream",
                peers.nginx_upstream_argv(
                    nginx, origin_dir, upstream_port, workload.origin_locations(origin_dir)
                ),
                cpu=load_cpu,
            )
            why = rig.wait_http_ready(upstream, upstream_port, peers.UPSTREAM_BODY, READY_TIMEOUT_S)
            if why is None and workload.path != "/":
                why = workloads.probe(upstream_port, workload)
            if why:
                print(f"ERROR: the nginx origin did not start: {why}\n{upstream.log_tail()}")
                return EXIT_CHECK_FAILED
            r = Rig(children, workdir, proxy_cpu, load_cpu, wrk, upstream, upstream_port, workload)
            active = []
            for peer in build_peers(args, tools):
                if peer.unavailable:
                    skipped[peer.name] = peer.unavailable
                    log(f"{peer.name}: skipped: {peer.unavailable}")
                else:
                    active.append(peer)
            log(
                f"cores: proxy {proxy_cpu}, load+origin {load_cpu}; {args.repeat} x "
                f"{[p.name for p in active]}, {args.duration}s @ {args.connections} connections, "
                f"workload {workload.name}"
            )
            # Interleaved rounds (A B C A B C ...) spread slow drifts (thermal, noisy neighbours)
            # over all proxies instead of penalising whichever ran last.
            for rep in range(args.repeat):
                for peer in [p for p in active if p.name not in skipped]:
                    result = measure(r, peer, rep, args)
                    if isinstance(result, str):
                        skipped[peer.name] = result
                        log(f"{peer.name}: skipped: {result}")
                        continue
                    runs.append(result)
                    log(
                        f"round {rep + 1}/{args.repeat} {peer.name}: {result.rps:.0f} req/s, "
                        f"p99 {result.p99_ms:.2f} ms, {result.cpu_us_per_req:.1f} us CPU/req"
                    )
    finally:
        if args.keep_work:
            log(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    summaries = summarize(runs)
    target_lines, targets_ok = check_targets(summaries, args.target_ratio)
    cmd = shlex.join(["python", *sys.argv])
    print(f"proxy benchmark {started:%Y-%m-%d %H:%M} UTC, tree {git_revision()}: {cmd}")
    script = f" -s {workload.record()['wrk_script']}" if workload.script else ""
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s{script}, warm-up {args.warmup}s, "
        f"{args.repeat} interleaved round(s), medians; proxy on core {proxy_cpu}, "
        f"wrk + nginx origin on core {load_cpu}, nice {nice}"
    )
    print(f"workload {workload.name}: {workload.description}")
    print()
    measured = {s.peer for s in summaries}
    print(format_table(summaries, {k: v for k, v in skipped.items() if k not in measured}))
    for line in format_notes(summaries, runs, args.connections):
        print(line)
    # A peer measured in some rounds and failing later keeps its row; say why it has fewer runs.
    for name, why in skipped.items():
        if name in measured:
            print(f"note: {name} failed in a later round: {why}")
    print()
    print("\n".join(target_lines))

    if args.json:
        doc: dict[str, Any] = {
            "date": started.isoformat(timespec="seconds"),
            "command": cmd,
            "workload": workload.record(),
            "settings": {k: v for k, v in vars(args).items() if k not in {"json", "peer_list"}},
            "cores": {"proxy": proxy_cpu, "load_and_origin": load_cpu},
            "nice_applied": nice,
            "versions": tool_versions(tools),
            "runs": [asdict(run) for run in runs],
            "summary": [asdict(s) for s in summaries],
            "skipped": skipped,
            "targets": {"lines": target_lines, "all_met": targets_ok},
        }
        args.json.write_text(json.dumps(_json_safe(doc), indent=2, default=str) + "\n")
        log(f"raw results written to {args.json}")
    return EXIT_CHECK_FAILED if args.check and not targets_ok else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    try:
        with rig.signals_as_interrupt():
            code = run(args)
    except KeyboardInterrupt:
        print("interrupted: all child processes were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    log(f"done in {time.monotonic() - t0:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
