"""Structured event logs: stdlib ``logging`` underneath, one JSON object per line on top.

Every line carries ``ts`` (UTC, ms), ``level``, ``worker`` (which process wrote it) and ``event`` (a
dotted name such as ``worker.started``) followed by the event's fields. Code logs through
:func:`get_logger`, whose methods take the event name and keyword fields; plain stdlib loggers (uvicorn's,
or ``logging.getLogger("pulsegate.x")``) still work and show up with the logger name as the event and
their formatted message as ``msg``.

Only the ``pulsegate`` hierarchy and uvicorn's loggers are configured: an application embedding
pulsegate keeps its own root logger. On a TTY the format defaults to a compact, coloured console line.

Each line is handed to the stream in one ``write`` followed by a flush, so it reaches the file
descriptor as one ``write(2)``: the supervisor and its workers can share one pipe or one ``O_APPEND``
file without tearing each other's lines (for a pipe the kernel guarantees this up to ``PIPE_BUF``,
4 KiB on Linux; longer lines are rare and stay whole in practice).

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> configure_logging(fmt="json", worker="w1", stream=out)
    >>> get_logger("pulsegate.runtime").info("worker.started", pid=123)
    >>> line = orjson.loads(out.getvalue())
    >>> line["worker"], line["event"], line["pid"]
    ('w1', 'worker.started', 123)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Final

import orjson

__all__ = ["EventLogger", "configure_logging", "get_logger", "reopen", "set_worker"]

ROOT_LOGGER: Final = "pulsegate"

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FORMATS: Final = ("auto", "json", "console")

# Both ride on one LogRecord attribute each rather than one attribute per field: a field called
# `name`, `msg` or `args` would otherwise collide with LogRecord's own attributes and raise.
_EVENT_ATTR: Final = "pulsegate_event"
_FIELDS_ATTR: Final = "pulsegate_fields"

# The line's own keys. A field of the same name is kept as `_name` rather than overwrite one (a line
# whose `ts` is some request's field would mislead every consumer).
_RESERVED: Final = frozenset({"ts", "level", "worker", "event", "exc", "stack"})

_worker = "supervisor"
_handler: _LineHandler | None = None


def set_worker(worker: str) -> None:
    """Stamp ``worker`` on every line logged from now on by this process.

    Example:
        >>> set_worker("w3")  # first thing a freshly started worker process does
        >>> set_worker("supervisor")
    """
    global _worker
    _worker = worker


class EventLogger:
    """A stdlib logger that logs events: a dotted event name plus keyword fields.

    The fields travel to the handler through ``extra``, so levels, filters and any other stdlib
    handler apply unchanged; such handlers see the event name as the message.

    Example:
        >>> log = get_logger("pulsegate.runtime")
        >>> log.info("worker.started", pid=123, id=1)
    """

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def _log(self, level: int, event: str, fields: dict[str, object], exc_info: bool = False) -> None:
        # Checked here as well as in the stdlib so a disabled debug event costs no dict or record.
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level,
                event,
                exc_info=exc_info,
                extra={_EVENT_ATTR: event, _FIELDS_ATTR: fields},
                # The record's file and line name the caller of debug()/info(), not this module.
                stacklevel=3,
            )

    def debug(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at debug level."""
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at info level."""
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at warning level."""
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at error level."""
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, /, **fields: object) -> None:
        """Log ``event`` at error level with the exception being handled as ``exc``."""
        self._log(logging.ERROR, event, fields, exc_info=True)


def get_logger(name: str) -> EventLogger:
    """An :class:`EventLogger` over ``logging.getLogger(name)``; use a name under ``pulsegate.``.

    Example:
        >>> get_logger("pulsegate.runtime").logger.name
        'pulsegate.runtime'
    """
    return EventLogger(logging.getLogger(name))


def _fields_of(record: logging.LogRecord) -> tuple[str, dict[str, object]]:
    event = getattr(record, _EVENT_ATTR, None)
    if isinstance(event, str):
        fields = getattr(record, _FIELDS_ATTR, None)
        return event, fields if isinstance(fields, dict) else {}
    return record.name, {"msg": record.getMessage()}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event, fields = _fields_of(record)
        secs = time.gmtime(record.created)
        line: dict[str, object] = {
            "ts": f"{time.strftime('%Y-%m-%dT%H:%M:%S', secs)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "worker": _worker,
            "event": event,
        }
        for key, value in fields.items():
            line["_" + key if key in _RESERVED else key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:
            # orjson refuses integers beyond 64 bits and strings holding lone surrogates (undecodable
            # bytes smuggled in by surrogateescape); the stdlib encoder takes both, escaped to ASCII.
            return json.dumps(line, default=str, separators=(",", ":"))


_COLOURS: Final = {
    logging.DEBUG: "\x1b[2m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_SHORT_LEVELS: Final = {logging.WARNING: "WARN", logging.CRITICAL: "CRIT"}


def _console_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or any(c in text for c in ' "=\n\r\t'):
        # JSON string quoting: unambiguous, and escapes newlines so one event stays on one line.
        return json.dumps(text, ensure_ascii=False)
    return text


class _ConsoleFormatter(logging.Formatter):
    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        event, fields = _fields_of(record)
        # Local time: the console format is read by a person at that terminal.
        clock = f"{time.strftime('%H:%M:%S', time.localtime(record.created))}.{int(record.msecs):03d}"
        level = _SHORT_LEVELS.get(record.levelno, record.levelname).ljust(5)
        if self.colour:
            level = f"{_COLOURS.get(record.levelno, '')}{level}\x1b[0m"
        parts = [clock, level, _worker, event]
        parts.extend(f"{key}={_console_value(value)}" for key, value in fields.items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class _LineHandler(logging.StreamHandler[IO[str]]):
    """A StreamHandler that can own its stream: opened by path, reopened for logrotate."""

    def __init__(self, stream: IO[str], path: str | None) -> None:
        super().__init__(stream)
        self.path = path

    def reopen(self) -> None:
        if self.path is None:
            return
        # Opened before the old one is closed: if the open fails, logging carries on to the old file.
        fresh = _open_log(self.path)
        old = self.setStream(fresh)  # takes the handler's lock: no line is half in each file
        if old is not None:
            old.close()

    def close(self) -> None:
        self.acquire()
        try:
            if self.path is not None:
                self.stream.close()
        finally:
            self.release()
            super().close()


def _open_log(path: str) -> IO[str]:
    # Line-buffered append: each line is flushed as one write(2), and O_APPEND keeps processes
    # sharing the file from overwriting each other.
    return open(path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    worker: str = "supervisor",
    stream: IO[str] | None = None,
    path: str | None = None,
) -> None:
    """Send the ``pulsegate`` loggers (and uvicorn's) to one handler in the JSON or console format.

    ``fmt`` is ``json``, ``console`` or ``auto`` (console on a TTY, JSON otherwise). The destination is
    ``stream`` (default ``sys.stderr``) or ``path``: ``stderr``, ``stdout`` or a file opened for
    append, which :func:`reopen` reopens after logrotate moved it. Calling it again replaces the
    previous configuration. uvicorn's access log is silenced: the proxy writes its own.

    Example:
        >>> import io
        >>> configure_logging(level="warning", fmt="console", stream=io.StringIO())
        >>> logging.getLogger("pulsegate").level == logging.WARNING
        True
    """
    global _handler
    levelno = _LEVELS.get(level.lower())
    if levelno is None:
        raise ValueError(f"unknown log level {level!r}: expected one of {', '.join(_LEVELS)}")
    if fmt not in _FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(_FORMATS)}")
    if stream is not None and path is not None:
        raise ValueError("configure_logging takes a stream or a path, not both")

    owned: str | None = None
    if path == "stderr":
        stream = sys.stderr
    elif path == "stdout":
        stream = sys.stdout
    elif path is not None:
        stream = _open_log(path)
        owned = path
    elif stream is None:
        stream = sys.stderr

    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    formatter: logging.Formatter = (
        _ConsoleFormatter(colour=_isatty(stream)) if fmt == "console" else _JsonFormatter()
    )
    handler = _LineHandler(stream, owned)
    handler.setFormatter(formatter)

    previous, _handler = _handler, handler
    set_worker(worker)

    root = logging.getLogger(ROOT_LOGGER)
    # Only our previous handler goes: one someone else added to the hierarchy (a test's, say) stays.
    if previous is not None and previous in root.handlers:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(levelno)
    root.disabled = False
    # Our handler only: lines would otherwise be written twice when the embedding application has
    # configured the root logger.
    root.propagate = False

    # uvicorn's own dictConfig (run by uvicorn.run unless log_config=None) installs stderr handlers with
    # its own format; ours replace them.
    uvicorn = logging.getLogger("uvicorn")
    uvicorn.handlers[:] = [handler]
    uvicorn.setLevel(levelno)
    uvicorn.propagate = False
    uvicorn.disabled = False
    # uvicorn's dictConfig gives uvicorn.error its own level; reset so it follows ours via "uvicorn".
    error = logging.getLogger("uvicorn.error")
    error.handlers.clear()
    error.setLevel(logging.NOTSET)
    error.propagate = True
    error.disabled = False
    # The proxy keeps its own access log; uvicorn's would log every admin API poll.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True

    if previous is not None:
        previous.close()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def reopen() -> None:
    """Reopen the log file configured by path (SIGUSR1 after logrotate); a no-op for streams.

    Raises ``OSError`` if the path cannot be opened; logging then continues to the old file.

    Example:
        >>> reopen()
    """
    if _handler is not None:
        _handler.reopen()
