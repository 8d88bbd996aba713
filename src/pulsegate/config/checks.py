"""Checks that span config sections, run on plain data so they work on half-valid documents.

Structural validation (types, ranges, unknown keys) is pydantic's job in :mod:`pulsegate.config.model`;
what needs two places at once lives here: a route naming an unknown upstream, duplicate route names,
duplicate target or listen addresses, ``strip_prefix`` without ``match.path_prefix``.

Example:
    >>> reference_problems({"upstreams": {"api": {}}, "routes": [{"upstream": "apii"}]})
    [('routes[0].upstream', "unknown upstream 'apii' (known: api)")]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulsegate.balancing.target import split_address

__all__ = ["DEFAULT_ADMIN_LISTEN", "DEFAULT_LISTEN", "join_key", "reference_problems"]

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:9090"


def reference_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Cross-section problems in a config document, as ``(key path, reason)`` pairs.

    Works on plain data (the raw YAML document or ``model_dump()``) and skips whatever is
    malformed, so it can run even when structural validation failed. It never raises.

    >>> reference_problems({"upstreams": {"api": {}}, "routes": [{"upstream": "apii"}]})
    [('routes[0].upstream', "unknown upstream 'apii' (known: api)")]
    """
    problems: list[tuple[str, str]] = []
    _listen_problems(data, problems)
    upstreams = data.get("upstreams")
    if isinstance(upstreams, Mapping):
        for name, upstream in upstreams.items():
            if isinstance(upstream, Mapping):
                _target_problems(
                    join_key(join_key("upstreams", name), "targets"), upstream.get("targets"), problems
                )
    routes = data.get("routes")
    if isinstance(routes, list):
        _route_problems(routes, upstreams, problems)
    return problems


_PLAIN_KEY_RE = re.compile(r"[^\s\[\]\"'.]+(?:\.[^\s\[\]\"'.]+)*")


def join_key(path: str, key: object) -> str:
    """Extend a key path by a mapping key; odd keys are bracketed so the path stays readable.

    >>> join_key("", "upstreams"), join_key("upstreams", "api.v2"), join_key("upstreams", "a b")
    ('upstreams', 'upstreams.api.v2', "upstreams['a b']")
    """
    text = str(key)
    if not _PLAIN_KEY_RE.fullmatch(text):
        return f"{path}[{text!r}]"
    return f"{path}.{text}" if path else text


def _address_key(value: object) -> tuple[str, int] | None:
    # None for anything malformed (reported elsewhere) and for port 0: two listeners on port 0
    # get different ephemeral ports, so they never clash.
    if isinstance(value, Mapping):
        value = value.get("address")
    if not isinstance(value, str):
        return None
    try:
        host, port = split_address(value)
    except ValueError:
        return None
    return host.lower(), port


def _listen_problems(data: Mapping[str, Any], problems: list[tuple[str, str]]) -> None:
    listen = data.get("listen")
    seen: dict[tuple[str, int], str] = {}
    if listen is None or isinstance(listen, str):
        key = _address_key(DEFAULT_LISTEN if listen is None else listen)
        if key is not None:
            seen[key] = "listen" if listen else f"the default listen address {DEFAULT_LISTEN}"
    elif isinstance(listen, list):
        for index, address in enumerate(listen):
            key = _address_key(address)
            if key is None:
                continue
            if key in seen:
                problems.append((f"listen[{index}]", f"duplicate address '{address}' (first at {seen[key]})"))
            else:
                seen[key] = f"listen[{index}]"
    admin = data.get("admin")
    if admin is None or (isinstance(admin, Mapping) and "listen" not in admin):
        key = _address_key(DEFAULT_ADMIN_LISTEN)
        if key in seen:
            reason = f"the default {DEFAULT_ADMIN_LISTEN} is the same address as {seen[key]}; set another"
            problems.append(("admin.listen", reason))
    elif isinstance(admin, Mapping):
        key = _address_key(admin.get("listen"))
        if key is not None and key in seen:
            problems.append(("admin.listen", f"same address as {seen[key]}"))


def _target_problems(path: str, targets: object, problems: list[tuple[str, str]]) -> None:
    if not isinstance(targets, list):
        return
    seen: dict[tuple[str, int], int] = {}
    for index, target in enumerate(targets):
        key = _address_key(target)
        if key is None:
            continue
        if key in seen:
            address = target.get("address") if isinstance(target, Mapping) else target
            problems.append(
                (f"{path}[{index}]", f"duplicate target address '{address}' (first at targets[{seen[key]}])")
            )
        else:
            seen[key] = index


def _route_problems(routes: list[Any], upstreams: object, problems: list[tuple[str, str]]) -> None:
    # A malformed upstreams section already has its own problem; don't call every reference unknown.
    known: list[str] | None = None
    if upstreams is None:
        known = []
    elif isinstance(upstreams, Mapping):
        known = sorted(str(name) for name in upstreams)
    names: dict[str, int] = {}
    for index, route in enumerate(routes):
        if not isinstance(route, Mapping):
            continue
        path = f"routes[{index}]"
        name = route.get("name")
        name = f"route-{index}" if name is None else name
        if isinstance(name, str):
            if name in names:
                problems.append(
                    (f"{path}.name", f"duplicate route name '{name}' (first at routes[{names[name]}])")
                )
            else:
                names[name] = index
        upstream = route.get("upstream")
        if isinstance(upstream, str) and known is not None and upstream not in known:
            listing = f"known: {', '.join(known)}" if known else "no upstreams are configured"
            problems.append((f"{path}.upstream", f"unknown upstream '{upstream}' ({listing})"))
        if route.get("strip_prefix") is True:
            match = route.get("match")
            if not (isinstance(match, Mapping) and match.get("path_prefix") is not None):
                problems.append((f"{path}.strip_prefix", "requires match.path_prefix"))
