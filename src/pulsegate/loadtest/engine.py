"""One generator process: raw HTTP/1.1 over keep-alive connections (uvloop + httptools), in the
open model (requests sent at planned times, latency measured from the planned time) or the
closed model (each connection sends its next request when the previous answer arrives).

Clocks. Every timestamp is ``time.monotonic()`` (nanosecond clock): uvloop's ``loop.time()`` is
cached per loop iteration at millisecond resolution, which would read a 0.2 ms answer as 0 or 1 ms.

Coordinated omission. A closed-model tool waits for an answer before sending again, so while the
server stalls it sends nothing and records one slow request instead of the hundreds a real
population of users would have suffered. In the open model every request has an *intended* send
time from the plan; latency is measured from that time, whether the request went out then or
waited for a free connection (as wrk2 does). A send that leaves more than ``LATE_AFTER`` after its
intended time is counted as late; one that cannot even be queued (more than ``max_queue`` waiting)
is counted as missed. The generator reports that it fell behind instead of quietly sending less.

Example::

    gen = Generator(targets, connections=16, timeout=10.0)
    seconds = await gen.run_open(plan, share=0.5, start=time.monotonic() + 0.1)
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections import deque
from collections.abc import Sequence
from time import monotonic

import httptools

from pulsegate.loadtest.model import Plan
from pulsegate.metrics.histogram import bucket_index

#: A send this late (seconds after its intended time) counts as late.
LATE_AFTER = 0.010
#: Time resolution of the rate plan (the rate is taken as constant over each step).
RATE_STEP = 0.001
#: How often in-flight requests are checked against the timeout.
SWEEP_EVERY = 0.05


class Target:
    """A prepared request: where to connect and the exact bytes to send."""

    __slots__ = ("data", "head_only", "host", "port")

    def __init__(self, host: str, port: int, data: bytes, head_only: bool = False) -> None:
        self.host = host
        self.port = port
        self.data = data
        self.head_only = head_only


class SecondStats:
    """What happened to requests whose intended (or actual, closed model) send time fell in one
    second of the run."""

    __slots__ = ("errors", "hist", "late", "ok", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.late = 0
        self.errors: dict[str, int] = {}
        #: Sparse log-linear histogram of latencies (µs): a second holds tens of buckets, where
        #: a dense Histogram would be 9 KB per second (800 MB over a day-long run).
        self.hist: dict[int, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def record(self, seconds: float) -> None:
        """One latency, in seconds."""
        i = bucket_index(int(seconds * 1_000_000))
        hist = self.hist
        hist[i] = hist.get(i, 0) + 1


class _Sink:
    """The callbacks of one response parser. A parser replaced mid-callback (after a HEAD answer)
    may still report the rest of its input; its sink is then stale and ignored."""

    __slots__ = ("conn", "gen")

    def __init__(self, conn: Connection, gen: int) -> None:
        self.conn = conn
        self.gen = gen

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.gen == self.conn.parser_gen and name.lower() in (b"content-length", b"transfer-encoding"):
            self.conn.framed = True

    def on_headers_complete(self) -> None:
        if self.gen == self.conn.parser_gen:
            self.conn.on_headers_complete()

    def on_message_complete(self) -> None:
        if self.gen == self.conn.parser_gen:
            self.conn.on_message_complete()


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, gen: Generator, target: Target) -> None:
        self.gen = gen
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.parser_gen = 0
        self.parser = httptools.HttpResponseParser(_Sink(self, 0))
        self.fresh_parser = False
        self.busy = False
        self.intended = 0.0
        self.sent_at = 0.0
        self.status = 0
        #: The answer has a Content-Length or is chunked (else it ends when the server closes).
        self.framed = False
        self.closed = False

    def _new_parser(self) -> None:
        self.parser_gen += 1
        self.parser = httptools.HttpResponseParser(_Sink(self, self.parser_gen))

    def fire(self, target: Target, intended: float, now: float) -> None:
        if target.head_only or self.fresh_parser:
            # A HEAD answer has no body but llhttp cannot know: parse each one, and whatever
            # follows it, with a parser of its own.
            self._new_parser()
        self.fresh_parser = target.head_only
        self.busy = True
        self.target = target
        self.intended = intended
        self.sent_at = now
        self.status = 0
        self.framed = False
        assert self.transport is not None
        self.transport.write(target.data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail("protocol")
        except httptools.HttpParserError:
            self.fail("protocol")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.target.head_only:
            self.on_message_complete()

    def on_message_complete(self) -> None:
        if not self.busy:
            return
        self.busy = False
        keep = self.parser.should_keep_alive()
        if keep:
            self.gen.finished(self, self.status)
            return
        self.closed = True  # not reusable: the generator must not send on it again
        self.gen.finished(self, self.status)
        if self.transport is not None:
            self.transport.close()
        self.gen.lost(self)

    def eof_received(self) -> bool | None:
        if self.busy and self.status and not self.framed and not self.target.head_only:
            # An HTTP/1.0-style answer: its body ends with the connection.
            self.busy = False
            self.closed = True
            self.gen.finished(self, self.status)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy:
            self.busy = False
            self.gen.failed(self, "reset")
        self.gen.lost(self)

    def fail(self, kind: str) -> None:
        if self.busy:
            self.busy = False
            self.gen.failed(self, kind)
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
            self.gen.lost(self)


class Generator:
    """Sends requests to ``targets`` (picked by weight) over at most ``connections`` connections."""

    def __init__(
        self,
        targets: Sequence[tuple[Target, float]],
        *,
        connections: int,
        timeout: float,
        max_queue: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.targets = [t for t, _ in targets]
        total = 0.0
        self._cum: list[float] = []
        for _, w in targets:
            total += w
            self._cum.append(total)
        self._total_weight = total
        self.connections = connections
        self.timeout = timeout
        self.max_queue = max_queue if max_queue is not None else connections * 64
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        self.start = 0.0
        self.seconds: dict[int, SecondStats] = {}
        self.idle: list[Connection] = []
        self.all: set[Connection] = set()
        self.opening = 0
        self.queue: deque[float] = deque()
        self.missed = 0
        #: Failed requests so far (for the live progress line).
        self.errors_total = 0
        self.in_flight = 0
        self.closed_model = False
        self.stopping = False
        self._drained: asyncio.Event = asyncio.Event()
        self._stop_event: asyncio.Event = asyncio.Event()

    # -- bookkeeping --------------------------------------------------------------------------

    def _pick(self) -> Target:
        if len(self.targets) == 1:
            return self.targets[0]
        r = self.rng.random() * self._total_weight
        return self.targets[min(bisect.bisect_right(self._cum, r), len(self.targets) - 1)]

    def _error(self, st: SecondStats, kind: str) -> None:
        st.error(kind)
        self.errors_total += 1

    def _second(self, t: float) -> SecondStats:
        s = int(max(0.0, t - self.start))
        st = self.seconds.get(s)
        if st is None:
            st = self.seconds[s] = SecondStats()
        return st

    def finished(self, conn: Connection, status: int) -> None:
        now = monotonic()
        st = self._second(conn.intended)
        st.record(now - conn.intended)
        if status >= 500:
            self._error(st, "status_5xx")
        elif status >= 400:
            self._error(st, "status_4xx")
        else:
            st.ok += 1
        self._release(conn)

    def failed(self, conn: Connection, kind: str) -> None:
        st = self._second(conn.intended)
        self._error(st, kind)
        if kind == "timeout":
            # The wait is part of the latency: a server that stalls past the timeout must not
            # leave the percentiles looking healthy.
            st.record(monotonic() - conn.intended)
        self.in_flight -= 1
        self._maybe_drained()

    def lost(self, conn: Connection) -> None:
        if conn not in self.all:
            return
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if self.queue or (self.closed_model and not self.stopping):
            self._open()  # keep the connection count (the server closed one); queued requests
            # are still served while the run drains

    def _release(self, conn: Connection) -> None:
        self.in_flight -= 1
        if conn.closed:
            self._maybe_drained()
            return
        if self.closed_model:
            if not self.stopping:
                self._fire(conn, monotonic())
        elif self.queue:
            self._fire(conn, self.queue.popleft())
        else:
            self.idle.append(conn)
        self._maybe_drained()

    def _maybe_drained(self) -> None:
        if self.stopping and self.in_flight == 0 and not self.queue:
            self._drained.set()

    def _fire(self, conn: Connection, intended: float) -> None:
        now = monotonic()
        st = self._second(intended)
        if self.closed_model:
            st.sent += 1  # (open model: counted when due, in _dispatch)
        if now - intended > LATE_AFTER:
            st.late += 1
        self.in_flight += 1
        conn.fire(self._pick(), intended, now)

    # -- connections --------------------------------------------------------------------------

    def _open(self) -> None:
        self.opening += 1
        self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        target = self.targets[0]
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: Connection(self, target), target.host, target.port),
                self.timeout,
            )
        except (OSError, TimeoutError):
            self.opening -= 1
            # The requests that were waiting for this connection fail, one per attempt.
            if self.queue:
                self._error(self._second(self.queue.popleft()), "connect")
            elif self.closed_model and not self.stopping:
                self._error(self._second(monotonic()), "connect")
                await asyncio.sleep(0.05)  # a refused target must not turn into a busy loop
                self._open()
            return
        self.opening -= 1
        if self.stopping and not self.queue:
            conn.close()
            return
        self.all.add(conn)
        if self.closed_model:
            self._fire(conn, monotonic())
        elif self.queue:
            self._fire(conn, self.queue.popleft())
        else:
            self.idle.append(conn)

    # -- sweeping timeouts -----------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = monotonic()
            for conn in [c for c in self.all if c.busy and now - c.sent_at > self.timeout]:
                conn.fail("timeout")

    # -- the two models -----------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when stopped (Ctrl-C)."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self._stop_event.wait(), seconds)
            except TimeoutError:
                pass

    async def run_open(
        self, plan: Plan, share: float, start: float, phase: float = 0.0
    ) -> dict[int, SecondStats]:
        """Send ``share`` of ``plan``'s rate from ``start`` (a ``time.monotonic()`` instant).
        ``phase`` (0..1) staggers processes sharing a plan, so their sends interleave instead
        of leaving in bursts."""
        self.start = start
        sweeper = self.loop.create_task(self._sweep())
        for _ in range(self.connections):
            self._open()  # ready before the first planned send, as wrk2 does
        try:
            await self._pause(start - monotonic())
            duration = plan.duration
            end = start + duration
            # Sends follow the integral of the rate: a request is due each time one more request's
            # worth of "credit" has accrued, so ramps starting at 0/s and fast changes come out
            # right (stepping by 1/rate would stall on a rate near 0).
            t = 0.0  # seconds into the run
            credit = (1.0 if plan.rate_at(0.0) > 0 else 0.0) - phase
            burst = 0
            while t < duration - 1e-9 and not self.stopping:
                rate = plan.rate_at(t) * share
                if rate > 0 and credit >= 1.0 - 1e-9:
                    intended = start + t
                    now = monotonic()
                    if now > end:
                        # Hopelessly behind (a rate beyond this process): the run still ends on
                        # time, and what it could not send is reported as missed.
                        self.missed += round((plan.planned_between(t, duration)) * share)
                        break
                    delay = intended - now
                    burst += 1
                    if delay > 0.0005:
                        await self._pause(delay)
                        burst = 0
                    elif burst >= 64:
                        await asyncio.sleep(0)  # behind schedule: still let responses in
                        burst = 0
                    self._dispatch(intended)
                    credit -= 1.0
                    continue
                if rate > 0 and (1.0 - credit) / rate <= RATE_STEP:
                    t += (1.0 - credit) / rate
                    credit = 1.0
                    continue
                credit += rate * RATE_STEP
                t += RATE_STEP
        finally:
            await self._finish(sweeper)
        return self.seconds

    def _dispatch(self, intended: float) -> None:
        """A request is due: send it now, or queue it for the next free connection."""
        if len(self.queue) >= self.max_queue and not self.idle:
            self.missed += 1
            return
        self._second(intended).sent += 1
        if self.idle:
            self._fire(self.idle.pop(), intended)
            return
        self.queue.append(intended)
        if len(self.all) + self.opening < self.connections:
            self._open()

    async def run_closed(self, duration: float, start: float) -> dict[int, SecondStats]:
        """Keep ``connections`` connections busy for ``duration`` seconds from ``start``."""
        self.start = start
        self.closed_model = True
        sweeper = self.loop.create_task(self._sweep())
        try:
            await self._pause(start - monotonic())
            for _ in range(self.connections):
                self._open()
            await self._pause(start + duration - monotonic())
        finally:
            await self._finish(sweeper)
        return self.seconds

    def stop(self) -> None:
        """Stop sending (Ctrl-C); what is in flight may still finish."""
        self.stopping = True
        self._stop_event.set()

    async def _finish(self, sweeper: asyncio.Task[None]) -> None:
        """Let in-flight and queued requests finish (bounded); whatever is left counts as failed
        with the time it waited, so the end of an overloaded run is not quietly dropped."""
        self.stopping = True
        if self.in_flight or self.queue:
            try:
                await asyncio.wait_for(self._drained.wait(), min(self.timeout, 5.0))
            except TimeoutError:
                pass
        sweeper.cancel()
        now = monotonic()
        while self.queue:
            intended = self.queue.popleft()
            st = self._second(intended)
            self._error(st, "unsent")
            st.record(now - intended)
        for conn in list(self.all):
            if conn.busy:
                conn.fail("timeout")
            conn.close()
