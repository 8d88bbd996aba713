"""The supervisor's metric history: 1 s points in memory, rollups persisted in SQLite.

The aggregator closes one :class:`~pulsegate.metrics.aggregator.Point` per interval (1 s). The
history keeps them in a ring for the last ``memory_window`` seconds, for live charts, and folds
them into rollups of ``resolution`` seconds (windows aligned to multiples of ``resolution`` in
wall-clock time, by ``Point.time``), which it writes to SQLite and keeps for ``retention``
seconds. The database outlives the supervisor: a new ``History`` on the same path sees the old
rollups, and a restart inside a window continues that window's row instead of replacing it.

Storage. One table, ``points(time REAL PRIMARY KEY, interval REAL, data BLOB)``: ``time`` is the
window start (the primary key is the only index queries need), ``interval`` the seconds the
rollup actually covers, ``data`` the msgpack-encoded rollup ``Point``. A rollup is
``merge_points`` of its 1 s points, so it keeps their semantics: ``Point.time`` is the time of its
first point, counters and histograms are added, gauges are the last point's. The database runs
in WAL mode with ``synchronous=NORMAL``: a power cut may lose the last rollups, never corrupt the
file, and a write costs no fsync on the supervisor's event loop.

Not thread-safe: use it from the thread that created it (the supervisor's event loop).

Example:
    >>> from pulsegate.metrics.aggregator import Point
    >>> from pulsegate.metrics.snapshot import RouteSample
    >>> h = History("off", retention=86400, resolution=10, memory_window=60, clock=lambda: 125.0)
    >>> for t in range(100, 125):
    ...     h.append(Point(time=float(t), interval=1.0, routes={"api": RouteSample(requests=2)}))
    >>> len(h.recent(10))
    10
    >>> [(p.time, p.interval, p.routes["api"].requests) for p in h.query(100)]
    [(100.0, 10.0, 20), (110.0, 10.0, 20), (120.0, 5.0, 10)]
    >>> [(p.time, p.interval) for p in h.query(100, resolution=20)]
    [(100.0, 20.0), (120.0, 5.0)]
    >>> h.close()
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from pulsegate.metrics.aggregator import Point, merge_points

#: The ``path`` that keeps history in memory only.
MEMORY_ONLY: Final = "off"
#: Seconds between two purges of rows older than the retention.
PURGE_INTERVAL: Final = 60.0
# Window starts are float multiples of the resolution: rounding may put one a hair below the boundary
# of a coarser window it starts, so comparisons against such boundaries allow this relative slack.
_SLACK: Final = 1e-6

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS points (time REAL PRIMARY KEY, interval REAL NOT NULL, data BLOB NOT NULL)"
)
_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Point)


class HistoryError(Exception):
    """The history database could not be opened, read or written; ``path`` names it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"metric history {path}: {message}")
        self.path = path


def _connect(path: str) -> sqlite3.Connection:
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        # Autocommit: every write is one statement, and a long implicit transaction would only
        # hold the WAL open. The short busy timeout bounds how long a second process holding the
        # file can stall the supervisor's event loop.
        db = sqlite3.connect(path, timeout=1.0, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(path, f"cannot open database: {exc}") from exc
    try:
        # The first statement reads the header: a file that is not a database fails here.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
    except sqlite3.Error as exc:
        db.close()
        raise HistoryError(path, f"cannot open database: {exc}") from exc
    return db


class History:
    """Recent 1 s points in memory and ``resolution``-second rollups in SQLite (see the module doc).

    ``path`` is the database file (parent directories are created) or ``"off"`` for memory only:
    then ``query`` rolls up the in-memory points, so it reaches back ``memory_window`` seconds.
    ``point_interval`` is the seconds one appended point covers; with ``memory_window`` it sizes
    the ring. ``clock`` (wall-clock seconds) decides what ``recent`` returns and when rows expire.

    Raises ``HistoryError`` if the database cannot be opened, and from ``append``, ``flush``,
    ``query`` and ``close`` if it cannot be used; the in-memory state stays consistent, so the
    caller may log the error and carry on.

    >>> h = History("off", retention=60, resolution=10, memory_window=10, clock=lambda: 0.0)
    >>> for t in range(30):
    ...     h.append(Point(time=float(t), interval=1.0))
    >>> [p.time for p in h.recent(1000)][:3], len(h.query(0))
    ([20.0, 21.0, 22.0], 1)
    """

    def __init__(
        self,
        path: str,
        *,
        retention: float,
        resolution: float,
        memory_window: float,
        clock: Callable[[], float] = time.time,
        point_interval: float = 1.0,
    ) -> None:
        for name, value in (
            ("retention", retention),
            ("resolution", resolution),
            ("memory_window", memory_window),
            ("point_interval", point_interval),
        ):
            if not value > 0:  # also rejects NaN
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.path = path
        self.retention = retention
        self.resolution = resolution
        self.memory_window = memory_window
        self._clock = clock
        self._ring: deque[Point] = deque(maxlen=max(1, math.ceil(memory_window / point_interval)))
        #: Start of the window being accumulated, and its points so far (the first one may be the
        #: row an earlier run or an earlier pass over this window wrote).
        self._window: float | None = None
        self._pending: list[Point] = []
        self._last_purge = -math.inf
        self._closed = False
        #: Rows skipped by ``query`` because they could not be decoded (e.g. written by an
        #: incompatible version): one bad row should not hide the rest of the history.
        self.bad_rows = 0
        self._db = None if path == MEMORY_ONLY else _connect(path)

    # -- writing ----------------------------------------------------------------------------------

    def append(self, point: Point) -> None:
        """Add one closed point (in time order); write the previous window once a new one starts."""
        self._check_open()
        self._ring.append(point)
        # The maxlen alone would keep stale points across a gap in the data.
        horizon = point.time - self.memory_window
        while self._ring[0].time < horizon:
            self._ring.popleft()
        window = self._window_of(point.time)
        if window == self._window:
            self._pending.append(point)
        else:
            finished, points = self._window, self._pending
            # Switch first: if the write below fails, only the finished window is lost and the
            # next append carries on normally.
            self._window, self._pending = window, [point]
            if finished is not None and points:
                self._write(finished, points)
            # The new window has a row already after a restart (the old supervisor flushed it) or
            # after the clock went back: continue it, or the replacement row would drop it.
            earlier = self._load(window)
            if earlier is not None:
                self._pending.insert(0, earlier)
        now = self._clock()
        if now - self._last_purge >= PURGE_INTERVAL:
            self._purge(now)

    def flush(self) -> None:
        """Write the current, partial window (at shutdown).

        Its points stay pending, so a later ``append`` into the same window rewrites the row with
        all of them (``INSERT OR REPLACE`` on the window start): no duplicate, nothing lost.
        """
        self._check_open()
        if self._window is not None and self._pending:
            self._write(self._window, self._pending)

    def close(self) -> None:
        """Flush and close the database; later calls raise ``HistoryError``. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------------

    def recent(self, seconds: float) -> list[Point]:
        """The in-memory points overlapping the last ``seconds`` before *the clock* (not before the
        newest point: if points stop arriving, this empties instead of showing stale data), oldest
        first.

        A point covers ``[time, time + interval)``, so it is included when
        ``time + interval > clock() - seconds``.
        """
        since = self._clock() - seconds
        return [p for p in self._ring if p.time + p.interval > since]

    def query(self, since: float, until: float | None = None, resolution: float | None = None) -> list[Point]:
        """Rollups whose window overlaps ``[since, until)``, oldest first, including the current,
        not yet written window.

        ``resolution`` (a multiple of the stored one) merges them further into windows aligned to
        multiples of it; those are selected whole, so the first may start before ``since`` and the
        last end after ``until``. Each
        point keeps ``merge_points`` semantics: ``time`` of its first 1 s point, ``interval`` the
        seconds actually covered (less than the window where data is missing).

        Raises ``ValueError`` for a resolution that is not a multiple of the stored one.
        """
        self._check_open()
        step = self.resolution if resolution is None else resolution
        ratio = round(step / self.resolution)
        if ratio < 1 or abs(ratio * self.resolution - step) > _SLACK * step:
            raise ValueError(f"resolution must be a multiple of {self.resolution:g} s, got {step!r}")
        low = math.floor(since / step) * step - _SLACK * step
        high = math.inf if until is None else (math.ceil(until / step - _SLACK) - _SLACK) * step
        rollups = self._stored(low, high) if self._db is not None else self._from_memory(low, high)
        if self._window is not None and self._pending and low <= self._window < high:
            # Supersedes the row a flush wrote for it: the pending points include that row.
            rollups[self._window] = merge_points(self._pending)
        ordered = sorted(rollups.items())
        if ratio == 1:
            return [p for _, p in ordered]
        groups: dict[int, list[Point]] = {}
        for start, p in ordered:
            groups.setdefault(math.floor(start / step + _SLACK), []).append(p)
        return [merge_points(points) for points in groups.values()]

    # -- internals --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryError(self.path, "closed")

    def _window_of(self, t: float) -> float:
        return float(math.floor(t / self.resolution) * self.resolution)

    def _write(self, window: float, points: list[Point]) -> None:
        if self._db is None:
            return
        merged = merge_points(points)
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO points (time, interval, data) VALUES (?, ?, ?)",
                (window, merged.interval, _encoder.encode(merged)),
            )
        except sqlite3.Error as exc:
            raise HistoryError(self.path, f"cannot write: {exc}") from exc

    def _load(self, window: float) -> Point | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT data FROM points WHERE time = ?", (window,)).fetchone()
        except sqlite3.Error as exc:
            raise HistoryError(self.path, f"cannot read: {exc}") from exc
        return None if row is None else self._decode(row[0])

    def _purge(self, now: float) -> None:
        self._last_purge = now
        if self._db is None:
            return
        try:
            self._db.execute("DELETE FROM points WHERE time < ?", (now - self.retention,))
        except sqlite3.Error as exc:
            raise HistoryError(self.path, f"cannot purge: {exc}") from exc

    def _stored(self, low: float, high: float) -> dict[float, Point]:
        assert self._db is not None
        try:
            rows: Iterable[tuple[float, bytes]] = self._db.execute(
                "SELECT time, data FROM points WHERE time >= ? AND time < ? ORDER BY time", (low, high)
            ).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(self.path, f"cannot read: {exc}") from exc
        out: dict[float, Point] = {}
        for start, data in rows:
            p = self._decode(data)
            if p is not None:
                out[start] = p
        return out

    def _from_memory(self, low: float, high: float) -> dict[float, Point]:
        windows: dict[float, list[Point]] = {}
        for p in self._ring:
            start = self._window_of(p.time)
            if low <= start < high:
                windows.setdefault(start, []).append(p)
        return {start: merge_points(points) for start, points in windows.items()}

    def _decode(self, data: bytes) -> Point | None:
        try:
            return _decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError included
            self.bad_rows += 1
            return None
