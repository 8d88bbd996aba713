"""Routing and balancing through a running gateway: which origin answered is the assertion."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from pulsegate.origin import Reply, Request
from tests.support import Client, arun, gateway_config, origins, running_gateway


def named(name: str) -> Callable[[Request], Reply]:
    def handle(req: Request) -> Reply:
        return Reply(200, body=name.encode())

    return handle


def test_host_path_method_header_routing() -> None:
    async def main() -> None:
        async with origins(
            named("api"), named("admin"), named("wild"), named("fallback"), named("v2")
        ) as os_:
            api, admin, wild, fallback, v2 = os_
            cfg = gateway_config(
                {
                    "api": [api.target],
                    "admin": [admin.target],
                    "wild": [wild.target],
                    "fb": [fallback.target],
                    "v2": [v2.target],
                },
                [
                    {"name": "fallback", "upstream": "fb"},
                    {"name": "wild", "upstream": "wild", "match": {"host": "*.example.com"}},
                    {
                        "name": "api",
                        "upstream": "api",
                        "match": {"host": "api.example.com", "path_prefix": "/v1/"},
                    },
                    {
                        "name": "admin",
                        "upstream": "admin",
                        "match": {"host": "api.example.com", "path": "/admin", "methods": ["POST"]},
                    },
                    {
                        "name": "v2",
                        "upstream": "v2",
                        "match": {"path_regex": "^/v2/[0-9]+$", "headers": {"x-env": "prod"}},
                    },
                ],
            )
            async with running_gateway(cfg) as (_, port):
                c = await Client.connect(port)

                async def who(method: str, path: str, host: str, *extra: tuple[str, str]) -> bytes:
                    return (await c.request(method, path, headers=[("Host", host), *extra])).body

                assert await who("GET", "/v1/users", "API.example.com:8080") == b"api"
                assert await who("POST", "/admin", "api.example.com") == b"admin"
                assert await who("GET", "/admin", "api.example.com") == b"wild"  # method fails: next group
                assert await who("GET", "/x", "deep.sub.example.com") == b"wild"
                assert await who("GET", "/x", "example.com") == b"fallback"
                assert await who("GET", "/v2/42", "other", ("X-Env", "prod")) == b"v2"
                assert await who("GET", "/v2/42", "other", ("X-Env", "dev")) == b"fallback"
                await c.close()

    arun(main())


def test_round_robin_weights_through_the_gateway() -> None:
    async def main() -> None:
        async with origins(named("a"), named("b")) as (a, b):
            cfg = gateway_config({"u": []}, [{"upstream": "u"}])
            cfg = cfg.replace("targets: []", f"targets: ['{a.target}', {{address: '{b.target}', weight: 3}}]")
            async with running_gateway(cfg) as (_, port):
                c = await Client.connect(port)
                seen = Counter([(await c.request()).body for _ in range(40)])
                await c.close()
        assert seen == {b"a": 10, b"b": 30}

    arun(main())


def test_consistent_hash_sticks_a_key_to_one_target() -> None:
    async def main() -> None:
        async with origins(named("a"), named("b"), named("c")) as os_:
            cfg = gateway_config(
                {"u": [o.target for o in os_]},
                [{"upstream": "u"}],
                upstream_options={"u": {"balance": "consistent_hash", "hash_key": "header:x-user"}},
            )
            async with running_gateway(cfg) as (_, port):
                c = await Client.connect(port)
                for user in ("alice", "bob", "carol", "dave"):
                    got = {
                        (await c.request(headers=[("Host", "h"), ("X-User", user)])).body for _ in range(5)
                    }
                    assert len(got) == 1, (user, got)
                await c.close()

    arun(main())


def test_remembered_route_follows_method_host_path_and_reloads() -> None:
    """One keep-alive connection repeating and varying its request line: the per-connection
    memory of the last lookup must never answer for a different request or an old table."""
    from pulsegate.config import load_config_text

    async def main() -> None:
        async with origins(named("get"), named("post"), named("other"), named("new")) as os_:
            get_o, post_o, other_o, new_o = os_
            routes = [
                {"name": "other", "upstream": "other", "match": {"host": "other.test"}},
                {"name": "post", "upstream": "post", "match": {"methods": ["POST"]}},
                {"name": "get", "upstream": "get"},
            ]
            ups = {"get": [get_o.target], "post": [post_o.target], "other": [other_o.target]}
            async with running_gateway(gateway_config(ups, routes)) as (server, port):
                c = await Client.connect(port)

                async def who(method: str, path: str, host: str = "a.test") -> bytes:
                    return (await c.request(method, path, headers=[("Host", host)])).body

                assert [await who("GET", "/x") for _ in range(3)] == [b"get"] * 3
                assert await who("POST", "/x") == b"post"
                assert await who("GET", "/x", "other.test") == b"other"
                assert await who("GET", "/x") == b"get"
                ups2 = {**ups, "new": [new_o.target]}
                server.apply(load_config_text(gateway_config(ups2, [{"name": "new", "upstream": "new"}])))
                assert await who("GET", "/x") == b"new"
                await c.close()

    arun(main())
