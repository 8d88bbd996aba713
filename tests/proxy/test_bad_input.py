"""Protocol abuse over raw sockets: the right status, ``Connection: close``, a closed connection,
and nothing of the bad request at the upstream (asserted on the origin's raw received bytes)."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest

from pulsegate.origin import Reply, Request
from tests.support import arun, gateway_config, get, origins, raw, running_gateway


def ok(req: Request) -> Reply:
    return Reply(200, body=b"fine")


LIMITS = {"max_header_bytes": "2KiB", "max_body_bytes": "1KiB", "header_timeout": "300ms"}

CASES = [
    (
        "cl_and_te",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("two_cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (
        "same_cl_twice",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "bad_chunk_size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    ("bare_lf", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare_lf_in_header", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    ("nul_in_header", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400),
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("missing_host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad_target", b"GET nope HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("negative_cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("te_gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501),
    (
        "te_gzip_chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    ("http2_version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    ("expect_other", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx", 417),
    ("header_block_too_large", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n", 431),
    ("one_endless_header", b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 5000, 431),
    ("url_too_long", b"GET /" + b"u" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 431),
    ("body_too_large_cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + b"b" * 2000, 413),
    (
        "body_too_large_chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b"c" * 1024
        + b"\r\n10\r\n"
        + b"d" * 16
        + b"\r\n0\r\n\r\n",
        413,
    ),
]


@pytest.mark.parametrize(("name", "payload", "status"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_refused_and_never_reaches_upstream(name: str, payload: bytes, status: int) -> None:
    async def main() -> None:
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits=LIMITS)
            async with running_gateway(cfg) as (_, port):
                out = await raw(port, payload)  # returns once the gateway closed the connection
                assert out.split(b"\r\n", 1)[0].split(b" ")[1] == str(status).encode(), out[:200]
                head = out.split(b"\r\n\r\n", 1)[0]
                assert b"\r\nConnection: close" in head
                assert b"request id" in out
                # the gateway still serves others
                assert (await get(port)).status == 200
            assert o.state.raw.count(b"\r\n\r\n") == 1, o.state.raw[:300]  # only the follow-up GET
            assert len(o.requests) == 1

    arun(main())


def upload_past_refusal(port: int, length: int) -> tuple[str, bytes]:
    """Announce ``length`` body bytes and send them all although the gateway refuses at once;
    then read the answer. Returns (the error sending met, or "", the answer). Blocking on
    purpose: nothing is read until the upload is over, as a simple client does."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % length)
        block = b"x" * 65536
        error = ""
        try:
            for _ in range(length // len(block)):
                s.sendall(block)
        except OSError as exc:
            error = type(exc).__name__
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return error, out


def test_refusal_lets_a_client_finish_its_upload() -> None:
    # Closing a socket with unread bytes makes the kernel answer the rest of the upload with a
    # reset: the client sees "connection reset" while sending, and a stack that drops its receive
    # buffer on a reset loses the 413 too. The gateway half-closes after the answer and drops what
    # still comes (nginx's lingering close), so the upload ends normally and the 413 is read.
    async def main() -> None:
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits=LIMITS)
            async with running_gateway(cfg) as (_, port):
                for _ in range(3):
                    error, out = await asyncio.to_thread(upload_past_refusal, port, 4 << 20)
                    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
                    assert b"\r\nConnection: close" in out
                    assert error == "", f"the upload was cut: {error}"
            assert not o.requests

    arun(main(), timeout=30)


def test_lingering_connection_closes_when_the_client_goes_quiet() -> None:
    async def main() -> None:
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits=LIMITS)
            async with running_gateway(cfg) as (server, port):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)
                out = await r.read()  # the answer, then the gateway's FIN
                assert out.startswith(b"HTTP/1.1 413 ")
                assert len(server.connections) == 1  # half-closed, still draining the client
                (conn,) = server.connections
                server.sweep(conn.deadline - 0.1)
                assert len(server.connections) == 1
                server.sweep(conn.deadline + 0.1)  # quiet for the lingering timeout: closed
                server.outbox.flush()  # what the loop does at the end of this iteration
                assert conn.transport.is_closing()
                w.close()

    arun(main())


def test_trickled_head_gets_408_after_header_timeout() -> None:
    async def main() -> None:
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits=LIMITS)
            async with running_gateway(cfg) as (_, port):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                loop = asyncio.get_running_loop()
                start = loop.time()
                w.write(b"GET / HTTP/1.1\r\nHo")
                out = await r.read()  # EOF when the gateway gives up on us
                elapsed = loop.time() - start
                assert out.startswith(b"HTTP/1.1 408 "), out
                assert 0.25 <= elapsed < 2.0
                w.close()
            assert o.state.raw == b""

    arun(main())


def test_idle_connection_closed_quietly_after_keepalive_timeout() -> None:
    async def main() -> None:
        async with origins(ok) as (o,):
            limits = {**LIMITS, "keepalive_timeout": "200ms"}
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits=limits)
            async with running_gateway(cfg) as (_, port):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                head = await r.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                assert await r.readexactly(4) == b"fine"
                assert await r.read() == b""  # closed without a response
                w.close()

    arun(main())


def test_small_body_is_withheld_until_complete() -> None:
    """A body within request_buffer is validated whole before anything goes upstream."""

    async def main() -> None:
        async with origins(ok) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits=LIMITS)
            async with running_gateway(cfg) as (_, port):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
                await w.drain()
                # A negative check (nothing must happen), so there is no event to await: give the
                # gateway loop turns to (wrongly) forward the head, then look at the origin.
                for _ in range(50):
                    await asyncio.sleep(0)
                assert o.state.raw == b""
                w.write(b"0\r\n\r\n")
                head = await r.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                w.close()
            assert o.requests[0].body == b"abc"

    arun(main())


def test_malformed_request_behind_pipelined_ones_is_refused_after_their_responses() -> None:
    async def slow(req: Request) -> Reply:
        await asyncio.sleep(0.05)  # the good requests are still in flight when the bad one arrives
        return Reply(200, body=req.path)

    async def main() -> None:
        async with origins(slow) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits=LIMITS)
            async with running_gateway(cfg) as (_, port):
                out = await raw(
                    port,
                    b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
                )
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", out)
        assert statuses == [b"200", b"200", b"400"], out
        assert out.index(b"/one") < out.index(b"/two") < out.index(b"400 Bad Request")
        assert [r.path for r in o.requests] == [b"/one", b"/two"]

    arun(main())
