"""What a request and its response look like after passing the gateway: real gateway, real origins."""

from __future__ import annotations

import asyncio
import json

from pulsegate.config import load_config_text
from pulsegate.origin import Reply, Request
from tests.support import Client, arun, gateway_config, get, origins, raw, running_gateway


def echo(req: Request) -> Reply:
    body = json.dumps(
        {"method": req.method.decode(), "target": req.target.decode(), "body": req.body.decode("latin-1")}
    ).encode()
    return Reply(200, [(b"Content-Type", b"application/json")], body)


def one_route(target: str, **route: object) -> str:
    return gateway_config({"u": [target]}, [{"name": "r", "upstream": "u", **route}])


def test_forwarding_headers_both_ways() -> None:
    async def main() -> None:
        async with origins(echo) as (o,), running_gateway(one_route(o.target)) as (_, port):
            resp = await get(port, "/a/b?x=1", headers=[("Host", "Shop.Example:8080"), ("Accept", "*/*")])
            assert resp.status == 200
            assert json.loads(resp.body)["target"] == "/a/b?x=1"
            req = o.requests[0]
            assert req.header("host") == b"Shop.Example:8080"  # preserved by default
            assert req.header("accept") == b"*/*"
            assert req.header("x-forwarded-for") == b"127.0.0.1"
            assert req.header("x-forwarded-proto") == b"http"
            assert req.header("x-forwarded-host") == b"Shop.Example:8080"
            assert req.header("via") == b"1.1 pulsegate"
            rid = req.header("x-request-id")
            assert rid and resp.header("x-request-id") == rid
            assert resp.header("via") == b"1.1 pulsegate"
            assert resp.header("content-type") == b"application/json"

    arun(main())


def test_request_id_kept_when_sane_replaced_when_not() -> None:
    async def main() -> None:
        async with origins(echo) as (o,), running_gateway(one_route(o.target)) as (_, port):
            r1 = await get(port, headers=[("Host", "a"), ("X-Request-Id", "abc-123")])
            r2 = await get(port, headers=[("Host", "a"), ("X-Request-Id", "bad id with spaces")])
            assert r1.header("x-request-id") == b"abc-123"
            assert o.requests[0].header("x-request-id") == b"abc-123"
            assert r2.header("x-request-id") not in (None, b"bad id with spaces")
            assert o.requests[1].header_all("x-request-id") == [r2.header("x-request-id")]

    arun(main())


def test_existing_forwarding_headers_are_extended_or_replaced() -> None:
    async def main() -> None:
        async with origins(echo) as (o,), running_gateway(one_route(o.target)) as (_, port):
            await get(
                port,
                headers=[
                    ("Host", "a"),
                    ("X-Forwarded-For", "10.0.0.1"),
                    ("X-Forwarded-Proto", "https"),
                    ("Via", "1.0 edge"),
                ],
            )
            req = o.requests[0]
            assert req.header_all("x-forwarded-for") == [b"10.0.0.1, 127.0.0.1"]
            assert req.header_all("x-forwarded-proto") == [b"http"]
            assert req.header_all("via") == [b"1.0 edge, 1.1 pulsegate"]

    arun(main())


def test_hop_by_hop_headers_removed_both_ways() -> None:
    def handler(req: Request) -> Reply:
        return Reply(
            200,
            [
                (b"Connection", b"X-Secret"),
                (b"X-Secret", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"X-Ok", b"y"),
            ],
            b"ok",
        )

    async def main() -> None:
        async with origins(handler) as (o,), running_gateway(one_route(o.target)) as (_, port):
            resp = await get(
                port,
                headers=[
                    ("Host", "a"),
                    ("Connection", "keep-alive, X-Drop-Me"),
                    ("X-Drop-Me", "1"),
                    ("Keep-Alive", "timeout=5"),
                    ("TE", "trailers"),
                    ("Proxy-Connection", "keep-alive"),
                    ("Upgrade", "foo/2"),
                    ("X-Keep", "1"),
                ],
            )
            names = {n.lower() for n, _ in o.requests[0].headers}
            assert b"x-keep" in names
            for dropped in (
                b"connection",
                b"x-drop-me",
                b"keep-alive",
                b"te",
                b"proxy-connection",
                b"upgrade",
            ):
                assert dropped not in names
            rnames = {n.lower() for n, _ in resp.headers}
            assert b"x-ok" in rnames
            assert not rnames & {b"x-secret", b"keep-alive"}

    arun(main())


def test_strip_prefix() -> None:
    async def main() -> None:
        async with origins(echo) as (o,):
            cfg = one_route(o.target, match={"path_prefix": "/api/"}, strip_prefix=True)
            async with running_gateway(cfg) as (_, port):
                await get(port, "/api/users/7?full=1")
                await get(port, "/api/")
        assert [r.target for r in o.requests] == [b"/users/7?full=1", b"/"]

    arun(main())


def test_keepalive_reuses_one_upstream_connection() -> None:
    async def main() -> None:
        async with origins(echo) as (o,), running_gateway(one_route(o.target)) as (_, port):
            c = await Client.connect(port)
            for i in range(20):
                resp = await c.request("GET", f"/n{i}")
                assert resp.status == 200 and resp.keep_alive
            await c.close()
            c2 = await Client.connect(port)
            assert (await c2.request("GET", "/again")).status == 200
            await c2.close()
            assert o.state.connections == 1
            assert len(o.requests) == 21

    arun(main())


def test_pipelined_requests_answered_in_order() -> None:
    async def slow_first(req: Request) -> Reply:
        if req.path == b"/slow":
            await asyncio.sleep(0.05)  # the origin is slow; ordering must not depend on timing
        return Reply(200, body=req.path)

    async def main() -> None:
        async with origins(slow_first) as (o,), running_gateway(one_route(o.target)) as (_, port):
            c = await Client.connect(port)
            paths = ["/slow", "/b", "/c", "/d"]
            c.writer.write(b"".join(f"GET {p} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for p in paths))
            got = await c.read_responses(4)
            assert [r.body for r in got] == [p.encode() for p in paths]
            await c.close()

    arun(main())


def test_bodyless_responses_and_head() -> None:
    def handler(req: Request) -> Reply:
        status = int(req.path[1:]) if req.path[1:].isdigit() else 200
        return Reply(status, [(b"ETag", b'"x"')], b"" if status in (204, 304) else b"hello")

    async def main() -> None:
        async with origins(handler) as (o,), running_gateway(one_route(o.target)) as (_, port):
            c = await Client.connect(port)
            head = await c.request("HEAD", "/")
            assert head.status == 200 and head.body == b"" and head.header("content-length") == b"5"
            r204 = await c.request("GET", "/204")
            assert r204.status == 204 and r204.body == b"" and r204.header("content-length") is None
            r304 = await c.request("GET", "/304")
            assert r304.status == 304 and r304.body == b""
            after = await c.request("GET", "/")  # the connection is still in sync
            assert after.body == b"hello"
            await c.close()

    arun(main())


def test_interim_103_forwarded_and_100_continue() -> None:
    async def main() -> None:
        async with origins(echo) as (o,), running_gateway(one_route(o.target)) as (_, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            interim = await r.readuntil(b"\r\n\r\n")
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            w.write(b"hello")
            head = await r.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            w.close()
            assert o.requests[0].body == b"hello"
            assert o.requests[0].header("expect") is None

    arun(main())


def test_request_bodies_content_length_and_chunked() -> None:
    async def main() -> None:
        async with origins(echo) as (o,), running_gateway(one_route(o.target)) as (_, port):
            c = await Client.connect(port)
            r1 = await c.request("POST", "/cl", body=b"x" * 100_000)
            assert r1.status == 200
            c.writer.write(
                b"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            (r2,) = await c.read_responses(1)
            assert json.loads(r2.body)["body"] == "hello world"
            await c.close()
            assert o.requests[0].body == b"x" * 100_000
            assert o.requests[1].header("transfer-encoding") == b"chunked"

    arun(main())


def test_chunked_response_to_http10_client_is_close_delimited() -> None:
    def handler(req: Request) -> Reply:
        return Reply(200, chunks=[b"part1-", b"part2"])

    async def main() -> None:
        async with origins(handler) as (o,), running_gateway(one_route(o.target)) as (_, port):
            out = await raw(port, b"GET / HTTP/1.0\r\n\r\n")
            head, _, body = out.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert b"Connection: close" in head and b"Transfer-Encoding" not in head
            assert body == b"part1-part2"
            resp = await get(port)  # an HTTP/1.1 client gets it chunked
            assert resp.body == b"part1-part2" and resp.header("transfer-encoding") == b"chunked"

    arun(main())


def test_http10_keepalive() -> None:
    async def main() -> None:
        async with origins(echo) as (o,), running_gateway(one_route(o.target)) as (_, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(2):
                w.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                head = await r.readuntil(b"\r\n\r\n")
                assert b"Connection: keep-alive" in head
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await r.readexactly(length)
            w.close()

    arun(main())


def test_keepalive_timeout_zero_closes_after_each_response() -> None:
    async def main() -> None:
        async with origins(echo) as (o,):
            cfg = gateway_config({"u": [o.target]}, [{"upstream": "u"}], limits={"keepalive_timeout": 0})
            async with running_gateway(cfg) as (_, port):
                out = await raw(port, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        assert out.count(b"HTTP/1.1 200") == 1 and b"\r\nConnection: close\r\n" in out
        assert [r.target for r in o.requests] == [b"/a"]

    arun(main())


def test_applied_config_takes_effect_on_an_open_keepalive_connection() -> None:
    async def main() -> None:
        async with (
            origins(lambda r: Reply(200, body=b"old"), lambda r: Reply(200, body=b"new")) as (a, b),
            running_gateway(one_route(a.target)) as (server, port),
        ):
            c = await Client.connect(port)
            assert (await c.request()).body == b"old"
            server.apply(load_config_text(one_route(b.target)))
            assert (await c.request()).body == b"new"  # next request, same connection
            await c.close()

    arun(main())
