"""The configuration model: frozen pydantic v2 models with defaults for every key.

Durations are float seconds and sizes int bytes (see :mod:`pulsegate.config.units`). Each model
forbids unknown keys. Checks that span sections (a route naming an unknown upstream, duplicate
route names or target addresses, ``strip_prefix`` without ``path_prefix``) live in
:func:`~pulsegate.config.checks.reference_problems`: :class:`GatewayConfig` runs it once its fields
validated, and the loader runs it on the raw document so a broken file reports everything at once.

Example:
    >>> cfg = GatewayConfig.model_validate(
    ...     {"upstreams": {"a": {"targets": ["127.0.0.1:1"]}}, "routes": [{"upstream": "a"}]}
    ... )
    >>> cfg.routes[0].name, cfg.upstreams["a"].targets[0].weight, cfg.limits.max_header_bytes
    ('route-0', 1, 32768)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pulsegate.balancing.target import split_address
from pulsegate.config.checks import DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN, reference_problems
from pulsegate.config.resilience import (
    CircuitBreakerConfig,
    HealthConfig,
    OutlierConfig,
    RateLimitConfig,
    RetriesConfig,
)
from pulsegate.config.sections import LoggingConfig, MetricsConfig, SupervisorConfig
from pulsegate.config.units import Duration, Size

__all__ = [
    "BALANCE_POLICIES",
    "Address",
    "AdminConfig",
    "Balance",
    "GatewayConfig",
    "LimitsConfig",
    "MatchConfig",
    "PoolConfig",
    "RouteConfig",
    "TargetConfig",
    "TimeoutsConfig",
    "UpstreamConfig",
]

Balance = Literal["round_robin", "least_conn", "p2c_ewma", "consistent_hash", "random"]
BALANCE_POLICIES: tuple[str, ...] = get_args(Balance)

# The loader validates with this context key set and runs reference_problems() itself, on the raw
# document, so that cross-section problems are reported even when some section failed to parse.
DEFER_REFERENCES = "pulsegate.defer_references"

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: methods and header names
_HOST_RE = re.compile(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_HASH_KEY_HELP = "expected header:NAME, cookie:NAME, client_ip or path"


# --- field validators -------------------------------------------------------------------------


def _check_address(value: str) -> str:
    split_address(value)  # raises ValueError("expected host:port, got 'x'") and friends
    return value


def _check_listen_address(value: str) -> str:
    split_address(value, allow_port_zero=True)  # port 0: bind an ephemeral port
    return value


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(f"invalid name '{value}': use letters, digits, '_', '.' and '-'")
    return value


def _check_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must start with '/', got '{value}'")
    return value


def _check_regex(value: str) -> str:
    # Paths are matched as raw bytes, so the pattern is compiled the way the route table does.
    try:
        re.compile(value.encode("ascii"))
    except UnicodeEncodeError:
        raise ValueError("invalid regular expression: use ASCII (paths are matched undecoded)") from None
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _check_host(value: str) -> str:
    host = value.lower()
    if not _HOST_RE.fullmatch(host):
        raise ValueError(f"invalid host '{value}': expected a name like api.example.com or *.example.com")
    return host


def _check_method(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"invalid method '{value}': expected an HTTP token like GET")
    return value.upper()


def _check_header_name(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"invalid header name '{value}'")
    return value.lower()


def _check_header_value(value: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError("header value must not contain CR, LF or NUL")
    return value


def _check_hash_key(value: str) -> str:
    kind, sep, name = value.partition(":")
    if not sep:
        if value in ("client_ip", "path"):
            return value
        raise ValueError(f"invalid hash_key '{value}': {_HASH_KEY_HELP}")
    if kind == "header" and _TOKEN_RE.fullmatch(name):
        return f"header:{name.lower()}"  # header names are case-insensitive; cookie names are not
    if kind == "cookie" and _TOKEN_RE.fullmatch(name):
        return value
    if kind in ("header", "cookie"):
        raise ValueError(f"invalid hash_key '{value}': '{name}' is not a valid {kind} name")
    raise ValueError(f"invalid hash_key '{value}': {_HASH_KEY_HELP}")


def _none_is_empty(empty: type[dict[Any, Any]] | type[list[Any]]) -> BeforeValidator:
    """Treat ``key:`` with nothing after it (YAML null) as an empty section, not a type error."""

    def convert(value: object) -> object:
        return empty() if value is None else value

    return BeforeValidator(convert)


def _listen_input(value: object) -> object:
    # A single string is checked here so its error points at "listen", not at "listen[0]".
    if isinstance(value, str):
        return [_check_listen_address(value)]
    if not isinstance(value, list | tuple):
        raise ValueError("must be an address 'host:port' or a list of them")
    return value


def _workers_input(value: object) -> object:
    # One clear reason instead of pydantic's two union-branch errors.
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"must be an integer >= 1 or 'auto', got '{value}'")


def _target_input(value: object) -> object:
    # "host:port" is shorthand for {address: "host:port"}; its error belongs to the item itself.
    if isinstance(value, str):
        return {"address": _check_address(value)}
    if isinstance(value, Mapping | TargetConfig):
        return value
    raise ValueError("must be an address 'host:port' or a mapping with address and weight")


Address = Annotated[str, Field(strict=True), AfterValidator(_check_address)]
"""``host:port`` (``[v6]:port`` for IPv6), checked with :func:`~pulsegate.balancing.target.split_address`."""

ListenAddress = Annotated[str, Field(strict=True), AfterValidator(_check_listen_address)]
"""Like :data:`Address`, but port 0 (bind an ephemeral port) is allowed."""

Name = Annotated[str, Field(strict=True), AfterValidator(_check_name)]
StrictStr = Annotated[str, Field(strict=True)]
Count = Annotated[int, Field(strict=True)]  # strict: YAML `true` or `2.5` must not become a count


# --- models -------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AdminConfig(_Section):
    """The admin API listener.

    >>> AdminConfig().listen, AdminConfig().token is None
    ('127.0.0.1:9090', True)
    """

    listen: ListenAddress = DEFAULT_ADMIN_LISTEN
    token: Annotated[StrictStr, Field(min_length=1)] | None = None


class TargetConfig(_Section):
    """One upstream server. In YAML a plain ``"host:port"`` string is shorthand for ``{address: ...}``.

    >>> TargetConfig(address="127.0.0.1:9002", weight=3).weight
    3
    """

    address: Address
    weight: Annotated[Count, Field(ge=1)] = 1


class PoolConfig(_Section):
    """Keep-alive connection pool towards one upstream.

    >>> PoolConfig().max_idle, PoolConfig().max_connections, PoolConfig().idle_timeout
    (64, 1024, 60.0)
    >>> PoolConfig(max_connections=8).max_idle  # the default never exceeds max_connections
    8
    """

    max_idle: Annotated[Count, Field(ge=0)] = 64
    max_connections: Annotated[Count, Field(ge=1)] = 1024
    idle_timeout: Duration = 60.0

    @model_validator(mode="before")
    @classmethod
    def _default_idle_fits(cls, data: object) -> object:
        # `pool: {max_connections: 8}` alone must not fail against the default max_idle of 64.
        if isinstance(data, Mapping) and "max_idle" not in data:
            limit = data.get("max_connections")
            default = cls.model_fields["max_idle"].default
            if isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit < default:
                return {**data, "max_idle": limit}
        return data

    @model_validator(mode="after")
    def _idle_fits(self) -> Self:
        if self.max_idle > self.max_connections:
            raise ValueError(
                f"max_idle ({self.max_idle}) must not exceed max_connections ({self.max_connections})"
            )
        return self


class TimeoutsConfig(_Section):
    """Upstream timeouts: TCP connect, and the wait for each read of the response.

    >>> TimeoutsConfig().connect, TimeoutsConfig().read
    (2.0, 30.0)
    """

    connect: Annotated[Duration, Field(gt=0)] = 2.0
    read: Annotated[Duration, Field(gt=0)] = 30.0


class UpstreamConfig(_Section):
    """A named group of targets and how to spread requests over them.

    >>> u = UpstreamConfig.model_validate({"targets": ["127.0.0.1:9001", {"address": "127.0.0.1:9002"}]})
    >>> [t.address for t in u.targets], u.balance, u.hash_key
    (['127.0.0.1:9001', '127.0.0.1:9002'], 'round_robin', 'client_ip')
    """

    targets: Annotated[list[Annotated[TargetConfig, BeforeValidator(_target_input)]], Field(min_length=1)]
    balance: Balance = "round_robin"
    hash_key: Annotated[StrictStr, AfterValidator(_check_hash_key)] = "client_ip"
    pool: Annotated[PoolConfig, _none_is_empty(dict)] = PoolConfig()
    timeouts: Annotated[TimeoutsConfig, _none_is_empty(dict)] = TimeoutsConfig()
    #: Active health checks; none unless configured.
    health: HealthConfig | None = None
    outlier: Annotated[OutlierConfig, _none_is_empty(dict)] = OutlierConfig()
    #: When every target is unhealthy or ejected: try them anyway (true) or answer 503 (false).
    fail_open: Annotated[bool, Field(strict=True)] = True
    retries: Annotated[RetriesConfig, _none_is_empty(dict)] = RetriesConfig()
    circuit_breaker: Annotated[CircuitBreakerConfig, _none_is_empty(dict)] = CircuitBreakerConfig()


class MatchConfig(_Section):
    """A route's conditions; every one given must hold. All empty (the default) matches everything.

    >>> m = MatchConfig.model_validate(
    ...     {"host": "API.example.com", "methods": ["get"], "headers": {"X-Env": "prod"}}
    ... )
    >>> m.host, m.methods, m.headers
    ('api.example.com', ['GET'], {'x-env': 'prod'})
    """

    host: Annotated[StrictStr, AfterValidator(_check_host)] | None = None
    path: Annotated[StrictStr, AfterValidator(_check_path)] | None = None
    path_prefix: Annotated[StrictStr, AfterValidator(_check_path)] | None = None
    path_regex: Annotated[StrictStr, AfterValidator(_check_regex)] | None = None
    methods: Annotated[list[Annotated[StrictStr, AfterValidator(_check_method)]], _none_is_empty(list)] = []
    headers: Annotated[
        dict[
            Annotated[StrictStr, AfterValidator(_check_header_name)],
            Annotated[StrictStr, AfterValidator(_check_header_value)],
        ],
        _none_is_empty(dict),
    ] = {}

    @field_validator("methods")
    @classmethod
    def _dedupe_methods(cls, methods: list[str]) -> list[str]:
        return list(dict.fromkeys(methods))

    @model_validator(mode="after")
    def _one_path_condition(self) -> Self:
        given = [k for k in ("path", "path_prefix", "path_regex") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"at most one of path, path_prefix and path_regex may be set (got {', '.join(given)})"
            )
        return self


class RouteConfig(_Section):
    """One route: which requests (``match``) go to which upstream.

    In a :class:`GatewayConfig` an omitted ``name`` becomes ``route-<index>``.

    >>> r = RouteConfig.model_validate({"name": "api", "upstream": "a"})
    >>> r.match == MatchConfig(), r.strip_prefix, r.preserve_host
    (True, False, True)
    """

    name: Name
    match: Annotated[MatchConfig, _none_is_empty(dict)] = MatchConfig()
    upstream: StrictStr  # checked against the configured names by reference_problems()
    strip_prefix: Annotated[bool, Field(strict=True)] = False
    preserve_host: Annotated[bool, Field(strict=True)] = True
    rate_limit: RateLimitConfig | None = None


class LimitsConfig(_Section):
    """Per-connection limits on the client side.

    >>> l = LimitsConfig()
    >>> l.max_header_bytes, l.max_body_bytes, l.header_timeout, l.keepalive_timeout
    (32768, 10485760, 10.0, 75.0)
    >>> l.request_buffer, l.max_pipelined
    (65536, 32)
    """

    max_header_bytes: Annotated[Size, Field(ge=1)] = 32 * 1024
    max_body_bytes: Size = 10 * 1024 * 1024
    header_timeout: Annotated[Duration, Field(gt=0)] = 10.0
    keepalive_timeout: Duration = 75.0
    request_buffer: Annotated[Size, Field(ge=1)] = 64 * 1024
    max_pipelined: Annotated[Count, Field(ge=1)] = 32
    #: An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    tunnel_idle_timeout: Annotated[Duration, Field(gt=0)] = 300.0


def _default_route_names(value: object) -> object:
    if not isinstance(value, list):
        return value
    return [
        {**item, "name": f"route-{index}"} if isinstance(item, Mapping) and item.get("name") is None else item
        for index, item in enumerate(value)
    ]


class GatewayConfig(_Section):
    """The whole gateway configuration; ``{}`` is valid (no upstreams, no routes).

    >>> cfg = GatewayConfig()
    >>> cfg.listen, cfg.workers, cfg.shutdown_timeout, cfg.upstreams, cfg.routes
    (['127.0.0.1:8080'], 'auto', 30.0, {}, [])
    >>> GatewayConfig.model_validate({"listen": "0.0.0.0:80", "workers": "auto"}).listen
    ['0.0.0.0:80']
    """

    listen: Annotated[list[ListenAddress], BeforeValidator(_listen_input), Field(min_length=1)] = [
        DEFAULT_LISTEN
    ]
    workers: Annotated[int | Literal["auto"], BeforeValidator(_workers_input)] = "auto"
    shutdown_timeout: Duration = 30.0
    admin: Annotated[AdminConfig, _none_is_empty(dict)] = AdminConfig()
    supervisor: Annotated[SupervisorConfig, _none_is_empty(dict)] = SupervisorConfig()
    metrics: Annotated[MetricsConfig, _none_is_empty(dict)] = MetricsConfig()
    logging: Annotated[LoggingConfig, _none_is_empty(dict)] = LoggingConfig()
    upstreams: Annotated[dict[Name, UpstreamConfig], _none_is_empty(dict)] = {}
    routes: Annotated[list[RouteConfig], BeforeValidator(_default_route_names), _none_is_empty(list)] = []
    limits: Annotated[LimitsConfig, _none_is_empty(dict)] = LimitsConfig()

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, Mapping) and info.context.get(DEFER_REFERENCES):
            return self
        problems = reference_problems(self.model_dump())
        if problems:
            raise ValueError("; ".join(f"{path}: {reason}" for path, reason in problems))
        return self

    def worker_count(self) -> int:
        """``workers`` as a number: ``"auto"`` means one per CPU this process may run on.

        >>> GatewayConfig(workers=4).worker_count()
        4
        """
        if isinstance(self.workers, int):
            return self.workers
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)  # pragma: no cover - platforms without sched_getaffinity
