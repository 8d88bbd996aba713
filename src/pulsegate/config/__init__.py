"""pulsegate's configuration: pydantic models, unit parsing and the YAML loader.

Example:
    >>> cfg = load_config_text("upstreams: {a: {targets: ['127.0.0.1:1']}}\\nroutes: [{upstream: a}]")
    >>> summarize(cfg, "gw.yaml")
    'gw.yaml: OK: 1 listener (127.0.0.1:8080), 1 upstream (1 target), 1 route'
"""

from pulsegate.config.checks import reference_problems
from pulsegate.config.loader import (
    ConfigError,
    load_config,
    load_config_text,
    redacted,
    route_rules,
    summarize,
)
from pulsegate.config.model import (
    BALANCE_POLICIES,
    AdminConfig,
    Balance,
    GatewayConfig,
    LimitsConfig,
    MatchConfig,
    PoolConfig,
    RouteConfig,
    TargetConfig,
    TimeoutsConfig,
    UpstreamConfig,
)
from pulsegate.config.sections import (
    AccessLogConfig,
    HistoryConfig,
    LoggingConfig,
    MetricsConfig,
    SupervisorConfig,
)
from pulsegate.config.units import Duration, Size, format_duration, format_size, parse_duration, parse_size

__all__ = [
    "BALANCE_POLICIES",
    "AccessLogConfig",
    "AdminConfig",
    "Balance",
    "ConfigError",
    "Duration",
    "GatewayConfig",
    "HistoryConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MatchConfig",
    "MetricsConfig",
    "PoolConfig",
    "RouteConfig",
    "Size",
    "SupervisorConfig",
    "TargetConfig",
    "TimeoutsConfig",
    "UpstreamConfig",
    "format_duration",
    "format_size",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_size",
    "redacted",
    "reference_problems",
    "route_rules",
    "summarize",
]
