"""The helpers other packages use: summarize, route_rules, redacted."""

from __future__ import annotations

import json

import pytest

from pulsegate.config import GatewayConfig, RouteConfig, load_config_text, redacted, route_rules, summarize
from pulsegate.routing.rule import RouteRule


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("", "gw.yaml: OK: 1 listener (127.0.0.1:8080), 0 upstreams (0 targets), 0 routes"),
        (
            "upstreams: {a: {targets: ['127.0.0.1:1']}}\nroutes: [{upstream: a}]",
            "gw.yaml: OK: 1 listener (127.0.0.1:8080), 1 upstream (1 target), 1 route",
        ),
        (
            "listen: ['0.0.0.0:80', '[::]:80']\n"
            "upstreams: {a: {targets: ['h:1', 'h:2']}, b: {targets: ['h:3']}}\n"
            "routes: [{upstream: a}, {upstream: b}, {upstream: a}, {upstream: b}]",
            "gw.yaml: OK: 2 listeners (0.0.0.0:80, [::]:80), 2 upstreams (3 targets), 4 routes",
        ),
    ],
)
def test_summarize(text: str, line: str) -> None:
    assert summarize(load_config_text(text), "gw.yaml") == line


def test_route_rules() -> None:
    cfg = load_config_text(
        "upstreams: {a: {targets: ['h:1']}}\n"
        "routes:\n"
        "  - {name: api, upstream: a, match: {host: API.example.com, path_prefix: /v1/, methods: [get, POST],"
        " headers: {X-Env: prod, x-b: '1'}}}\n"
        "  - {upstream: a, match: {path_regex: '^/u/[0-9]+$'}}\n"
        "  - {upstream: a, match: {path: /exact}}\n"
    )
    rules = route_rules(cfg)
    assert rules[0] == RouteRule(
        name="api",
        payload=cfg.routes[0],
        host="api.example.com",
        path_prefix="/v1/",
        methods=("GET", "POST"),
        headers=(("x-env", "prod"), ("x-b", "1")),
    )
    assert rules[1] == RouteRule(name="route-1", payload=cfg.routes[1], path_regex="^/u/[0-9]+$")
    assert rules[2] == RouteRule(name="route-2", payload=cfg.routes[2], path="/exact")
    assert all(isinstance(rule.payload, RouteConfig) for rule in rules)
    assert [rule.conditions() for rule in rules] == [5, 1, 1]


def test_route_rules_empty() -> None:
    assert route_rules(GatewayConfig()) == []


def test_redacted_hides_the_token() -> None:
    cfg = load_config_text(
        "admin: {token: s3cret}\nupstreams: {a: {targets: ['h:1']}}\nroutes: [{upstream: a}]"
    )
    data = redacted(cfg)
    assert data["admin"] == {"listen": "127.0.0.1:9090", "token": "***"}
    assert "s3cret" not in json.dumps(data)
    assert cfg.admin.token == "s3cret"  # the model itself is untouched
    assert data["upstreams"]["a"]["targets"] == [{"address": "h:1", "weight": 1}]
    assert data["routes"][0]["name"] == "route-0"
    assert data["limits"]["max_body_bytes"] == 10 * 1024 * 1024


def test_redacted_without_token_is_plain_data() -> None:
    data = redacted(GatewayConfig())
    assert data["admin"]["token"] is None
    assert json.loads(json.dumps(data)) == data
    # plain data goes back through the model unchanged
    assert GatewayConfig.model_validate(data) == GatewayConfig()
