"""Streaming memory: a 1 GiB body through pulsegate (and nginx) each way, with the worker's RSS.

One run starts a streaming origin (``body_wire.py``), then each proxy in turn with one worker:
pulsegate (``workers: 1``, ``limits.max_body_bytes`` = the body size) and, when installed, nginx
(``proxy_request_buffering off``, ``proxy_max_temp_file_size 0``: neither direction may spill to
disk). For each direction it makes one small warm-up transfer, reads the worker's VmRSS as the
baseline, then moves the body on one connection while a thread samples VmRSS every 50 ms:

- download: ``GET /download?bytes=N``; the client counts the N bytes into one reusable buffer;
- upload: ``POST /upload`` with ``Content-Length: N``; the origin answers with the count it read.

Byte counts must match exactly and the body's byte pattern is spot-checked at both ends. It prints
throughput, the baseline, the peak growth (max sampled VmRSS - baseline) and the VmHWM growth
(the kernel's own peak, reset before each transfer through /proc/<pid>/clear_refs), the worker's
CPU time, and a verdict against the 32 MiB bound.

    .venv/bin/python benchmarks/body_bench.py [--bytes 1073741824] [--json FILE] [--check]

Exit status: 0 after a measurement (also over the bound, unless --check); 1 when a transfer fails,
the rig breaks, or --check finds pulsegate's growth >= 32 MiB; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop
import yaml

import body_wire as wire
import proxy_peers as peers
import proxy_rig as rig
from idle_bench import admin_workers
from proxy_bench import git_revision, log

GIB = 1 << 30
MIB = 1 << 20
TARGET_MIB = 32.0
SAMPLE_S = 0.05
READY_TIMEOUT_S = 10.0
EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
DIRECTIONS = ("download", "upload")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bytes", type=int, default=GIB, help="body size each way (default 1 GiB)")
    p.add_argument("--json", type=Path, help="write every measurement to this file")
    p.add_argument("--check", action="store_true", help="exit 1 if pulsegate grows >= 32 MiB")
    p.add_argument("--timeout", type=float, help="seconds per transfer (default 30 plus 1 per 8 MiB)")
    p.add_argument("--keep-work", action="store_true", help="keep configs and logs under benchmarks/.work")
    args = p.parse_args(argv)
    if args.bytes < MIB:
        p.error("--bytes must be at least 1 MiB (1048576)")
    if args.timeout is None:
        args.timeout = 30 + args.bytes / (8 * MIB)
    return args


# --------------------------------------------------------------------------- /proc


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        raw = fh.read()
    # comm may hold spaces or parentheses: the fields start after the last ')'; [0] is state.
    return raw[raw.rfind(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    utime, stime = stat_fields(pid)[11:13]
    return (int(utime) + int(stime)) / rig.CLK_TCK


def reset_hwm(pid: int) -> bool:
    """Make VmHWM restart from the current RSS, so it is this transfer's peak, not the lifetime's."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_pids(parent: int) -> list[int]:
    # The nginx master (our child) forks its worker; the kernel lists a thread's children here.
    return [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]


class RssSampler(threading.Thread):
    """VmRSS every ``SAMPLE_S`` from a thread, so the peak is seen even while the client's event
    loop is busy writing."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.peak_kib = status_kib(pid, "VmRSS")
        self.samples = 1

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        try:
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            self.samples += 1
        except OSError:
            self.stop.set()  # the worker died: the transfer fails and says so

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        self.sample()


# --------------------------------------------------------------------------- transfers


@dataclass
class Result:
    proxy: str
    direction: str
    bytes: int
    seconds: float = 0.0
    baseline_kib: int = 0
    peak_kib: int = 0
    hwm_before_kib: int = 0
    hwm_after_kib: int = 0
    hwm_reset: bool = False
    cpu_s: float = 0.0
    samples: int = 0
    verified: bool = False
    error: str | None = None
    mib_s: float = 0.0
    growth_mib: float = 0.0  # max sampled VmRSS - baseline: the main figure
    hwm_growth_mib: float | None = None  # VmHWM after - baseline, when VmHWM could be reset
    over: bool = False  # growth >= the bound by either measure

    def derive(self) -> None:
        self.mib_s = self.bytes / MIB / self.seconds if self.seconds else 0.0
        self.growth_mib = (self.peak_kib - self.baseline_kib) / 1024
        if self.hwm_reset:
            self.hwm_growth_mib = (self.hwm_after_kib - self.baseline_kib) / 1024
        self.over = max(self.growth_mib, self.hwm_growth_mib or 0.0) >= TARGET_MIB


def transfer(port: int, direction: str, n: int, timeout_s: float) -> None:
    """One ``direction`` transfer of ``n`` bytes; raises ConnectionError unless exactly right."""
    host = b"Host: body.bench\r\n"
    if direction == "download":
        head = b"GET /download?bytes=%d HTTP/1.1\r\n%s\r\n" % (n, host)
        coro = wire.exchange(port, head, 0, keep_body=False, timeout_s=timeout_s)
    else:
        head = b"POST /upload?verify=1 HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (host, n)
        coro = wire.exchange(port, head, n, keep_body=True, timeout_s=timeout_s)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        proto = runner.run(coro)
    assert proto.body is not None
    if not proto.status_line.startswith("HTTP/1.1 200 "):
        raise ConnectionError(f"answered {proto.status_line!r} {bytes(proto.kept[:100])!r}")
    if direction == "download" and (proto.body.count != n or proto.body.mismatches):
        raise ConnectionError(
            f"received {proto.body.count} of {n} bytes, {proto.body.mismatches} pattern mismatches"
        )
    if direction == "upload" and proto.kept != str(n).encode():
        raise ConnectionError(f"the origin counted {bytes(proto.kept[:40])!r} bytes, not {n}")


def measure(proxy: str, pid: int, port: int, direction: str, args: argparse.Namespace) -> Result:
    res = Result(proxy, direction, args.bytes)
    try:
        # A warm-up larger than pulsegate's request_buffer (64 KiB), so it takes the streaming path
        # and the connection pools, buffers and lazily built objects exist before the baseline.
        transfer(port, direction, MIB, timeout_s=30)
        res.baseline_kib = status_kib(pid, "VmRSS")
        res.hwm_reset = reset_hwm(pid)
        res.hwm_before_kib = status_kib(pid, "VmHWM")
        cpu0 = cpu_seconds(pid)
        sampler = RssSampler(pid)
        sampler.start()
        t0 = time.perf_counter()
        try:
            transfer(port, direction, args.bytes, args.timeout)
        finally:
            res.seconds = time.perf_counter() - t0
            sampler.finish()
            res.peak_kib, res.samples = sampler.peak_kib, sampler.samples
        res.cpu_s = cpu_seconds(pid) - cpu0
        res.hwm_after_kib = status_kib(pid, "VmHWM")
        res.verified = True
    except (ConnectionError, OSError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    res.derive()
    return res


# --------------------------------------------------------------------------- proxies


def pulsegate_yaml(port: int, upstream_port: int, admin_port: int, body_bytes: int) -> str:
    cfg = yaml.safe_load(peers.pulsegate_yaml(port, upstream_port, workers=1))
    cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    cfg["limits"] = {"max_body_bytes": body_bytes}
    text: str = yaml.safe_dump(cfg)
    return text


def nginx_argv(nginx: str, workdir: Path, port: int, upstream_port: int) -> list[str]:
    # request_buffering off streams uploads; proxy_buffering stays on (the default) with its
    # in-memory buffers, and max_temp_file_size 0 forbids spilling a download to disk.
    server = f"""\
    upstream origin {{
        server 127.0.0.1:{upstream_port};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
        }}
    }}"""
    return peers.nginx_argv(nginx, workdir, peers._nginx_conf(workdir, server))


def wait_for_worker(what: str, probe: Callable[[], list[int]]) -> int:
    """Poll ``probe()`` until it lists exactly one worker pid (``workers: 1``, ``worker_processes 1``)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    pids: list[int] = []
    while time.monotonic() < deadline:
        pids = probe()
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.05)
    raise RuntimeError(f"expected one {what} within {READY_TIMEOUT_S:.0f} s, found {pids}")


def run_proxy(
    children: rig.Children, name: str, workdir: Path, upstream_port: int, args: argparse.Namespace
) -> list[Result]:
    port = rig.free_port()
    if name == "pulsegate":
        admin_port = rig.free_port()
        conf = workdir / "pulsegate.yaml"
        conf.write_text(pulsegate_yaml(port, upstream_port, admin_port, args.bytes))
        exe = Path(sys.executable).parent / "pulsegate"
        child = children.spawn(name, [str(exe), "run", "-c", str(conf)], cpu=None)
    else:
        nginx = rig.find_tool("nginx")
        assert nginx is not None
        child = children.spawn(name, nginx_argv(nginx, workdir / "nginx", port, upstream_port), cpu=None)
    why = rig.wait_http_ready(child, port, peers.UPSTREAM_BODY, READY_TIMEOUT_S)
    if why:
        raise RuntimeError(f"{name} did not start: {why}\n{child.log_tail()}")
    if name == "pulsegate":
        pid = wait_for_worker(
            "pulsegate worker", lambda: [int(str(w["pid"])) for w in admin_workers(admin_port)]
        )
    else:
        pid = wait_for_worker("nginx worker", lambda: child_pids(child.pid))
    log(f"{name}: port {port}, worker pid {pid}")
    results = []
    for direction in DIRECTIONS:
        res = measure(name, pid, port, direction, args)
        log(f"{name} {direction}: {res.error or f'{res.mib_s:.0f} MiB/s, +{res.growth_mib:.1f} MiB'}")
        results.append(res)
    if child.popen.poll() is not None:
        for res in results:
            res.error = res.error or f"{name} exited with code {child.popen.returncode}: {child.log_tail(2)}"
    children.stop(child)
    return results


def nginx_spills(workdir: Path) -> list[str]:
    """nginx's own warnings about bodies written to temporary files (there must be none)."""
    log_path = workdir / "nginx" / "error.log"
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [line for line in text.splitlines() if "temporary file" in line]


# --------------------------------------------------------------------------- report


def format_table(results: list[Result]) -> str:
    header = (
        f"{'direction':<10}{'proxy':<11}{'MiB/s':>8}{'RSS base MiB':>14}{'peak growth MiB':>17}"
        f"{'HWM growth MiB':>16}{'worker CPU s':>14}  {'bytes':<21}verdict (< {TARGET_MIB:g} MiB)"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if r.error:
            grew = f"+{r.growth_mib:.1f} MiB RSS by then" if r.baseline_kib else "before the baseline"
            lines.append(
                f"{r.direction:<10}{r.proxy:<11}  FAILED after {r.seconds:.1f} s ({grew}): {r.error}"
            )
            continue
        hwm = "n/a" if r.hwm_growth_mib is None else f"{r.hwm_growth_mib:.1f}"
        verified = f"{r.bytes} verified"
        lines.append(
            f"{r.direction:<10}{r.proxy:<11}{r.mib_s:>8.0f}{r.baseline_kib / 1024:>14.1f}"
            f"{r.growth_mib:>17.1f}{hwm:>16}{r.cpu_s:>14.2f}  {verified:<21}{'OVER' if r.over else 'ok'}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, workdir: Path) -> int:
    nginx = rig.find_tool("nginx")
    skipped: dict[str, str] = {}
    if nginx is None:
        skipped["nginx"] = "nginx is not installed (not on PATH or in the sbin directories)"
    results: list[Result] = []
    notes: list[str] = []
    with rig.Children(workdir, taskset=None) as children:
        upstream_port = rig.free_port()
        origin = children.spawn(
            "origin", [sys.executable, str(peers.BENCH_DIR / "body_wire.py"), str(upstream_port)], cpu=None
        )
        why = rig.wait_http_ready(origin, upstream_port, wire.HELLO, READY_TIMEOUT_S)
        if why:
            raise RuntimeError(f"the origin did not start: {why}\n{origin.log_tail()}")
        for name in ("pulsegate", "nginx"):
            if name not in skipped:
                results += run_proxy(children, name, workdir, upstream_port, args)
        if nginx is not None and nginx_spills(workdir):
            notes.append(f"nginx wrote temporary files: {nginx_spills(workdir)[:2]}")
        if origin.popen.poll() is not None:
            notes.append(f"the origin exited: {origin.log_tail()}")

    size = f"{args.bytes / GIB:g} GiB" if args.bytes % GIB == 0 else f"{args.bytes / MIB:g} MiB"
    print(f"streaming memory benchmark, tree {git_revision()}: {shlex.join(['python', *sys.argv])}")
    print(f"{size} ({args.bytes} bytes) each way on one connection; 1 worker per proxy; VmRSS every 50 ms")
    print()
    print(format_table(results))
    for name, reason in skipped.items():
        print(f"{name}: skipped ({reason})")
    for note in notes:
        print(f"note: {note}")
    pulsegate = [r for r in results if r.proxy == "pulsegate"]
    met = len(pulsegate) == len(DIRECTIONS) and not any(r.error or r.over for r in pulsegate)
    print(f"\npulsegate worker growth < {TARGET_MIB:g} MiB in both directions: {'met' if met else 'MISSED'}")

    if args.json:
        doc = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "tree": git_revision(),
            "command": sys.argv,
            "bytes": args.bytes,
            "target_mib": TARGET_MIB,
            "python": sys.version.split()[0],
            "nginx": nginx
            and subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr,
            "results": [asdict(r) for r in results],
            "skipped": skipped,
            "notes": notes,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if notes or any(r.error for r in results):
        return EXIT_FAILED
    return EXIT_FAILED if args.check and not met else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_root = peers.BENCH_DIR / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="body-", dir=work_root))
    t0 = time.monotonic()
    try:
        with rig.signals_as_interrupt():
            return run(args, workdir)
    except KeyboardInterrupt:
        print("interrupted: all child processes were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if args.keep_work:
            log(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"done in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
