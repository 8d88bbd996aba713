"""Active HTTP health checks of upstream targets (nginx Plus ``health_check``, Envoy, HAProxy).

Two layers: :class:`HealthState`, the sans-IO rise/fall hysteresis of one target, and
:class:`HealthChecker`, which probes each target on its own asyncio task and reports every
:class:`CheckResult` to a callback. A probe is one ``GET`` on a fresh connection; only the status
line is read.

Example:
    >>> s = HealthState(rise=2, fall=2)
    >>> [s.record(ok) for ok in (False, False, True, True)], s.healthy
    ([False, True, False, True], True)
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pulsegate.balancing.target import split_address

logger = logging.getLogger("pulsegate.health")

Expect = frozenset[int] | tuple[int, int]
# A status line or header longer than this is not an HTTP server we want to keep talking to.
_LINE_LIMIT = 8192
_STATUS_LINE = re.compile(rb"HTTP/1\.\d ([1-5]\d\d)(?: [^\r\n]*)?")
_FORBIDDEN = re.compile(r"[^\x21-\x7e]")  # would let a config value forge request lines/headers
_STATUS_CLASS = re.compile(r"[1-5]xx")
_STATUS_RANGE = re.compile(r"(\d{3})(?:\s*-\s*(\d{3}))?", re.ASCII)


class HealthState:
    """Rise/fall hysteresis for one target; starts healthy, as nginx does without ``mandatory``.

    >>> s = HealthState(rise=1, fall=3)
    >>> [s.record(False) for _ in range(3)], s.healthy, s.failures
    ([False, False, True], False, 3)
    """

    __slots__ = ("failures", "fall", "healthy", "rise", "successes")

    def __init__(self, rise: int, fall: int, healthy: bool = True) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be >= 1, got rise={rise} fall={fall}")
        self.rise = rise
        self.fall = fall
        self.healthy = healthy
        self.successes = 0  # consecutive
        self.failures = 0  # consecutive

    def record(self, ok: bool) -> bool:
        """Fold in one check result; return True when ``healthy`` flipped."""
        if ok:
            self.successes += 1
            self.failures = 0
            flip = not self.healthy and self.successes >= self.rise
        else:
            self.failures += 1
            self.successes = 0
            flip = self.healthy and self.failures >= self.fall
        if flip:
            self.healthy = not self.healthy
        return flip

    def copy(self) -> HealthState:
        """A detached snapshot."""
        c = HealthState(self.rise, self.fall, self.healthy)
        c.successes, c.failures = self.successes, self.failures
        return c

    def __repr__(self) -> str:
        return (
            f"<HealthState {'healthy' if self.healthy else 'unhealthy'} rise={self.rise} "
            f"fall={self.fall} successes={self.successes} failures={self.failures}>"
        )


def _status(value: object, what: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"expect: {what!r}: a status must be an integer in 100..599")
    return value


def parse_expect(value: int | str | list[int]) -> Expect:
    """Parse a config ``expect``: ``200``, ``"200-399"``, ``"2xx"`` or ``[200, 204]``.

    >>> parse_expect("2xx"), parse_expect("200-399"), sorted(parse_expect([204, 200]))
    ((200, 299), (200, 399), [200, 204])
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if _STATUS_CLASS.fullmatch(text):
            return int(text[0]) * 100, int(text[0]) * 100 + 99
        match = _STATUS_RANGE.fullmatch(text)
        if match is None:
            raise ValueError(
                f"expect: {value!r} is not a status, a range like '200-399' or a class like '2xx'"
            )
        if match[2] is None:
            return frozenset({_status(int(match[1]), value)})
        pair = _status(int(match[1]), value), _status(int(match[2]), value)
        if pair[0] > pair[1]:
            raise ValueError(f"expect: empty range {value!r}")
        return pair
    if isinstance(value, list):  # not a tuple: in an Expect a tuple means a range
        if not value:
            raise ValueError("expect: empty list of statuses")
        return frozenset(_status(v, value) for v in value)
    return frozenset({_status(value, value)})


def expect_matches(expect: Expect, status: int) -> bool:
    """Whether ``status`` is allowed by ``expect`` (a set, or an inclusive ``(lo, hi)`` range)."""
    if isinstance(expect, tuple):
        return expect[0] <= status <= expect[1]
    return status in expect


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """How to check one target.

    >>> CheckSpec("api", "[::1]:8080", "/healthz", 5.0, 1.0, (200, 399), rise=2, fall=3).host_header
    '[::1]:8080'
    """

    upstream: str
    address: str  # "host:port", "[v6]:port" for IPv6
    path: str
    interval: float
    timeout: float  # the whole probe: connect + response head
    expect: Expect
    rise: int
    fall: int
    jitter: float = 0.1  # each wait is interval * (1 + uniform(-jitter, +jitter))
    host: str | None = None  # Host header; default the target address

    def __post_init__(self) -> None:
        split_address(self.address)
        if not self.path.startswith("/") or _FORBIDDEN.search(self.path):
            raise ValueError(f"health check path must start with / and hold no spaces: {self.path!r}")
        if self.host is not None and (not self.host or _FORBIDDEN.search(self.host)):
            raise ValueError(f"bad health check host {self.host!r}")
        if not (self.interval > 0 and self.timeout > 0):
            raise ValueError("health check interval and timeout must be > 0")
        # jitter 1 could draw a zero wait, and a target would then be probed back to back
        if not 0 <= self.jitter < 1:
            raise ValueError(f"health check jitter must be in [0, 1), got {self.jitter}")
        HealthState(self.rise, self.fall)
        if not self.expect or (isinstance(self.expect, tuple) and self.expect[0] > self.expect[1]):
            raise ValueError(f"health check expect allows no status: {self.expect}")

    @property
    def host_header(self) -> str:
        return self.host if self.host is not None else self.address


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one probe, with the target's state after it."""

    upstream: str
    address: str
    ok: bool
    healthy: bool  # state after this result
    changed: bool  # healthy flipped with this result
    status: int  # 0 when no HTTP status was received
    latency: float  # seconds
    reason: str  # "" when ok
    at: float  # wall-clock time of the result


class _BadResponse(Exception):
    pass


async def _read_line(reader: asyncio.StreamReader, first: bool) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if first and not exc.partial:
            raise _BadResponse("connection closed before the status line") from None
        raise _BadResponse(f"connection closed mid response head: {exc.partial[:64]!r}") from None
    except asyncio.LimitOverrunError:
        raise _BadResponse(f"response head line longer than {_LINE_LIMIT} bytes") from None
    return line.removesuffix(b"\n").removesuffix(b"\r")


async def _read_status(reader: asyncio.StreamReader) -> int:
    while True:
        line = await _read_line(reader, first=True)
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise _BadResponse(f"bad status line {line[:64].decode('latin-1')!r}")
        status = int(match[1])
        if status >= 200:
            return status
        # An interim 1xx (e.g. 103 Early Hints) is not the answer: skip its headers, read on.
        while await _read_line(reader, first=False):
            pass


def _os_reason(exc: OSError) -> str:
    # The errno text, not str(exc): asyncio and uvloop word the same failure differently.
    if isinstance(exc, socket.gaierror) or not exc.errno:
        return exc.strerror or str(exc) or type(exc).__name__
    return os.strerror(exc.errno)


async def probe(spec: CheckSpec) -> tuple[int, str]:
    """Check ``spec``'s target once: ``(status, reason)``; ``reason == ""`` means the check passed.

    ``status`` is 0 when no status line was received. Example (nothing listens on port 9)::

        await probe(spec)  # -> (0, "connect failed: Connection refused")
    """
    host, port = split_address(spec.address)
    request = (
        f"GET {spec.path} HTTP/1.1\r\nHost: {spec.host_header}\r\nUser-Agent: pulsegate-health-check\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    deadline = asyncio.timeout(spec.timeout)
    writer: asyncio.StreamWriter | None = None
    try:
        async with deadline:
            reader, writer = await asyncio.open_connection(host, port, limit=_LINE_LIMIT)
            writer.write(request)
            status = await _read_status(reader)
    except _BadResponse as exc:
        return 0, str(exc)
    except OSError as exc:
        if isinstance(exc, TimeoutError) and deadline.expired():
            doing = "connecting" if writer is None else "waiting for the status line"
            return 0, f"timed out after {spec.timeout:g}s {doing}"
        return 0, f"{'connect failed' if writer is None else 'connection error'}: {_os_reason(exc)}"
    finally:
        if writer is not None:
            # Abortive close, as HAProxy does for checks: the rest of the answer is of no
            # interest and no TIME_WAIT is left behind per probe.
            writer.transport.abort()
            try:
                await writer.wait_closed()
            except Exception:  # the connection's own error, already judged above
                pass
    return status, "" if expect_matches(spec.expect, status) else f"status {status} not expected"


@dataclass(slots=True)
class _Target:
    spec: CheckSpec
    state: HealthState
    last: CheckResult | None = None
    task: asyncio.Task[None] | None = None


class HealthChecker:
    """Probes every configured target on its own task and reports each result to ``on_result``.

    Waits are measured from the end of one probe to the start of the next, so probes of one
    target never overlap, even when ``timeout`` exceeds ``interval``.

    Example::

        checker = HealthChecker(lambda r: r.changed and print(r.address, r.healthy))
        checker.configure([CheckSpec("api", "10.0.0.1:80", "/healthz", 5, 1, (200, 399), 2, 3)])
        checker.start()  # in a running loop
        ...
        await checker.stop()
    """

    def __init__(
        self,
        on_result: Callable[[CheckResult], None],
        *,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._on_result = on_result
        self._rng = rng if rng is not None else random.Random()
        self._wall = wall
        self._targets: dict[tuple[str, str], _Target] = {}
        self._retired: set[asyncio.Task[None]] = set()  # cancelled by configure(), not yet done
        self._started = False

    def configure(self, specs: Sequence[CheckSpec]) -> None:
        """Check exactly ``specs`` from now on.

        A kept ``(upstream, address)`` keeps its state, and its schedule unless the interval
        changed; removed targets stop, new ones start (once :meth:`start` was called).
        """
        wanted = {(s.upstream, s.address): s for s in specs}
        if len(wanted) != len(specs):
            raise ValueError("duplicate (upstream, address) in health check specs")
        for key in self._targets.keys() - wanted.keys():
            self._retire(self._targets.pop(key))
        for key, spec in wanted.items():
            target = self._targets.get(key)
            if target is None:
                target = self._targets[key] = _Target(spec, HealthState(spec.rise, spec.fall))
            else:
                old, target.spec = target.spec, spec
                target.state.rise, target.state.fall = spec.rise, spec.fall
                if old.interval != spec.interval:
                    self._retire(target)
            if self._started and target.task is None:
                self._spawn(key, target)

    def start(self) -> None:
        """Start probing; needs a running loop. Each target's first probe comes after a random
        delay in ``[0, interval * jitter]`` so that targets do not all fire together."""
        asyncio.get_running_loop()
        if self._started:
            raise RuntimeError("HealthChecker already started")
        self._started = True
        for key, target in self._targets.items():
            self._spawn(key, target)

    async def stop(self) -> None:
        """Cancel every check and wait for the tasks to end (sockets closed). States are kept."""
        self._started = False
        for target in self._targets.values():
            self._retire(target)
        tasks = list(self._retired)
        await asyncio.gather(*tasks, return_exceptions=True)

    def states(self) -> dict[tuple[str, str], tuple[HealthState, CheckResult | None]]:
        """A snapshot per ``(upstream, address)``: state and last result (None before the first)."""
        return {key: (t.state.copy(), t.last) for key, t in self._targets.items()}

    def _spawn(self, key: tuple[str, str], target: _Target) -> None:
        target.task = asyncio.get_running_loop().create_task(
            self._run(key, target), name=f"pulsegate-health {key[0]} {key[1]}"
        )
        target.task.add_done_callback(_log_crash)

    def _retire(self, target: _Target) -> None:
        if target.task is not None:
            target.task.cancel()
            self._retired.add(target.task)
            target.task.add_done_callback(self._retired.discard)
            target.task = None

    async def _run(self, key: tuple[str, str], target: _Target) -> None:
        spec = target.spec
        delay = self._rng.uniform(0.0, spec.interval * spec.jitter)
        while True:
            await asyncio.sleep(delay)
            spec = target.spec  # configure() may have swapped it (same interval) meanwhile
            started = time.monotonic()
            try:
                status, reason = await probe(spec)
            except Exception as exc:  # a bug in the probe must not end the checks of this target
                logger.exception("health check of %s %s failed", *key)
                status, reason = 0, f"probe error: {exc!r}"
            latency = time.monotonic() - started
            ok = not reason
            changed = target.state.record(ok)
            result = CheckResult(
                *key, ok, target.state.healthy, changed, status, latency, reason, self._wall()
            )
            target.last = result
            if changed:
                level = logging.INFO if result.healthy else logging.WARNING
                state = "healthy" if result.healthy else f"unhealthy ({reason})"
                logger.log(level, "upstream %s target %s is now %s", key[0], key[1], state)
            try:
                self._on_result(result)
            except Exception:
                logger.exception("health check result callback failed for %s %s", *key)
            spec = target.spec
            delay = spec.interval * (1.0 + self._rng.uniform(-spec.jitter, spec.jitter))


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("health check task %s died", task.get_name(), exc_info=task.exception())
