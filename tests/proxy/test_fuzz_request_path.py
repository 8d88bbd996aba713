"""Fuzzing the whole request path over real sockets: mutated request streams go to a running
gateway; it must answer or close promptly, keep serving others, and forward only requests the
origin's strict parser accepts."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulsegate.origin import Reply, Request
from tests.support import arun, gateway_config, get, origins, running_gateway

_PIECES = [
    b"GET / HTTP/1.1\r\n",
    b"POST /p?q=1 HTTP/1.1\r\n",
    b"HEAD /h HTTP/1.0\r\n",
    b"GET http://x.example/abs HTTP/1.1\r\n",
    b"Host: a\r\n",
    b"Host: b\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: 300\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive, X-A\r\n",
    b"X-A: 1\r\n",
    b"Expect: 100-continue\r\n",
    b"X-Request-Id: abc\r\n",
    b"\r\n",
    b"abc",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"zz\r\n",
    b"\n",
    b"\x00",
    b" folded\r\n",
]


def _ok(req: Request) -> Reply:
    return Reply(200, body=b"ok")


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=8)), min_size=1, max_size=16))
def test_gateway_survives_mutated_request_streams(parts: list[bytes]) -> None:
    async def main() -> None:
        async with origins(_ok) as (o,):
            cfg = gateway_config(
                {"u": [o.target]},
                [{"upstream": "u"}],
                limits={"header_timeout": "300ms", "keepalive_timeout": "300ms", "max_body_bytes": "1KiB"},
                upstream_options={"u": {"timeouts": {"read": "1s"}}},
            )
            async with running_gateway(cfg) as (_, port):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"".join(parts))
                with contextlib.suppress(ConnectionError):
                    await w.drain()
                # Whatever came in, the gateway answers and/or closes: an incomplete request ends
                # with 408 (header_timeout), an idle kept-alive one with a quiet close.
                with contextlib.suppress(ConnectionError):
                    async with asyncio.timeout(5):
                        while await r.read(65536):
                            pass
                w.close()
                assert (await get(port, "/after")).status == 200  # still serving
        # Everything that reached the origin parsed cleanly there.
        assert o.requests[-1].path == b"/after"
        assert o.state.bad_requests == 0

    arun(main(), timeout=20)
