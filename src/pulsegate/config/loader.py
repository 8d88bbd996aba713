"""Load a config file, and turn every problem into one line: ``{source}: {key path}: {reason}``.

Structural problems come from pydantic (all of them, cleaned up: key paths like
``upstreams.api.targets[0]``, short reasons); cross-section problems come from
:func:`~pulsegate.config.checks.reference_problems`, run on the raw document so they are reported in
the same pass even when some section is malformed.

Example:
    >>> load_config_text("routes: [{upstream: apii}]\\nupstreams: {api: {targets: ['127.0.0.1:1']}}",
    ...                  source="gw.yaml")
    Traceback (most recent call last):
    ...
    pulsegate.config.loader.ConfigError: gw.yaml: routes[0].upstream: unknown upstream 'apii' (known: api)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pulsegate.config.checks import join_key, reference_problems
from pulsegate.config.model import DEFER_REFERENCES, GatewayConfig, RouteConfig
from pulsegate.routing.rule import RouteRule

__all__ = [
    "ConfigError",
    "load_config",
    "load_config_text",
    "redacted",
    "route_rules",
    "summarize",
]


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one line per problem.

    >>> e = ConfigError(["gw.yaml: workers: required", "gw.yaml: listen: required"])
    >>> print(e)
    gw.yaml: workers: required
    gw.yaml: listen: required
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a YAML (or JSON) config file.

    Messages name the file exactly as given in ``path``. Raises :class:`ConfigError`.

    >>> load_config("/nonexistent/gw.yaml")
    Traceback (most recent call last):
    ...
    pulsegate.config.loader.ConfigError: /nonexistent/gw.yaml: cannot read: No such file or directory
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{source}: cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    return load_config_text(text, source)


def load_config_text(text: str, source: str = "<config>") -> GatewayConfig:
    """Validate config text; ``source`` is the name used in messages. An empty text is ``{}``.

    >>> load_config_text("workers: 4\\nlimits: {max_body_bytes: 1MiB}").limits.max_body_bytes
    1048576
    >>> load_config_text("workers: 2: 3", source="gw.yaml")
    Traceback (most recent call last):
    ...
    pulsegate.config.loader.ConfigError: gw.yaml:1:11: invalid YAML: mapping values are not allowed here
    """
    data = _parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: top level must be a mapping"])
    problems: list[str] = []
    config: GatewayConfig | None = None
    try:
        config = GatewayConfig.model_validate(data, context={DEFER_REFERENCES: True})
    except ValidationError as exc:
        problems.extend(
            _problem_line(source, _key_path(err["loc"], data), _reason(err)) for err in exc.errors()
        )
    problems.extend(_problem_line(source, path, reason) for path, reason in reference_problems(data))
    if problems or config is None:
        raise ConfigError(list(dict.fromkeys(problems)))  # dedupe, keeping document order
    return config


def summarize(config: GatewayConfig, source: str) -> str:
    """The one-line report ``pulsegate check`` prints for a valid config.

    >>> cfg = load_config_text("upstreams: {a: {targets: ['127.0.0.1:1', '127.0.0.1:2']}}\\n"
    ...                        "routes: [{upstream: a}]")
    >>> summarize(cfg, "gw.yaml")
    'gw.yaml: OK: 1 listener (127.0.0.1:8080), 1 upstream (2 targets), 1 route'
    """
    targets = sum(len(upstream.targets) for upstream in config.upstreams.values())
    return (
        f"{source}: OK: {_count(len(config.listen), 'listener')} ({', '.join(config.listen)}), "
        f"{_count(len(config.upstreams), 'upstream')} ({_count(targets, 'target')}), "
        f"{_count(len(config.routes), 'route')}"
    )


def route_rules(config: GatewayConfig) -> list[RouteRule[RouteConfig]]:
    """One :class:`~pulsegate.routing.rule.RouteRule` per route, in config order, payload = the route.

    >>> cfg = load_config_text(
    ...     "upstreams: {a: {targets: ['127.0.0.1:1']}}\\n"
    ...     "routes: [{name: api, upstream: a, match: {path_prefix: /v1/, methods: [get]}}]"
    ... )
    >>> rule = route_rules(cfg)[0]
    >>> rule.name, rule.path_prefix, rule.methods, rule.payload.upstream
    ('api', '/v1/', ('GET',), 'a')
    """
    return [
        RouteRule(
            name=route.name,
            payload=route,
            host=route.match.host,
            path=route.match.path,
            path_prefix=route.match.path_prefix,
            path_regex=route.match.path_regex,
            methods=tuple(route.match.methods),
            headers=tuple(route.match.headers.items()),
        )
        for route in config.routes
    ]


def redacted(config: GatewayConfig) -> dict[str, Any]:
    """The config as JSON-ready plain data, with ``admin.token`` (if set) replaced by ``"***"``.

    >>> redacted(load_config_text("admin: {token: s3cret}"))["admin"]
    {'listen': '127.0.0.1:9090', 'token': '***'}
    """
    data = config.model_dump(mode="json")
    if data["admin"]["token"] is not None:
        data["admin"]["token"] = "***"
    return data


# --- internals ----------------------------------------------------------------------------------


def _parse_yaml(text: str, source: str) -> object:
    try:
        return _join_surrogates(yaml.safe_load(text), source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and problem.startswith("but "):
            # "expected a single document in the stream" + "but found another document"
            problem = f"{exc.context}, {problem}"
        raise ConfigError([f"{where}: invalid YAML: {_one_line(problem)}"]) from None
    except yaml.reader.ReaderError as exc:
        # Control characters: PyYAML gives a character offset, not a line/column mark.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError([f"{source}:{line}:{column}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error is one of the above
        raise ConfigError([f"{source}: invalid YAML: {_one_line(str(exc))}"]) from None


def _join_surrogates(data: object, source: str) -> object:
    """YAML escapes can spell a character beyond U+FFFF as a UTF-16 surrogate pair ("\\ud800\\udc00",
    which PyYAML's own dumper writes); join such pairs in place, and refuse lone surrogates, which
    are not text and would break every later encode. Aliases may make the data cyclic: each
    container is visited once."""

    def fix(value: object) -> object:
        if not isinstance(value, str) or not any("\ud800" <= c <= "\udfff" for c in value):
            return value
        try:
            return value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise ConfigError([f"{source}: invalid YAML: a \\u escape is half of a surrogate pair"]) from None

    seen: set[int] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for key in list(node):
                value = node.pop(key) if fix(key) is not key else node[key]
                node[fix(key)] = fix(value)
                stack.append(node[fix(key)])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                node[i] = fix(value)
                stack.append(node[i])
    return fix(data)


def _problem_line(source: str, path: str, reason: str) -> str:
    # A reason may quote the offending value; its control characters (a newline in a YAML string)
    # must not break the one-line-per-problem output.
    reason = _CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], reason)
    return f"{source}: {path}: {reason}" if path else f"{source}: {reason}"


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# Pieces pydantic adds to ``loc`` that are not keys: union members ("str", "TargetConfig",
# "literal['auto']") and validator wrappers ("function-before[...]").
_TAG_RE = re.compile(r"[A-Z]\w*|str|int|float|bool|list|dict|none|[a-z-]+\[.*\]")


def _key_path(loc: tuple[int | str, ...], data: object) -> str:
    """Render a pydantic ``loc`` as ``routes[0].match.path_regex``, dropping union/validator tags.

    Walking the raw document alongside tells keys from tags: a real key exists in the data.
    """
    path = ""
    node: object = data
    on_data = True
    for index, part in enumerate(loc):
        if part == "[key]":  # a dict key failed validation; the path to the key already says which
            continue
        if on_data:
            if isinstance(node, Mapping) and part in node:
                path, node = join_key(path, part), node[part]
                continue
            if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                path, node = f"{path}[{part}]", node[part]
                continue
            on_data = False
        last = index == len(loc) - 1
        if isinstance(part, int):
            path = f"{path}[{part}]"
        elif last or not _TAG_RE.fullmatch(part):
            path = join_key(path, part)
    return path


def _reason(err: ErrorDetails) -> str:
    """A short human sentence for one pydantic error."""
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == "string_type" and "[key]" in err["loc"]:
        return "key must be a string (quote it)"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "literal_error":
        return "must be one of " + ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
    if kind in ("too_short", "string_too_short"):
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} items"
    bounds = {
        "greater_than": "must be greater than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
    }
    if kind in bounds:
        return bounds[kind].format(**{k: _number(v) for k, v in ctx.items()})
    return _REASONS.get(kind) or _lower_first(err["msg"])


_REASONS = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping",
    "mapping_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "invalid_key": "unknown key",  # a non-string key (YAML `1: x`) where field names are expected
    "recursion_loop": "refers to itself",
}


def _number(value: object) -> object:
    # 0.0 -> 0: bounds on durations are floats, but "must be greater than 0.0" reads oddly.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
