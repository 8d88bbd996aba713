"""Defaults and validation rules of the config model, checked through the loader's messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pulsegate.config import (
    BALANCE_POLICIES,
    AdminConfig,
    ConfigError,
    GatewayConfig,
    LimitsConfig,
    MatchConfig,
    PoolConfig,
    RouteConfig,
    TargetConfig,
    TimeoutsConfig,
    UpstreamConfig,
    load_config_text,
)

MINIMAL = "upstreams: {a: {targets: ['127.0.0.1:1']}}\nroutes: [{upstream: a}]\n"


def load(text: str) -> GatewayConfig:
    return load_config_text(text, source="gw.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.problems


def upstream(body: str) -> str:
    """A config with one upstream ``api`` whose mapping body is ``body``."""
    return f"upstreams:\n  api: {{targets: ['127.0.0.1:1'], {body}}}\n"


def route(body: str) -> str:
    """A config with upstream ``a`` and one route whose mapping body is ``body``."""
    return f"upstreams: {{a: {{targets: ['127.0.0.1:1']}}}}\nroutes: [{{upstream: a, {body}}}]\n"


# --- defaults -------------------------------------------------------------------------------------


def test_empty_document_is_valid_with_all_defaults() -> None:
    cfg = load("")
    assert cfg == GatewayConfig()
    assert cfg.listen == ["127.0.0.1:8080"]
    assert cfg.workers == "auto"
    assert cfg.shutdown_timeout == 30.0
    assert cfg.admin == AdminConfig(listen="127.0.0.1:9090", token=None)
    assert cfg.upstreams == {}
    assert cfg.routes == []
    assert cfg.limits == LimitsConfig()


@pytest.mark.parametrize(
    "text", ["{}", "# nothing here\n", "---\n", "null", "upstreams:\nroutes:\nadmin:\nlimits:\n"]
)
def test_empty_equivalents(text: str) -> None:
    assert load(text) == GatewayConfig()


def test_limits_defaults() -> None:
    limits = LimitsConfig()
    assert limits.max_header_bytes == 32 * 1024
    assert limits.max_body_bytes == 10 * 1024 * 1024
    assert limits.header_timeout == 10.0
    assert limits.keepalive_timeout == 75.0
    assert limits.request_buffer == 64 * 1024
    assert limits.max_pipelined == 32


def test_minimal_working_config_defaults() -> None:
    cfg = load(MINIMAL)
    up = cfg.upstreams["a"]
    assert up.targets == [TargetConfig(address="127.0.0.1:1", weight=1)]
    assert up.balance == "round_robin"
    assert up.hash_key == "client_ip"
    assert up.pool == PoolConfig(max_idle=64, max_connections=1024, idle_timeout=60.0)
    assert up.timeouts == TimeoutsConfig(connect=2.0, read=30.0)
    (r,) = cfg.routes
    assert r.name == "route-0"
    assert r.upstream == "a"
    assert r.match == MatchConfig()
    assert (r.match.host, r.match.path, r.match.path_prefix, r.match.path_regex) == (None,) * 4
    assert (r.match.methods, r.match.headers) == ([], {})
    assert r.strip_prefix is False
    assert r.preserve_host is True


def test_default_route_names_use_the_index() -> None:
    cfg = load(
        "upstreams: {a: {targets: ['127.0.0.1:1']}}\n"
        "routes: [{upstream: a}, {name: named, upstream: a}, {upstream: a, name: null}]"
    )
    assert [r.name for r in cfg.routes] == ["route-0", "named", "route-2"]


def test_models_are_frozen() -> None:
    cfg = load(MINIMAL)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.workers = 2  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.upstreams["a"].balance = "random"  # type: ignore[misc]


def test_programmatic_construction_checks_references() -> None:
    with pytest.raises(ValidationError, match=r"routes\[0\].upstream: unknown upstream 'x'"):
        GatewayConfig(routes=[RouteConfig(name="r", upstream="x")])
    ok = GatewayConfig(
        upstreams={"x": UpstreamConfig(targets=[TargetConfig(address="h:1")])},
        routes=[RouteConfig(name="r", upstream="x")],
    )
    assert ok.routes[0].upstream == "x"


# --- top level ------------------------------------------------------------------------------------


def test_listen_string_or_list() -> None:
    assert load("listen: '0.0.0.0:80'").listen == ["0.0.0.0:80"]
    assert load("listen: ['0.0.0.0:80', '[::1]:8080']").listen == ["0.0.0.0:80", "[::1]:8080"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: nope", ["gw.yaml: listen: expected host:port, got 'nope'"]),
        ("listen: ':80'", ["gw.yaml: listen: missing host in ':80'"]),
        ("listen: 'h:65536'", ["gw.yaml: listen: port out of range in 'h:65536'"]),
        ("listen: ['h:1', 'h:x']", ["gw.yaml: listen[1]: expected host:port, got 'h:x'"]),
        ("listen: []", ["gw.yaml: listen: must not be empty"]),
        ("listen: 8080", ["gw.yaml: listen: must be an address 'host:port' or a list of them"]),
        ("listen: [8080]", ["gw.yaml: listen[0]: must be a string"]),
        ("listen: ['h:1', 'H:1']", ["gw.yaml: listen[1]: duplicate address 'H:1' (first at listen[0])"]),
        ("listen: 'h:1'\nadmin: {listen: 'h:1'}", ["gw.yaml: admin.listen: same address as listen"]),
        (
            "admin: {listen: '127.0.0.1:8080'}",
            ["gw.yaml: admin.listen: same address as the default listen address 127.0.0.1:8080"],
        ),
    ],
)
def test_listen_rules(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_listen_port_zero_means_ephemeral() -> None:
    cfg = load("listen: ['127.0.0.1:0', '127.0.0.1:0']\nadmin: {listen: '127.0.0.1:0'}")
    assert cfg.listen == ["127.0.0.1:0", "127.0.0.1:0"]
    assert cfg.admin.listen == "127.0.0.1:0"


@pytest.mark.parametrize(("text", "value"), [("workers: 4", 4), ("workers: auto", "auto")])
def test_workers(text: str, value: int | str) -> None:
    assert load(text).workers == value


@pytest.mark.parametrize("bad", ["0", "-1", "many", "true", "2.5", "'4'", "[1]"])
def test_workers_rules(bad: str) -> None:
    (line,) = problems(f"workers: {bad}")
    assert line.startswith("gw.yaml: workers: must be an integer >= 1 or 'auto', got ")


def test_worker_count() -> None:
    assert GatewayConfig(workers=3).worker_count() == 3
    assert GatewayConfig(workers="auto").worker_count() >= 1


def test_shutdown_timeout_units() -> None:
    assert load("shutdown_timeout: 1.5m").shutdown_timeout == 90.0
    assert load("shutdown_timeout: 0").shutdown_timeout == 0.0


def test_admin() -> None:
    admin = load("admin: {listen: '0.0.0.0:9999', token: s3cret}").admin
    assert admin == AdminConfig(listen="0.0.0.0:9999", token="s3cret")
    assert problems("admin: {token: ''}") == ["gw.yaml: admin.token: must not be empty"]
    assert problems("admin: {token: 1234}") == ["gw.yaml: admin.token: must be a string"]
    assert problems("admin: {listen: x}") == ["gw.yaml: admin.listen: expected host:port, got 'x'"]
    assert problems("admin: on") == ["gw.yaml: admin: must be a mapping"]


# --- upstreams ------------------------------------------------------------------------------------


def test_target_forms() -> None:
    cfg = load("upstreams: {api: {targets: ['127.0.0.1:9001', {address: '127.0.0.1:9002', weight: 3}]}}")
    assert cfg.upstreams["api"].targets == [
        TargetConfig(address="127.0.0.1:9001", weight=1),
        TargetConfig(address="127.0.0.1:9002", weight=3),
    ]


@pytest.mark.parametrize("name", ["api", "API_v2", "a.b-c", "0"])
def test_upstream_names_accepted(name: str) -> None:
    assert name in load(f"upstreams: {{'{name}': {{targets: ['h:1']}}}}").upstreams


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "upstreams: {'a b': {targets: ['h:1']}}",
            "gw.yaml: upstreams['a b']: invalid name 'a b': use letters, digits, '_', '.' and '-'",
        ),
        (
            "upstreams: {'a/b': {targets: ['h:1']}}",
            "gw.yaml: upstreams.a/b: invalid name 'a/b': use letters, digits, '_', '.' and '-'",
        ),
        ("upstreams: {12: {targets: ['h:1']}}", "gw.yaml: upstreams.12: key must be a string (quote it)"),
        ("upstreams: [a]", "gw.yaml: upstreams: must be a mapping"),
        ("upstreams: {a: }", "gw.yaml: upstreams.a: must be a mapping"),
    ],
)
def test_upstream_name_rules(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("targets: []", "upstreams.api.targets: must not be empty"),
        ("targets: 'h:1'", "upstreams.api.targets: must be a list"),
        ("targets: ['h']", "upstreams.api.targets[0]: expected host:port, got 'h'"),
        ("targets: ['h:0']", "upstreams.api.targets[0]: port out of range in 'h:0'"),
        ("targets: [{address: 'h'}]", "upstreams.api.targets[0].address: expected host:port, got 'h'"),
        ("targets: [{weight: 2}]", "upstreams.api.targets[0].address: required"),
        ("targets: [{address: 'h:1', weight: 0}]", "upstreams.api.targets[0].weight: must be at least 1"),
        ("targets: [{address: 'h:1', weight: 1.5}]", "upstreams.api.targets[0].weight: must be an integer"),
        ("targets: [{address: 'h:1', weight: '2'}]", "upstreams.api.targets[0].weight: must be an integer"),
        ("targets: [{address: 'h:1', weight: true}]", "upstreams.api.targets[0].weight: must be an integer"),
        (
            "targets: [5]",
            "upstreams.api.targets[0]: must be an address 'host:port' or a mapping with address and weight",
        ),
        (
            "targets: ['h:1', 'h:2', {address: 'H:1'}]",
            "upstreams.api.targets[2]: duplicate target address 'H:1' (first at targets[0])",
        ),
        (
            "targets: ['[::1]:80', '::1:80']",
            "upstreams.api.targets[1]: duplicate target address '::1:80' (first at targets[0])",
        ),
    ],
)
def test_target_rules(body: str, expected: str) -> None:
    assert problems(f"upstreams:\n  api: {{{body}}}\n") == [f"gw.yaml: {expected}"]


def test_missing_targets() -> None:
    assert problems("upstreams: {api: {}}") == ["gw.yaml: upstreams.api.targets: required"]


@pytest.mark.parametrize("policy", BALANCE_POLICIES)
def test_balance_policies(policy: str) -> None:
    assert load(upstream(f"balance: {policy}")).upstreams["api"].balance == policy


def test_balance_rule() -> None:
    assert problems(upstream("balance: fastest")) == [
        "gw.yaml: upstreams.api.balance: must be one of round_robin, least_conn, p2c_ewma,"
        " consistent_hash, random"
    ]


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        ("client_ip", "client_ip"),
        ("path", "path"),
        ("'header:X-User-Id'", "header:x-user-id"),
        ("'cookie:Session'", "cookie:Session"),
    ],
)
def test_hash_key_forms(key: str, stored: str) -> None:
    assert load(upstream(f"balance: consistent_hash, hash_key: {key}")).upstreams["api"].hash_key == stored


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("ip", "invalid hash_key 'ip': expected header:NAME, cookie:NAME, client_ip or path"),
        ("'query:x'", "invalid hash_key 'query:x': expected header:NAME, cookie:NAME, client_ip or path"),
        ("'header:'", "invalid hash_key 'header:': '' is not a valid header name"),
        ("'header:a b'", "invalid hash_key 'header:a b': 'a b' is not a valid header name"),
        ("'cookie:a;b'", "invalid hash_key 'cookie:a;b': 'a;b' is not a valid cookie name"),
        ("5", "must be a string"),
    ],
)
def test_hash_key_rules(key: str, reason: str) -> None:
    assert problems(upstream(f"hash_key: {key}")) == [f"gw.yaml: upstreams.api.hash_key: {reason}"]


def test_pool_and_timeouts() -> None:
    up = load(
        upstream(
            "pool: {max_idle: 0, max_connections: 8, idle_timeout: 500ms}, timeouts: {connect:"
            " 250ms, read: 1m}"
        )
    ).upstreams["api"]
    assert up.pool == PoolConfig(max_idle=0, max_connections=8, idle_timeout=0.5)
    assert up.timeouts == TimeoutsConfig(connect=0.25, read=60.0)


@pytest.mark.parametrize(
    ("pool", "max_idle"),
    [("{max_connections: 8}", 8), ("{max_connections: 64}", 64), ("{max_connections: 100}", 64), ("{}", 64)],
)
def test_default_max_idle_never_exceeds_max_connections(pool: str, max_idle: int) -> None:
    assert load(upstream(f"pool: {pool}")).upstreams["api"].pool.max_idle == max_idle


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("pool: {max_idle: -1}", "upstreams.api.pool.max_idle: must be at least 0"),
        ("pool: {max_connections: 0}", "upstreams.api.pool.max_connections: must be at least 1"),
        (
            "pool: {max_idle: 10, max_connections: 5}",
            "upstreams.api.pool: max_idle (10) must not exceed max_connections (5)",
        ),
        (
            "pool: {idle_timeout: -1s}",
            "upstreams.api.pool.idle_timeout: invalid duration '-1s': must not be negative",
        ),
        ("timeouts: {connect: 0}", "upstreams.api.timeouts.connect: must be greater than 0"),
        ("timeouts: {read: 0s}", "upstreams.api.timeouts.read: must be greater than 0"),
        ("timeouts: {write: 1s}", "upstreams.api.timeouts.write: unknown key"),
    ],
)
def test_pool_and_timeout_rules(body: str, expected: str) -> None:
    assert problems(upstream(body)) == [f"gw.yaml: {expected}"]


# --- routes ---------------------------------------------------------------------------------------


def test_full_match() -> None:
    m = (
        load(
            route(
                "match: {host: API.example.com, path_prefix: /v1/, methods: [get, POST, GET],"
                " headers: {X-Env: prod}}"
            )
        )
        .routes[0]
        .match
    )
    assert m == MatchConfig(
        host="api.example.com", path_prefix="/v1/", methods=["GET", "POST"], headers={"x-env": "prod"}
    )


@pytest.mark.parametrize(
    ("match", "field", "value"),
    [
        ("{host: '*.example.com'}", "host", "*.example.com"),
        ("{host: 10.0.0.1}", "host", "10.0.0.1"),
        ("{path: /exact}", "path", "/exact"),
        ("{path_prefix: /}", "path_prefix", "/"),
        ("{path_regex: '^/users/[0-9]+$'}", "path_regex", "^/users/[0-9]+$"),
        ("{methods: [PURGE]}", "methods", ["PURGE"]),
        ("{}", "host", None),
        ("null", "host", None),
    ],
)
def test_match_forms(match: str, field: str, value: object) -> None:
    assert getattr(load(route(f"match: {match}")).routes[0].match, field) == value


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (
            "{host: 'a b'}",
            "match.host: invalid host 'a b': expected a name like api.example.com or *.example.com",
        ),
        (
            "{host: 'a.*.com'}",
            "match.host: invalid host 'a.*.com': expected a name like api.example.com or *.example.com",
        ),
        (
            "{host: 'api.example.com:80'}",
            "match.host: invalid host 'api.example.com:80': expected a name like api.example.com or"
            " *.example.com",
        ),
        ("{path: v1}", "match.path: must start with '/', got 'v1'"),
        ("{path_prefix: v1/}", "match.path_prefix: must start with '/', got 'v1/'"),
        (
            "{path_regex: '('}",
            "match.path_regex: invalid regular expression: missing ), unterminated subpattern at position 0",
        ),
        ("{methods: ['GE T']}", "match.methods[0]: invalid method 'GE T': expected an HTTP token like GET"),
        ("{methods: GET}", "match.methods: must be a list"),
        ("{headers: {'x y': a}}", "match.headers['x y']: invalid header name 'x y'"),
        ("{headers: {x-v: 2}}", "match.headers.x-v: must be a string"),
        ('{headers: {x-v: "a\\nb"}}', "match.headers.x-v: header value must not contain CR, LF or NUL"),
        (
            "{path: /a, path_prefix: /b}",
            "match: at most one of path, path_prefix and path_regex may be set (got path, path_prefix)",
        ),
        (
            "{path: /a, path_prefix: /b, path_regex: c}",
            "match: at most one of path, path_prefix and path_regex may be set (got path,"
            " path_prefix, path_regex)",
        ),
        ("{url: /}", "match.url: unknown key"),
        ("[/v1]", "match: must be a mapping"),
    ],
)
def test_match_rules(match: str, expected: str) -> None:
    assert problems(route(f"match: {match}")) == [f"gw.yaml: routes[0].{expected}"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("strip_prefix: true", "routes[0].strip_prefix: requires match.path_prefix"),
        ("strip_prefix: true, match: {path: /a}", "routes[0].strip_prefix: requires match.path_prefix"),
        ("strip_prefix: 1", "routes[0].strip_prefix: must be true or false"),
        ("preserve_host: 'no'", "routes[0].preserve_host: must be true or false"),
        ("name: ''", "routes[0].name: invalid name '': use letters, digits, '_', '.' and '-'"),
        (
            "name: 'my route'",
            "routes[0].name: invalid name 'my route': use letters, digits, '_', '.' and '-'",
        ),
        ("upstream: b", "routes[0].upstream: unknown upstream 'b' (known: a)"),
        ("target: a", "routes[0].target: unknown key"),
    ],
)
def test_route_rules(body: str, expected: str) -> None:
    text = f"upstreams: {{a: {{targets: ['h:1']}}}}\nroutes: [{{upstream: a, {body}}}]\n"
    assert problems(text) == [f"gw.yaml: {expected}"]


def test_route_options() -> None:
    r = load(route("strip_prefix: true, preserve_host: false, match: {path_prefix: /api/}")).routes[0]
    assert (r.strip_prefix, r.preserve_host) == (True, False)


def test_route_upstream_required() -> None:
    assert problems("routes: [{name: x}]") == ["gw.yaml: routes[0].upstream: required"]


def test_unknown_upstream_without_upstreams() -> None:
    assert problems("routes: [{upstream: a}]") == [
        "gw.yaml: routes[0].upstream: unknown upstream 'a' (no upstreams are configured)"
    ]


def test_duplicate_route_names_including_defaults() -> None:
    text = (
        "upstreams: {a: {targets: ['h:1']}}\n"
        "routes: [{upstream: a}, {upstream: a, name: route-0}, {upstream: a, name: route-0}]"
    )
    assert problems(text) == [
        "gw.yaml: routes[1].name: duplicate route name 'route-0' (first at routes[0])",
        "gw.yaml: routes[2].name: duplicate route name 'route-0' (first at routes[0])",
    ]


# --- limits ---------------------------------------------------------------------------------------


def test_limits_units() -> None:
    limits = load(
        "limits: {max_header_bytes: 16KiB, max_body_bytes: 1GB, header_timeout: 500ms, "
        "keepalive_timeout: 0, request_buffer: 4096, max_pipelined: 1}"
    ).limits
    assert limits == LimitsConfig(
        max_header_bytes=16384,
        max_body_bytes=10**9,
        header_timeout=0.5,
        keepalive_timeout=0.0,
        request_buffer=4096,
        max_pipelined=1,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "max_header_bytes: 32XB",
            "limits.max_header_bytes: invalid size '32XB': expected a number with unit B, KB, MB,"
            " GB, TB, KiB, MiB, GiB or TiB",
        ),
        ("max_header_bytes: 0", "limits.max_header_bytes: must be at least 1"),
        ("max_body_bytes: -1", "limits.max_body_bytes: invalid size '-1': must not be negative"),
        ("header_timeout: 0", "limits.header_timeout: must be greater than 0"),
        (
            "keepalive_timeout: forever",
            "limits.keepalive_timeout: invalid duration 'forever': expected a number with unit us,"
            " ms, s, m, h or d",
        ),
        ("request_buffer: 0B", "limits.request_buffer: must be at least 1"),
        ("max_pipelined: 0", "limits.max_pipelined: must be at least 1"),
        ("max_pipelined: 1.5", "limits.max_pipelined: must be an integer"),
        ("max_connections: 5", "limits.max_connections: unknown key"),
    ],
)
def test_limits_rules(body: str, expected: str) -> None:
    assert problems(f"limits: {{{body}}}") == [f"gw.yaml: {expected}"]


def test_path_regex_must_compile_as_bytes_like_the_route_table() -> None:
    from pulsegate.config import ConfigError, load_config_text

    with pytest.raises(ConfigError) as err:
        load_config_text(
            "upstreams: {a: {targets: ['127.0.0.1:1']}}\nroutes: [{upstream: a, match: {path_regex: '^/é'}}]",
            source="gw.yaml",
        )
    reason = "invalid regular expression: use ASCII (paths are matched undecoded)"
    assert err.value.problems == [f"gw.yaml: routes[0].match.path_regex: {reason}"]
