"""The data plane's access log: one JSON line per request, recorded in nanoseconds, written in batches.

Why batching: a ``write(2)`` per request (~0.5 µs to a file, ~0.8 µs to a pipe, whose reader is also
woken for every line) would sit on every request's latency. So :meth:`AccessLog.record` formats the
line (a bytes template filled with one C-level ``%``; JSON escaping only when a regex finds a byte
that needs it) and appends it to a list: no I/O. Every ``flush_interval`` seconds, or as soon as
``max_buffer`` lines are waiting, :meth:`AccessLog.flush` runs from the event loop between requests
and hands the batch to the kernel in one ``write(2)``. The module is compiled with mypyc.

Why format at once rather than at flush: keeping a thousand requests' values (their bytes objects)
alive until the flush measured slower on the proxy benchmark than formatting each line straight
away, when the values are still in the cache and can be freed (docs/benchmarks.md).
:meth:`AccessLog.record_checked` is the proxy's entry: the parser has validated the method, the
request id and the target, so only quotes and backslashes in the path are looked for.

What that costs: up to ``flush_interval`` of lines are lost if the process is killed with SIGKILL
(``close()`` on shutdown flushes), and a destination that cannot keep up loses lines instead of
slowing the proxy: a non-blocking pipe that is full, or a reader that went away, drops the rest of
the batch and counts the lines in :attr:`AccessLog.dropped`. A blocking destination (a regular file,
a terminal) is written in full.

Not thread-safe: each worker process owns one ``AccessLog`` and uses it from its event loop thread.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "access.log")
    >>> log = AccessLog(path)
    >>> log.record(b"GET", b"/a", "api", "backend", "10.0.0.1:80", 200, 0, 512, 1500, 1200, b"r1", b"::1")
    >>> os.path.getsize(path)  # recorded, not yet written
    0
    >>> log.close()
    >>> orjson.loads(open(path, "rb").read())["duration_ms"]
    1.5
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import time
from collections.abc import Callable
from typing import Final

import orjson
from mypy_extensions import mypyc_attr

__all__ = ["AccessLog"]

#: Distinct (route, upstream, target) segments cached before the cache starts over.
_MAX_SEGMENTS: Final = 4096

_STANDARD_FDS: Final = {"stdout": 1, "stderr": 2}
_APPEND_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

# While a scheduled flush is pending records keep arriving; past this many times max_buffer (the loop
# is not running the callback: stopped, or blocked) record() flushes inline rather than grow forever.
_HARD_LIMIT_FACTOR: Final = 8


# Compiled with mypyc (record() runs once per request); tests subclass it to observe flushes.
@mypyc_attr(allow_interpreted_subclasses=True)
class AccessLog:
    """Buffered JSON-lines access log to ``stdout``, ``stderr`` or a file (append, created if missing).

    Call :meth:`start` once the event loop runs to flush every ``flush_interval`` seconds; until then,
    and without a loop, the buffer is flushed inline whenever it holds ``max_buffer`` records.

    Example:
        >>> log = AccessLog("stdout", flush_interval=0.5, max_buffer=256)
        >>> log.record(b"GET", b"/", "root", "web", "127.0.0.1:8080", 200, 0, 12, 840, 610, b"id", b"1.2.3.4")
        >>> log.records_written, log.dropped
        (0, 0)
    """

    def __init__(
        self,
        path: str,
        *,
        flush_interval: float = 1.0,
        max_buffer: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be positive, got {flush_interval!r}")
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be at least 1, got {max_buffer!r}")
        self.path = path
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._clock = clock
        self._owned = path not in _STANDARD_FDS
        self._fd = _open(path)
        self._buffer: list[bytes] = []
        self._segments: dict[tuple[str, str, str], bytes] = {}
        self._last_route = self._last_upstream = self._last_target = ""
        self._last_segment = self._segment(("", "", ""))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flush_pending = False
        # The last write stopped inside a line: the next batch starts on a fresh line.
        self._torn = False
        self._closed = False
        self._ts_second = -1
        self._ts_prefix_b = b""
        #: Lines handed to the destination in full.
        self.records_written = 0
        #: Lines lost: the destination was full (EAGAIN), gone (EPIPE) or failing, or the log was closed.
        self.dropped = 0

    def fileno(self) -> int:
        """The descriptor written to (``-1`` once closed); stays the same across :meth:`reopen`."""
        return self._fd

    def record(  # noqa: PLR0917 -- positional: passing 12 keywords costs ~50 ns more per request
        self,
        method: bytes,
        path: bytes,
        route: str,
        upstream: str,
        target: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        total_us: int,
        upstream_us: int,
        request_id: bytes,
        client: bytes,
    ) -> None:
        """Buffer one request's line; no formatting, no I/O (a flush is scheduled if the buffer is full).

        Example:
            >>> log = AccessLog("stderr")
            >>> log.record(b"GET", b"/x", "r", "u", "10.0.0.2:80", 502, 0, 0, 3000, 0, b"id", b"10.1.1.1")
        """
        # One regex scan over the four wire values (a translate() per value costs 3x as much).
        if _NEEDS_ESCAPE(method + path + request_id + client) is not None:
            method, path, request_id, client = (
                _escape(method),
                _escape(path),
                _escape(request_id),
                _escape(client),
            )
        self._append(
            method,
            path,
            route,
            upstream,
            target,
            status,
            bytes_in,
            bytes_out,
            total_us,
            upstream_us,
            request_id,
            client,
        )

    def record_checked(  # noqa: PLR0917 -- see record()
        self,
        method: bytes,
        path: bytes,
        route: str,
        upstream: str,
        target: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        total_us: int,
        upstream_us: int,
        request_id: bytes,
        client: bytes,
    ) -> None:
        """:meth:`record` for values the proxy has already validated, the per-request path.

        ``method`` must be an HTTP token, ``request_id`` and ``client`` printable ASCII without
        quote or backslash, and ``path`` printable ASCII (llhttp refuses anything else in a request
        target); only quotes and backslashes in the path are looked for here.

        Example:
            >>> log = AccessLog("stderr")
            >>> log.record_checked(b"GET", b"/x", "r", "u", "10.0.0.2:80", 200, 0, 5, 800, 700, b"id", b"::1")
        """
        # find(), not ``in``: bytes.__contains__ first tries its argument as an integer, and
        # formatting and clearing that TypeError cost ~120 ns per test (perf: PyErr_Format).
        if path.find(b'"') >= 0 or path.find(b"\\") >= 0:
            path = _escape(path)
        self._append(
            method,
            path,
            route,
            upstream,
            target,
            status,
            bytes_in,
            bytes_out,
            total_us,
            upstream_us,
            request_id,
            client,
        )

    def _append(  # noqa: PLR0917 -- see record()
        self,
        method: bytes,
        path: bytes,
        route: str,
        upstream: str,
        target: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        total_us: int,
        upstream_us: int,
        request_id: bytes,
        client: bytes,
    ) -> None:
        # The row is the line's template arguments, in final form: flush() is then one C-level
        # map over the rows. Building it here runs compiled (mypyc) in the per-request path.
        ms_total = int(self._clock() * 1000)
        second = ms_total // 1000
        if second != self._ts_second:
            # A second holds thousands of requests: strftime once per second, not once per line.
            self._ts_second = second
            self._ts_prefix_b = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)).encode()
        # Consecutive requests mostly share route and target: compare identities before hashing.
        if route is self._last_route and target is self._last_target and upstream is self._last_upstream:
            segment = self._last_segment
        else:
            key = (route, upstream, target)
            segment = self._segments.get(key) or self._segment(key)
            self._last_route, self._last_upstream, self._last_target = route, upstream, target
            self._last_segment = segment
        buffer = self._buffer
        # Formatted now rather than at flush: keeping the row (and the request's bytes objects)
        # alive for a thousand requests measured slower than one C-level % per request.
        buffer.append(
            _LINE
            % (
                self._ts_prefix_b,
                _MILLIS[ms_total - second * 1000],
                method,
                path,
                segment,
                status,
                bytes_in,
                bytes_out,
                total_us // 1000,
                _MILLIS[total_us % 1000],
                upstream_us // 1000,
                _MILLIS[upstream_us % 1000],
                request_id,
                client,
            )
        )
        if len(buffer) >= self.max_buffer:
            self._full()

    def _full(self) -> None:
        if self._flush_pending:
            if len(self._buffer) >= self.max_buffer * _HARD_LIMIT_FACTOR:
                self.flush()
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            self.flush()
            return
        # Flushing here would put the format-and-write of a whole batch on one unlucky request;
        # call_soon runs it between requests, right after the current callback returns.
        self._flush_pending = True
        loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        if self._flush_pending:
            self.flush()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush from ``loop`` every ``flush_interval`` seconds and when the buffer fills.

        Example:
            >>> log = AccessLog("stdout")
            >>> log.start(asyncio.get_running_loop())  # doctest: +SKIP
        """
        if self._closed:
            raise RuntimeError("AccessLog.start() after close()")
        if self._timer is not None:
            self._timer.cancel()
        self._loop = loop
        self._timer = loop.call_later(self.flush_interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.flush()
        finally:
            if not self._closed and self._loop is not None:
                self._timer = self._loop.call_later(self.flush_interval, self._tick)

    def flush(self) -> None:
        """Format every buffered record and write the batch in one ``write(2)``; never raises for I/O.

        Example:
            >>> log = AccessLog("stdout")
            >>> log.flush()  # nothing buffered: no write at all
        """
        self._flush_pending = False
        entries = self._buffer
        if not entries:
            return
        self._buffer = []
        if self._fd < 0:
            self.dropped += len(entries)
            return
        data = b"".join(entries)
        if self._torn:
            data = b"\n" + data
        self._write(data, len(entries), 1 if self._torn else 0)

    def _segment(self, key: tuple[str, str, str]) -> bytes:
        route, upstream, target = key
        fields = {"route": route, "upstream": upstream, "target": target}
        try:
            segment = orjson.dumps(fields)[1:-1]
        except TypeError:
            # A str with a lone surrogate: not from the proxy (names are validated), but one bad
            # record must not cost the batch. The stdlib encoder escapes it.
            segment = json.dumps(fields, separators=(",", ":")).encode()[1:-1]
        if len(self._segments) >= _MAX_SEGMENTS:
            self._segments.clear()  # routes x targets after many reloads: start over
        self._segments[key] = segment
        return segment

    def _write(self, data: bytes, lines: int, leading_newlines: int) -> None:
        view = memoryview(data)
        written = 0
        while written < len(data):
            try:
                written += os.write(self._fd, view[written:])
            except OSError:
                # EAGAIN (a full non-blocking pipe), EPIPE (the reader is gone), ENOSPC, EIO...: the
                # proxy must keep serving, so the rest of the batch is lost and counted. (EINTR is
                # retried inside os.write.)
                break
        if written == len(data):
            self._torn = False
            self.records_written += lines
            return
        if written == 0:
            self.dropped += lines
            return
        whole = max(0, data.count(b"\n", 0, written) - leading_newlines)
        # A line cut short stays in the output; the next batch starts after a newline so that only
        # that one line is damaged rather than it and the next one glued together.
        self._torn = data[written - 1] != 0x0A
        self.records_written += whole
        self.dropped += lines - whole

    def reopen(self) -> None:
        """Flush, then reopen the file by path (SIGUSR1 after logrotate); a no-op for stdout/stderr.

        Raises ``OSError`` if the path cannot be opened; the log then keeps writing to the old file.

        Example:
            >>> log = AccessLog("stdout")
            >>> log.reopen()
        """
        self.flush()
        if not self._owned or self._closed:
            return
        fresh = _open(self.path)
        try:
            # Onto the same descriptor number: fileno() stays valid and no write sees a closed fd.
            os.dup2(fresh, self._fd, inheritable=False)
        finally:
            os.close(fresh)
        self._torn = False

    def close(self) -> None:
        """Flush, stop the timer and close the file (stdout/stderr stay open). Idempotent.

        Example:
            >>> AccessLog("stderr").close()
        """
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        if self._owned:
            os.close(self._fd)
        self._fd = -1


_LINE: Final = (
    b'{"ts":"%s%sZ","method":"%s","path":"%s",%s,"status":%d,"bytes_in":%d,"bytes_out":%d,'
    b'"duration_ms":%d.%s,"upstream_ms":%d.%s,"request_id":"%s","client":"%s"}\n'
)
#: Three-digit fractions, looked up: ``%03d`` takes bytes formatting's slow path (a width) and
#: costs ~30 ns more per field than copying these.
_MILLIS: Final = tuple(b"%03d" % i for i in range(1000))
#: Finds a byte a JSON string may not hold as it is: not printable ASCII, a quote or a backslash.
_NEEDS_ESCAPE: Final = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e]").search


def _escape(value: bytes) -> bytes:
    """``value`` (wire bytes, read as latin-1) as the inside of a JSON string."""
    return orjson.dumps(value.decode("latin-1"))[1:-1]


def _open(path: str) -> int:
    fd = _STANDARD_FDS.get(path)
    if fd is not None:
        return fd
    try:
        return os.open(path, _APPEND_FLAGS, 0o644)
    except OSError as exc:
        hint = " (its directory must exist)" if exc.errno == errno.ENOENT else ""
        raise type(exc)(exc.errno, f"cannot open access log{hint}: {exc.strerror}", path) from exc
