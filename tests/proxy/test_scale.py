"""Many connections against a real ``pulsegate run`` with one worker: slow clients trickling their
request heads must not slow fast clients down, and idle keep-alive connections must stay cheap.

The origin runs in its own process so the test process (the clients) and the origin do not share
a GIL. Both tests raise RLIMIT_NOFILE's soft limit to the hard limit before the gateway starts
(children inherit it) and print what they measured (run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.gateway_process import GatewayProcess, gateway
from tests.support import Client, arun

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import idle_bench

ORIGIN_SCRIPT = """
import asyncio, sys
import uvloop
from pulsegate.origin import Origin, Reply

async def main() -> None:
    origin = Origin(lambda req: Reply(200, body=b"ok"))
    _, port = await origin.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes

uvloop.run(main())
"""


@contextlib.contextmanager
def origin_process() -> Iterator[str]:
    """A real origin (``pulsegate.origin``, 200 "ok") in its own process; yields ``host:port``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ORIGIN_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "origin process did not start"
        yield f"127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.stdin.close()  # its signal to exit
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def raise_nofile(needed: int) -> None:
    """Soft RLIMIT_NOFILE := hard limit (inherited by the gateway started afterwards); skip when
    the hard limit cannot hold ``needed`` descriptors in one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} descriptors needed per process")
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _config(origin: str, limits: dict[str, str]) -> dict[str, Any]:
    return {
        "workers": 1,
        "limits": limits,
        "upstreams": {"app": {"targets": [origin]}},
        "routes": [{"name": "app", "match": {"path_prefix": "/"}, "upstream": "app"}],
    }


def wait_connections(gw: GatewayProcess, at_least: int, timeout: float = 10.0) -> int:
    """Poll the admin API until the worker reports ``at_least`` open client connections (workers
    push their vitals once per ``metrics.interval``: there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = sum(int(w["connections"]) for w in gw.workers())
        if seen >= at_least:
            return seen
        assert time.monotonic() < deadline, f"the gateway reports {seen} connections, expected {at_least}"
        time.sleep(0.1)


def still_open(sock: socket.socket) -> bool:
    """True if the peer has neither closed nor reset the (non-blocking) socket and sent nothing."""
    try:
        sock.recv(1, socket.MSG_PEEK)  # b"": closed; data: nothing was asked for
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False


async def open_socket(port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


async def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body (what the origin and the gateway send)."""
    return await idle_bench.read_response(asyncio.get_running_loop(), sock)


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def percentile(sorted_values: list[float], pct: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * pct / 100))]


SLOW_CLIENTS = 1000
SLOW_GROUPS = 8  # one group trickles per tick: every slow client sends a byte every 8 ticks
TICK_S = 0.01  # -> one byte per client every 80 ms, 12,500 bytes/s in total
FAST_CONNECTIONS, FAST_REQUESTS, FAST_WARMUP, FAST_PACE_S = 4, 400, 5, 0.01
# Longer than what is trickled during the test: every slow head is incomplete until the end.
SLOW_HEAD = (
    b"GET /slow HTTP/1.1\r\nHost: slow.test\r\nConnection: close\r\nX-Pad: " + b"p" * 400 + b"\r\n\r\n"
)


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_slow_clients_do_not_delay_fast_clients(tmp_path: Path) -> None:
    """1,000 clients send their request heads one byte every 80 ms while 4 keep-alive clients make
    paced requests (one per 10 ms each) through the same single worker. Proves: the trickling
    clients (all held open by the worker, which reports them as connections) cost the fast
    clients little: their p99 latency stays under 50 ms; none of the slow connections is dropped;
    and once each slow client finally completes its head, it is answered 200 (the worker parsed
    the trickled bytes correctly)."""
    raise_nofile(SLOW_CLIENTS + 256)
    with (
        origin_process() as origin,
        gateway(tmp_path, _config(origin, {"header_timeout": "30s"})) as gw,
    ):

        async def main() -> list[float]:
            slow: list[socket.socket] = []
            try:
                for _ in range(SLOW_CLIENTS):
                    slow.append(await open_socket(gw.port))
                    # Each trickled byte leaves as its own segment (no Nagle coalescing).
                    slow[-1].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return await trickle_while_measuring(gw, slow)
            finally:
                for sock in slow:
                    sock.close()

        latencies = arun(main(), timeout=30)
    ordered = sorted(latencies)
    p50, p99 = percentile(ordered, 50), percentile(ordered, 99)
    print(
        f"\nfast clients with {SLOW_CLIENTS} slow clients trickling: {len(ordered)} requests, "
        f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, max {ordered[-1] * 1e3:.2f} ms"
    )
    assert p99 < 0.050, f"fast clients' p99 {p99 * 1e3:.1f} ms"


async def trickle_while_measuring(gw: GatewayProcess, slow: list[socket.socket]) -> list[float]:
    loop = asyncio.get_running_loop()
    sent = 0  # head bytes each slow client has sent (all send in lockstep, group by group)
    stop = asyncio.Event()
    dropped: list[int] = []

    async def trickle() -> None:
        nonlocal sent
        start, tick = loop.time(), 0
        while not stop.is_set():
            group = tick % SLOW_GROUPS
            byte = SLOW_HEAD[sent : sent + 1]
            for i in range(group, len(slow), SLOW_GROUPS):
                try:
                    slow[i].send(byte)
                except OSError:
                    dropped.append(i)
            if group == SLOW_GROUPS - 1:
                sent += 1
                assert sent < len(SLOW_HEAD) - 4, "the test ran longer than the slow head lasts"
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * TICK_S - loop.time()))

    async def fast() -> list[float]:
        client = await Client.connect(gw.port)
        out: list[float] = []
        try:
            next_at = loop.time()
            for n in range(FAST_REQUESTS):
                t0 = time.perf_counter()
                resp = await client.request("GET", f"/fast/{n}")
                took = time.perf_counter() - t0
                assert resp.status == 200 and resp.body == b"ok", resp
                if n >= FAST_WARMUP:  # the first requests open the pooled upstream connections
                    out.append(took)
                next_at += FAST_PACE_S
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            await client.close()
        return out

    trickler = asyncio.create_task(trickle())
    try:
        # All slow clients are accepted and trickling before the fast clients start.
        held = await asyncio.to_thread(wait_connections, gw, len(slow))
        print(f"\nworker reports {held} open connections")
        results = await asyncio.gather(*(fast() for _ in range(FAST_CONNECTIONS)))
    finally:
        stop.set()
        await trickler
    assert not dropped, f"{len(dropped)} slow clients could not send"
    assert all(still_open(s) for s in slow), "the worker dropped slow clients during the test"

    # Finish every slow head at once: each must now be answered (Connection: close ends it).
    rest = SLOW_HEAD[sent:]
    sem = asyncio.Semaphore(200)

    async def finish(sock: socket.socket) -> bytes:
        async with sem:
            await loop.sock_sendall(sock, rest)
            return await read_response(sock)

    answers = await asyncio.gather(*(finish(s) for s in slow))
    assert all(a.startswith(b"HTTP/1.1 200 ") and a.endswith(b"\r\n\r\nok") for a in answers)
    return [lat for r in results for lat in r]


IDLE_CONNECTIONS = 10_000
IDLE_CONCURRENCY = 100
IDLE_REQUEST = b"GET /idle HTTP/1.1\r\nHost: idle.test\r\n\r\n"
MAX_KIB_PER_IDLE = 48.0  # a regression bound; docs/benchmarks.md records the measured figure


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_10k_idle_keepalive_connections(tmp_path: Path) -> None:
    """10,000 clients each make one request and then hold their keep-alive connection idle.
    Proves: a single worker keeps all of them (it reports them; none is closed) and still answers
    a fresh request (200) while they are open; and its resident memory grows by at most
    48 KiB per idle connection (VmRSS of the worker process before and after, measured after a
    warm-up at the same concurrency so that the upstream pool and the allocator are warm)."""
    raise_nofile(IDLE_CONNECTIONS + 1024)
    with (
        origin_process() as origin,
        gateway(tmp_path, _config(origin, {"keepalive_timeout": "300s"})) as gw,
    ):
        (worker,) = gw.workers()
        pid = int(worker["pid"])

        async def main() -> tuple[int, int, float]:
            # Warm-up: same concurrency as below, then closed.
            warm = await open_idle(gw.port, IDLE_CONCURRENCY * 4)
            for sock in warm:
                sock.close()
            before = vm_rss_kib(pid)
            idle = await open_idle(gw.port, IDLE_CONNECTIONS)
            try:
                await asyncio.to_thread(wait_connections, gw, IDLE_CONNECTIONS)
                t0 = time.perf_counter()
                status = await asyncio.to_thread(fresh_request, gw.port)
                fresh_s = time.perf_counter() - t0
                assert status == 200
                after = vm_rss_kib(pid)
                assert all(still_open(s) for s in idle), "the worker closed idle connections"
            finally:
                for sock in idle:
                    sock.close()
            return before, after, fresh_s

        before, after, fresh_s = arun(main(), timeout=50)
    per_conn = (after - before) / IDLE_CONNECTIONS
    print(
        f"\nworker VmRSS {before} KiB -> {after} KiB with {IDLE_CONNECTIONS} idle connections: "
        f"{per_conn:.2f} KiB per connection; fresh request 200 in {fresh_s * 1e3:.1f} ms"
    )
    assert per_conn <= MAX_KIB_PER_IDLE, f"{per_conn:.1f} KiB per idle connection"


async def open_idle(port: int, n: int) -> list[socket.socket]:
    """``n`` connections, each after one answered request (200 "ok"), left open and idle."""
    sem = asyncio.Semaphore(IDLE_CONCURRENCY)
    loop = asyncio.get_running_loop()

    async def one() -> socket.socket:
        async with sem:
            sock = await open_socket(port)
            try:
                await loop.sock_sendall(sock, IDLE_REQUEST)
                resp = await read_response(sock)
            except BaseException:
                sock.close()
                raise
            assert resp.startswith(b"HTTP/1.1 200 ") and resp.endswith(b"\r\n\r\nok"), resp
            return sock

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    socks = [r for r in results if isinstance(r, socket.socket)]
    errors = [r for r in results if not isinstance(r, socket.socket)]
    if errors:
        for sock in socks:
            sock.close()
        raise AssertionError(f"{len(errors)} of {n} connections failed, first: {errors[0]!r}")
    return socks


def fresh_request(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/fresh")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()
