"""Process, CPU and load-generator plumbing for ``proxy_bench.py``.

Nothing here knows about particular proxies: it starts commands pinned to a core in their own
process group, waits until they answer HTTP, measures CPU time from ``/proc`` and runs/parses wrk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# /usr/sbin holds nginx on Debian but is not on a non-root user's PATH.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def find_tool(name: str) -> str | None:
    """Absolute path of ``name`` on PATH or in the sbin directories, else None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_PATH])
    return shutil.which(name, path=path)


def apt_install(packages: Sequence[str], timeout_s: float) -> str | None:
    """Install Debian packages; returns None on success, else why not.

    ``apt-get update`` runs only when the first install attempt fails, because on a machine whose
    package lists are already there it is the slow half of the job.
    """
    if not packages:
        return None
    if os.geteuid() != 0:
        return f"not root, cannot apt-get install {' '.join(packages)}"
    if find_tool("apt-get") is None:
        return "no apt-get on this machine"
    deadline = time.monotonic() + timeout_s
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for the dpkg lock rather than fail when another session is installing something.
    lock = ["-o", f"DPkg::Lock::Timeout={int(timeout_s)}"]
    install = ["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *packages]
    last = ""
    for step in (install, ["apt-get", *lock, "update", "-q"], install):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"apt-get ran out of time ({timeout_s:.0f} s)"
        try:
            proc = subprocess.run(
                step, env=env, capture_output=True, text=True, timeout=remaining, check=False
            )
        except subprocess.TimeoutExpired:
            return f"apt-get timed out after {timeout_s:.0f} s"
        if proc.returncode == 0 and step is install:
            return None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            last = tail[-1] if tail else f"exit code {proc.returncode}"
    return f"apt-get install {' '.join(packages)} failed: {last}"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the kernel picks it; the race is harmless here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def usable_cpus() -> list[int]:
    """CPUs this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


# --------------------------------------------------------------------------- child processes


@dataclass
class Child:
    """A started command: its own session, so its pid is also the process-group id."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 6) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


class Children:
    """Owns every process the benchmark starts and kills them all in ``close()``.

    Each child gets a new session (``start_new_session``) so that one ``killpg`` reaches the whole
    tree (nginx master + worker, a supervisor + its workers) and so that a Ctrl-C typed at the
    terminal reaches only this script, which then cleans up in order.
    """

    def __init__(self, workdir: Path, *, taskset: str | None, nice: int = 0) -> None:
        self.workdir = workdir
        self.taskset = taskset
        self.nice = nice
        self._children: list[Child] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        """Start ``argv`` on core ``cpu`` (None: anywhere) with the rig's niceness."""
        cmd = list(argv)
        if self.nice:
            # Other people's tests may share this machine: a higher priority for every process
            # of the rig (all equally, so no proxy is favoured) lets them preempt that noise.
            cmd = ["nice", "-n", str(self.nice), *cmd]
        if cpu is not None and self.taskset is not None:
            # taskset and nice exec the command, so the pid we get is the command's own pid.
            cmd = [self.taskset, "-c", str(cpu), *cmd]
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        try:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=None if env is None else dict(env),
                cwd=cwd,
            )
        except BaseException:
            log.close()
            raise
        child = Child(name, popen, log_path, log)
        self._children.append(child)
        if self.nice:
            _set_autogroup_nice(popen.pid, self.nice)
        return child

    def stop(self, child: Child, grace_s: float = 5.0) -> None:
        """SIGTERM the child's group, then SIGKILL whatever is left after ``grace_s``."""
        _signal_group(child.pid, signal.SIGTERM)
        try:
            child.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        # Workers can outlive their leader (or ignore SIGTERM while draining): finish the group.
        _signal_group(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=grace_s)
        child._log.close()
        if child in self._children:
            self._children.remove(child)

    def close(self) -> None:
        for child in reversed(list(self._children)):
            self.stop(child, grace_s=3.0)


def _set_autogroup_nice(pid: int, nice: int) -> None:
    """Give the child's new session the rig's niceness at the scheduler's top level.

    With sched_autogroup_enabled (the default on Debian) every session is an autogroup that gets
    an equal CPU share whatever the niceness of its processes, so ``nice`` alone is powerless
    against another terminal's test run: the autogroup's own nice value is what counts.
    """
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_http_ready(child: Child, port: int, expect_body: bytes, timeout_s: float) -> str | None:
    """Poll until ``GET /`` on ``port`` answers 200 with ``expect_body``; None when ready, else why not.

    A TCP connect alone is not enough: a supervisor may bind the socket before its workers can
    serve, and a proxy that listens but cannot reach its upstream must not be measured.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = child.popen.poll()
        if code is not None:
            return f"exited with code {code} before it was ready"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
            if resp.status == 200 and body == expect_body:
                return None
            last = f"GET / answered {resp.status} {body[:60]!r}"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    return f"not ready within {timeout_s:.0f} s ({last})"


def nginx_status(port: int, path: str) -> tuple[int, int]:
    """(accepted connections, requests) so far from an nginx ``stub_status`` location."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request("GET", path)
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    # "Active connections: 1\nserver accepts handled requests\n 12 12 345\n..."
    match = re.search(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"unexpected stub_status answer: {text[:80]!r}")
    return int(match.group(1)), int(match.group(3))


# --------------------------------------------------------------------------- CPU accounting


def _stat_fields(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in group ``pgid``, plus reaped children.

    Fields per proc(5), counted from ``state`` (field 3) as index 0: pgrp is field 5, utime/stime
    are 14/15 and cutime/cstime 16/17. /proc/<pid>/stat already sums all threads of a process.
    """
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is None or len(fields) < 15 or int(fields[2]) != pgid:
            continue
        ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLK_TCK


@dataclass(frozen=True)
class CoreTimes:
    """Cumulative ticks of one CPU from /proc/stat."""

    busy: int  # user + nice + system + irq + softirq: work done by this guest
    steal: int  # time the hypervisor ran something else while this vCPU wanted to run
    total: int


def core_times() -> dict[int, CoreTimes]:
    """Per-CPU tick counters from /proc/stat (same CLK_TCK unit as /proc/<pid>/stat)."""
    out: dict[int, CoreTimes] = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *vals = line.split()
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in vals[:8])
            busy = user + nice + system + irq + softirq
            out[int(name[3:])] = CoreTimes(busy, steal, busy + idle + iowait + steal)
    return out


@dataclass(frozen=True)
class CoreUsage:
    """What the CPUs did between two ``core_times()`` samples, in percent of one core."""

    busy_pct: dict[int, float]
    all_busy_core_s: float  # busy seconds summed over all CPUs
    steal_pct: float  # summed over all CPUs
    wall_s: float


def core_usage(before: Mapping[int, CoreTimes], after: Mapping[int, CoreTimes]) -> CoreUsage:
    busy_pct: dict[int, float] = {}
    all_busy = steal = 0
    wall_ticks = 0
    for cpu in sorted(set(before) & set(after)):
        total = after[cpu].total - before[cpu].total
        busy = after[cpu].busy - before[cpu].busy
        busy_pct[cpu] = 100.0 * busy / total if total > 0 else float("nan")
        all_busy += busy
        steal += after[cpu].steal - before[cpu].steal
        wall_ticks = max(wall_ticks, total)
    return CoreUsage(
        busy_pct=busy_pct,
        all_busy_core_s=all_busy / CLK_TCK,
        steal_pct=100.0 * steal / wall_ticks if wall_ticks else float("nan"),
        wall_s=wall_ticks / CLK_TCK,
    )


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99" -> milliseconds
    non_2xx: int
    socket_errors: dict[str, int]
    cpu_s: float = 0.0  # wrk's own user + system CPU seconds (filled in by run_wrk)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PCT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQS_RE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(text: str) -> WrkResult:
    """Parse ``wrk --latency`` output; raises ValueError when the summary lines are missing."""
    reqs = _REQS_RE.search(text)
    rps = _RPS_RE.search(text)
    if reqs is None or rps is None:
        raise ValueError("wrk output has no request summary")
    latency = {
        pct.rstrip("0").rstrip(".") if "." in pct else pct: round(float(val) * _UNIT_MS[unit], 6)
        for pct, val, unit in _PCT_RE.findall(text)
    }
    if "50" not in latency or "99" not in latency:
        raise ValueError("wrk output has no latency distribution (was --latency given?)")
    non2xx = _NON2XX_RE.search(text)
    sock = _SOCKERR_RE.search(text)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), (int(g) for g in sock.groups()), strict=True))
        if sock
        else {}
    )
    return WrkResult(
        requests=int(reqs.group(1)),
        seconds=float(reqs.group(2)) * _UNIT_MS[reqs.group(3)] / 1e3,
        rps=float(rps.group(1)),
        latency_ms=latency,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors,
    )


def run_wrk(
    children: Children,
    wrk: str,
    url: str,
    *,
    duration_s: int,
    connections: int,
    threads: int,
    cpu: int | None,
    script: Path | None = None,
) -> WrkResult:
    """One bounded wrk run; wrk is a tracked child so Ctrl-C or an error kills it too.

    ``script``: a wrk Lua script (``-s``) that sets the method, headers or body.
    """
    name = f"wrk-{time.monotonic_ns()}"
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--timeout", "2s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    # wrk is our direct child (taskset and nice exec it), so the growth of RUSAGE_CHILDREN across its
    # wait is exactly its CPU time: /proc/<pid>/stat is gone once it has been reaped.
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = children.spawn(name, argv, cpu=cpu)
    try:
        code = child.popen.wait(timeout=duration_s + 30)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"wrk did not finish within {duration_s + 30} s") from exc
    finally:
        children.stop(child, grace_s=1.0)
    text = child.log_path.read_text(errors="replace")
    child.log_path.unlink(missing_ok=True)
    if code != 0:
        raise RuntimeError(f"wrk exited with code {code}: {text.strip()[-300:]}")
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return dataclasses.replace(parse_wrk(text), cpu_s=cpu_s)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into KeyboardInterrupt so ``finally`` blocks run.

    SIGINT is set explicitly because a shell starts background jobs with it ignored, and a
    ``kill -INT`` must still stop the children.
    """

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
