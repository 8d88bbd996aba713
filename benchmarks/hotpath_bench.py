"""Per-request Python cost of the proxy path, without sockets.

A client connection and an upstream connection get in-memory transports; each iteration feeds one
request to the client side and one response to the upstream side, exactly as the event loop would.
What is left is the Python work per request (parsing callbacks, routing, balancing, pooling, head
building, response framing) — the part of the CPU cost we control.

    .venv/bin/python benchmarks/hotpath_bench.py [--requests 200000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvloop

from pulsegate.accesslog import AccessLog
from pulsegate.config import load_config_text
from pulsegate.proxy.client import ClientConnection
from pulsegate.proxy.outbox import Outbox
from pulsegate.proxy.pool import IDLE
from pulsegate.proxy.server import Server
from pulsegate.proxy.upstream import UpstreamConnection

CONFIG = """
listen: "127.0.0.1:0"
upstreams: {bench: {targets: ["127.0.0.1:9"]}}
routes: [{name: bench, match: {path_prefix: "/"}, upstream: bench}]
"""

# What wrk sends, and what the nginx origin of benchmarks/proxy_bench.py answers.
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 16:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n"
)
BROWSER_REQUEST = (
    b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0\r\n"
    b"Accept: application/json, text/plain, */*\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nReferer: https://shop.example.com/items\r\n"
    b"Cookie: session=abc123; theme=dark\r\nSec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\n"
    b"Sec-Fetch-Site: same-origin\r\nConnection: keep-alive\r\nCache-Control: no-cache\r\n\r\n"
)


class MemoryTransport:
    """Just enough of asyncio.Transport for the proxy: writes are counted and dropped."""

    def __init__(self) -> None:
        self.written = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, parts: Any) -> None:
        for p in parts:
            self.written += len(p)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class ManualLoop:
    """The outbox's loop: flushes are run by hand here (no loop runs), so scheduling is a no-op."""

    def call_soon(self, callback: Any) -> None:
        pass


def measure(requests: int, request: bytes, *, metrics: bool = True, access_log: str | None = None) -> float:
    """Nanoseconds of Python per proxied request."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        config = load_config_text(CONFIG + f"metrics: {{enabled: {str(metrics).lower()}}}\n")
        log = AccessLog(access_log, max_buffer=4096) if access_log else None
        server = Server(config, access_log=log)
        server.attach_loop(loop)
        # The loop does not run here: flush by hand, as the loop does once per iteration.
        server.outbox = Outbox(ManualLoop())  # type: ignore[arg-type]
        flush = server.outbox.flush
        pool = next(iter(server.runtime.upstreams["bench"].pools.values()))
        up = UpstreamConnection(pool)
        up.connection_made(MemoryTransport())  # type: ignore[arg-type]
        up.state = IDLE
        pool.idle.append(up)
        client = ClientConnection(server)
        client.connection_made(MemoryTransport())  # type: ignore[arg-type]
        feed_client, feed_upstream = client.data_received, up.data_received
        for _ in range(1000):  # warm up the specializing interpreter
            feed_client(request)
            feed_upstream(RESPONSE)
            flush()
        start = time.perf_counter_ns()
        for _ in range(requests):
            feed_client(request)
            flush()  # the event loop flushes once per iteration; here once per request
            feed_upstream(RESPONSE)
            flush()
            if log is not None and len(log._buffer) >= 4096:
                log.flush()  # the loop's timer would; counted, as it runs on the same core
        elapsed = time.perf_counter_ns() - start
        assert up.client is None and pool.idle, "the exchange did not complete"
        if log is not None:
            log.close()
        return elapsed / requests
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the wrk-style request")
    ap.add_argument("--no-metrics", action="store_true", help="metrics.enabled: false")
    ap.add_argument("--access-log", metavar="PATH", help="write the access log to PATH (e.g. /dev/null)")
    args = ap.parse_args()
    opts = {"metrics": not args.no_metrics, "access_log": args.access_log}
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(measure, args.requests, REQUEST)
        prof.dump_stats("/tmp/hotpath.prof")
        pstats.Stats("/tmp/hotpath.prof").sort_stats("tottime").print_stats(25)
        return
    for name, req in (("wrk GET (1 header)", REQUEST), ("browser GET (12 headers)", BROWSER_REQUEST)):
        ns = min(measure(args.requests, req, **opts) for _ in range(3))
        print(f"hot path, {name}: {ns / 1000:.2f} us of Python per proxied request")


if __name__ == "__main__":
    main()
