"""Config sections of the runtime around the data path: supervisor, metrics, history and logs.

Example:
    >>> MetricsConfig().history.retention, MetricsConfig().history.resolution
    (604800.0, 10.0)
    >>> LoggingConfig().access_log.path
    'off'
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from pulsegate.config.units import Duration

__all__ = [
    "AccessLogConfig",
    "HistoryConfig",
    "LoggingConfig",
    "MetricsConfig",
    "SupervisorConfig",
    "default_history_path",
]

ListenMode = Literal["reuseport", "inherit"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


def none_is_empty(value: object) -> object:
    """Treat ``key:`` with nothing after it (YAML null) as an empty section."""
    return {} if value is None else value


def _off_is_text(value: object) -> object:
    # YAML 1.1 reads a bare `off` as false; for a destination it means the word.
    return "off" if value is False else value


Destination = Annotated[str, BeforeValidator(_off_is_text), Field(strict=True, min_length=1)]


def default_history_path() -> str:
    """``$XDG_STATE_HOME/pulsegate/history.db`` (``~/.local/state/...`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "pulsegate", "history.db")


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SupervisorConfig(Section):
    """How the supervisor runs and watches the worker processes.

    >>> s = SupervisorConfig()
    >>> s.listen_mode, s.ping_interval, s.ping_timeout, s.restart_backoff_max
    ('reuseport', 1.0, 5.0, 10.0)
    """

    #: ``reuseport``: every worker binds its own SO_REUSEPORT socket (the kernel hashes connections);
    #: ``inherit``: the supervisor binds each address once and every worker accepts on that socket.
    #: reuseport is the default: it splits connections evenly (benchmarks/balance_bench.py).
    listen_mode: ListenMode = "reuseport"
    ping_interval: Annotated[Duration, Field(gt=0)] = 1.0
    #: A worker that has not answered a ping for this long is killed and replaced.
    ping_timeout: Annotated[Duration, Field(gt=0)] = 5.0
    restart_backoff_max: Annotated[Duration, Field(gt=0)] = 10.0
    #: How long ``pulsegate run`` waits for every worker to serve before it gives up (exit 1).
    start_timeout: Annotated[Duration, Field(gt=0)] = 15.0

    @model_validator(mode="after")
    def _timeout_covers_interval(self) -> SupervisorConfig:
        if self.ping_timeout <= self.ping_interval:
            raise ValueError(
                f"ping_timeout ({self.ping_timeout}s) must be longer than"
                f" ping_interval ({self.ping_interval}s)"
            )
        return self


class HistoryConfig(Section):
    """Metric history kept by the supervisor: 1 s points in memory, rollups persisted in SQLite.

    ``path: off`` keeps history in memory only.
    """

    path: Destination = Field(default_factory=default_history_path)
    retention: Annotated[Duration, Field(gt=0)] = 7 * 86400.0
    resolution: Annotated[Duration, Field(ge=1)] = 10.0
    #: How long the 1 s points stay in memory.
    memory_window: Annotated[Duration, Field(ge=10)] = 3600.0


class MetricsConfig(Section):
    """Per-worker metrics recording and the supervisor's aggregation.

    ``enabled: false`` skips recording on the request path (the admin API then shows process metrics only).
    """

    enabled: Annotated[bool, Field(strict=True)] = True
    #: How often each worker pushes a snapshot to the supervisor.
    interval: Annotated[Duration, Field(gt=0)] = 1.0
    history: Annotated[HistoryConfig, BeforeValidator(none_is_empty)] = HistoryConfig()


class AccessLogConfig(Section):
    """One JSON line per request: ``path`` is ``off``, ``stdout``, ``stderr`` or a file path."""

    path: Destination = "off"
    flush_interval: Annotated[Duration, Field(gt=0)] = 1.0
    #: Lines buffered before a flush is scheduled sooner than ``flush_interval``.
    buffer_lines: Annotated[int, Field(strict=True, ge=1)] = 1024


class LoggingConfig(Section):
    """Event logs (JSON lines, or a console format on a TTY) and the access log."""

    level: LogLevel = "info"
    format: LogFormat = "auto"
    #: Event log destination: ``stderr`` or a file path (reopened on SIGUSR1).
    path: Destination = "stderr"
    access_log: Annotated[AccessLogConfig, BeforeValidator(none_is_empty)] = AccessLogConfig()
