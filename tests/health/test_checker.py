"""Active health checks: the rise/fall state machine, the probe against real loopback servers
(healthy, failing, silent, garbage, refused) and the checker's scheduling, reconfiguration and
shutdown. Tests wait on results delivered to ``on_result``, never on sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

from pulsegate.health.checker import (
    CheckResult,
    CheckSpec,
    HealthChecker,
    HealthState,
    expect_matches,
    parse_expect,
    probe,
)
from tests.support import arun

T = TypeVar("T")

# --- HealthState -------------------------------------------------------------------------------


def _reference(start: bool, rise: int, fall: int, history: Sequence[bool]) -> bool:
    """Healthiness from the history alone: the latest run of equal results decides once it is
    long enough (rise for successes, fall for failures); shorter runs leave the state alone."""
    healthy = start
    for i in range(1, len(history) + 1):
        last = history[i - 1]
        run = 0
        while run < i and history[i - 1 - run] == last:
            run += 1
        if last and run >= rise:
            healthy = True
        elif not last and run >= fall:
            healthy = False
    return healthy


def test_health_state_matches_reference_on_every_short_history() -> None:
    for start, rise, fall in itertools.product((True, False), range(1, 5), range(1, 5)):
        for n in range(9):
            for history in itertools.product((True, False), repeat=n):
                s = HealthState(rise, fall, healthy=start)
                before = start
                for i, ok in enumerate(history, 1):
                    changed = s.record(ok)
                    expected = _reference(start, rise, fall, history[:i])
                    assert s.healthy == expected, (start, rise, fall, history[:i])
                    assert changed == (expected != before)
                    before = expected
                    run = next((k for k in range(i) if history[i - 1 - k] != ok), i)
                    assert (s.successes, s.failures) == ((run, 0) if ok else (0, run))


def test_health_state_flips_after_fall_failures_and_back_after_rise_successes() -> None:
    s = HealthState(rise=2, fall=3)
    assert (s.healthy, s.successes, s.failures) == (True, 0, 0)
    assert [s.record(False) for _ in range(3)] == [False, False, True]
    assert not s.healthy
    assert [s.record(False) for _ in range(2)] == [False, False]  # stays down, counts on
    assert s.failures == 5
    assert [s.record(True), s.record(False)] == [False, False]  # one success is not enough
    assert [s.record(True), s.record(True)] == [False, True]
    assert s.healthy and s.successes == 2 and s.failures == 0
    assert not HealthState(1, 1, healthy=False).healthy


@pytest.mark.parametrize(("rise", "fall"), [(0, 1), (1, 0), (-1, 3)])
def test_health_state_rejects_thresholds_below_one(rise: int, fall: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        HealthState(rise, fall)


# --- parse_expect / CheckSpec ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (200, frozenset({200})),
        ("204", frozenset({204})),
        ("200-399", (200, 399)),
        (" 200 - 204 ", (200, 204)),
        ("2xx", (200, 299)),
        ("5XX", (500, 599)),
        ([200, 204], frozenset({200, 204})),
        ("100-599", (100, 599)),
    ],
)
def test_parse_expect_accepts(value: Any, parsed: object) -> None:
    assert parse_expect(value) == parsed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (99, "100..599"),
        (600, "100..599"),
        (True, "100..599"),
        (200.0, "100..599"),
        ("6xx", "not a status"),
        ("2x", "not a status"),
        ("abc", "not a status"),
        ("200-", "not a status"),
        ("-200", "not a status"),
        ("200,204", "not a status"),
        ("399-200", "empty range"),
        ("200-600", "100..599"),
        ([], "empty list"),
        ([200, "204"], "100..599"),
        ((200, 299), "100..599"),
    ],
)
def test_parse_expect_rejects(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_expect(value)


def test_expect_matches_sets_and_inclusive_ranges() -> None:
    assert [s for s in (199, 200, 204, 299, 300) if expect_matches((200, 299), s)] == [200, 204, 299]
    assert [s for s in (200, 204, 500) if expect_matches(frozenset({204, 500}), s)] == [204, 500]


def spec(port: int, **kw: Any) -> CheckSpec:
    args: dict[str, Any] = {
        "upstream": "up",
        "address": f"127.0.0.1:{port}",
        "path": "/healthz",
        "interval": 0.02,
        "timeout": 2.0,
        "expect": (200, 399),
        "rise": 1,
        "fall": 1,
        "jitter": 0.0,
    }
    args.update(kw)
    return CheckSpec(**args)


@pytest.mark.parametrize(
    "bad",
    [
        {"address": "nohost"},
        {"address": "127.0.0.1:0"},
        {"path": "healthz"},
        {"path": "/a b"},
        {"path": "/a\r\nX-Evil: 1"},
        {"path": "/é"},
        {"host": ""},
        {"host": "a\r\nb"},
        {"interval": 0.0},
        {"timeout": -1.0},
        {"interval": float("nan")},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"rise": 0},
        {"fall": 0},
        {"expect": (300, 200)},
        {"expect": frozenset()},
    ],
)
def test_check_spec_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        spec(80, **bad)


# --- loopback servers --------------------------------------------------------------------------

Answer = Callable[["Origin", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Origin:
    """A tiny server on 127.0.0.1 whose connections are answered by ``answer``; it knows when all
    its connections are gone, so tests can check that the prober closed each one."""

    def __init__(self, answer: Answer, statuses: Sequence[int] = (), default: int = 200) -> None:
        self.answer = answer
        self.script = list(statuses)
        self.default = default
        self.requests: list[bytes] = []
        self.open = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.port = 0

    def next_status(self) -> int:
        return self.script.pop(0) if self.script else self.default

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.idle.clear()
        try:
            await self.answer(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.open -= 1
            if not self.open:
                self.idle.set()


async def answer_status(o: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    o.requests.append(await reader.readuntil(b"\r\n\r\n"))
    status = o.next_status()
    writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
    await writer.drain()


async def answer_never(o: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    o.requests.append(await reader.readuntil(b"\r\n\r\n"))
    await reader.read()  # until the prober gives up and closes


def answer_bytes(data: bytes) -> Answer:
    async def answer(o: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        o.requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(data)
        await writer.drain()

    return answer


@contextlib.asynccontextmanager
async def serving(*origins: Origin, host: str = "127.0.0.1") -> AsyncIterator[None]:
    servers = []
    for o in origins:
        server = await asyncio.start_server(o.handle, host, 0)
        o.port = server.sockets[0].getsockname()[1]
        servers.append(server)
    try:
        yield
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_asyncio(coro: Awaitable[T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(bounded())


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Run a coroutine on the production loop (uvloop) and on plain asyncio."""
    return arun if request.param == "uvloop" else _run_asyncio


class Results:
    """An ``on_result`` that records results and lets a test wait for a condition on them."""

    def __init__(self, then: Callable[[CheckResult], None] | None = None) -> None:
        self.items: list[CheckResult] = []
        self.times: list[float] = []
        self.then = then
        self.arrived = asyncio.Event()

    def __call__(self, result: CheckResult) -> None:
        self.items.append(result)
        self.times.append(time.monotonic())
        self.arrived.set()
        if self.then is not None:
            self.then(result)

    def of(self, port: int) -> list[CheckResult]:
        return [r for r in self.items if r.address == f"127.0.0.1:{port}"]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()


def checker_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("pulsegate-health")]


# --- probe ---------------------------------------------------------------------------------------


def test_probe_sends_a_minimal_get_and_reads_the_status(run: Callable[..., Any]) -> None:
    async def main() -> None:
        o = Origin(answer_status)
        async with serving(o):
            assert await probe(spec(o.port)) == (200, "")
            assert await probe(spec(o.port, path="/ready?full=1", host="api.internal")) == (200, "")
        assert o.requests == [
            f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{o.port}\r\nUser-Agent: pulsegate-health-check\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode(),
            b"GET /ready?full=1 HTTP/1.1\r\nHost: api.internal\r\nUser-Agent: pulsegate-health-check\r\n"
            b"Accept: */*\r\nConnection: close\r\n\r\n",
        ]

    run(main())


FAILURES: list[tuple[str, Answer | None, dict[str, Any], tuple[int, str]]] = [
    ("unexpected status", answer_status, {"expect": frozenset({200})}, (500, "status 500 not expected")),
    ("timeout", answer_never, {"timeout": 0.1}, (0, "timed out after 0.1s waiting for the status line")),
    ("garbage", answer_bytes(b"SSH-2.0-OpenSSH_9.6\r\n"), {}, (0, "bad status line 'SSH-2.0-OpenSSH_9.6'")),
    ("binary", answer_bytes(b"\x16\x03\x01\x00\r\n"), {}, (0, "bad status line '\\x16\\x03\\x01\\x00'")),
    ("http/2", answer_bytes(b"HTTP/2 200\r\n\r\n"), {}, (0, "bad status line 'HTTP/2 200'")),
    ("status 600", answer_bytes(b"HTTP/1.1 600 X\r\n\r\n"), {}, (0, "bad status line 'HTTP/1.1 600 X'")),
    ("closed", answer_bytes(b""), {}, (0, "connection closed before the status line")),
    (
        "truncated",
        answer_bytes(b"HTTP/1.1 20"),
        {},
        (0, "connection closed mid response head: b'HTTP/1.1 20'"),
    ),
    ("endless line", answer_bytes(b"H" * 20000), {}, (0, "response head line longer than 8192 bytes")),
    ("refused", None, {}, (0, "connect failed: Connection refused")),
]


@pytest.mark.parametrize(
    ("answer", "kw", "expected"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_probe_failure_reasons(
    run: Callable[..., Any], answer: Answer | None, kw: dict[str, Any], expected: tuple[int, str]
) -> None:
    async def main() -> tuple[int, str]:
        if answer is None:
            return await probe(spec(closed_port(), **kw))
        o = Origin(answer, default=500)
        async with serving(o):
            return await probe(spec(o.port, **kw))

    assert run(main()) == expected


@pytest.mark.parametrize(
    ("status", "expect", "ok"),
    [
        (500, (500, 599), True),
        (500, (200, 499), False),
        (399, parse_expect("200-399"), True),
        (400, parse_expect("200-399"), False),
        (204, parse_expect("2xx"), True),
        (204, parse_expect([200]), False),
        (404, parse_expect([200, 404]), True),
    ],
)
def test_probe_expect_ranges(status: int, expect: Any, ok: bool) -> None:
    async def main() -> tuple[int, str]:
        o = Origin(answer_status, default=status)
        async with serving(o):
            return await probe(spec(o.port, expect=expect))

    assert arun(main()) == (status, "" if ok else f"status {status} not expected")


def test_probe_skips_interim_responses() -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"

    async def main() -> tuple[int, str]:
        o = Origin(answer_bytes(hints))
        async with serving(o):
            return await probe(spec(o.port))

    assert arun(main()) == (204, "")


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_probe_ipv6_target_and_default_host_header() -> None:
    async def main() -> None:
        o = Origin(answer_status)
        async with serving(o, host="::1"):
            assert await probe(spec(o.port, address=f"[::1]:{o.port}")) == (200, "")
        assert f"\r\nHost: [::1]:{o.port}\r\n".encode() in o.requests[0]

    arun(main())


# --- HealthChecker -------------------------------------------------------------------------------


def test_target_goes_down_after_fall_failures_and_up_after_rise_successes() -> None:
    clock = itertools.count(1000)

    async def main() -> list[CheckResult]:
        o = Origin(answer_status, statuses=[200, 200, 500, 500, 500, 200, 200, 200])
        results = Results()
        checker = HealthChecker(results, wall=lambda: float(next(clock)))
        async with serving(o):
            checker.configure([spec(o.port, rise=2, fall=3, interval=0.01)])
            checker.start()
            await results.until(lambda: len(results.items) >= 8)
            await checker.stop()
        return results.items[:8]

    items = arun(main())
    assert [(r.status, r.ok, r.healthy, r.changed) for r in items] == [
        (200, True, True, False),
        (200, True, True, False),
        (500, False, True, False),
        (500, False, True, False),
        (500, False, False, True),  # the third failure in a row
        (200, True, False, False),
        (200, True, True, True),  # the second success in a row
        (200, True, True, False),
    ]
    assert [r.reason for r in items].count("status 500 not expected") == 3
    assert {r.reason for r in items if r.ok} == {""}
    assert [r.at for r in items] == [float(t) for t in range(1000, 1008)]
    assert all(r.latency > 0 and r.upstream == "up" for r in items)


def test_checker_reports_timeout_refused_and_garbage() -> None:
    async def main() -> tuple[CheckResult, CheckResult, CheckResult]:
        silent, garbage = Origin(answer_never), Origin(answer_bytes(b"<html>nope</html>\r\n"))
        refused = closed_port()
        results = Results()
        checker = HealthChecker(results)
        async with serving(silent, garbage):
            checker.configure([spec(silent.port, timeout=0.05), spec(garbage.port), spec(refused)])
            checker.start()
            ports = (silent.port, garbage.port, refused)
            await results.until(lambda: all(results.of(p) for p in ports))
            await checker.stop()
        first = [results.of(p)[0] for p in ports]
        return first[0], first[1], first[2]

    timed_out, garbage, refused = arun(main())
    assert (timed_out.ok, timed_out.status, timed_out.reason) == (
        False,
        0,
        "timed out after 0.05s waiting for the status line",
    )
    assert timed_out.latency >= 0.045
    assert (timed_out.healthy, timed_out.changed) == (False, True)
    assert (garbage.status, garbage.reason) == (0, "bad status line '<html>nope</html>'")
    assert (refused.status, refused.reason) == (0, "connect failed: Connection refused")


def _socket_count() -> int:
    """Open sockets of this process (the loops open other files lazily, e.g. uvloop /dev/null)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own fd, gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_no_file_descriptor_leaks_across_many_probes_and_stop(run: Callable[..., Any]) -> None:
    async def main() -> tuple[int, int, int]:
        before = _socket_count()
        ok, bad, silent, garbage = (
            Origin(answer_status),
            Origin(answer_status, default=500),
            Origin(answer_never),
            Origin(answer_bytes(b"garbage\r\n")),
        )
        hung = Origin(answer_never)  # still waiting for its answer when the checker stops
        refused = closed_port()
        results = Results()
        checker = HealthChecker(results)
        async with serving(ok, bad, silent, garbage, hung):
            specs = [spec(o.port, interval=0.005) for o in (ok, bad, garbage)]
            specs += [spec(silent.port, interval=0.005, timeout=0.02), spec(refused, interval=0.005)]
            specs.append(spec(hung.port, timeout=60.0))
            checker.configure(specs)
            checker.start()
            ports = (ok.port, bad.port, garbage.port, silent.port, refused)
            await results.until(lambda: all(len(results.of(p)) >= 10 for p in ports) and hung.open == 1)
            during = _socket_count()
            await checker.stop()
            for o in (ok, bad, silent, garbage, hung):
                async with asyncio.timeout(5):
                    await o.idle.wait()  # each server saw its connection closed by the prober
        return before, during, _socket_count()

    before, during, after = run(main())
    assert after == before
    # 5 listeners + at most 2 ends of one connection per target; 60+ probes ran, so a leak shows
    assert during <= before + 5 + 2 * 6


def test_configure_keeps_state_of_kept_targets_and_stops_removed_ones() -> None:
    async def main() -> None:
        ok, bad = Origin(answer_status), Origin(answer_status, default=500)
        results = Results()
        checker = HealthChecker(results)
        async with serving(ok, bad):
            a, b = spec(ok.port, fall=2), spec(bad.port)
            key_a, key_b = ("up", a.address), ("up", b.address)
            checker.configure([a, b])
            checker.start()
            await results.until(lambda: len(results.of(ok.port)) >= 2 and len(results.of(bad.port)) >= 1)
            task_a, task_b = checker._targets[key_a].task, checker._targets[key_b].task
            successes = checker.states()[key_a][0].successes
            assert not checker.states()[key_b][0].healthy

            c = spec(ok.port, upstream="other", path="/c")
            checker.configure([spec(ok.port, fall=2, rise=3, path="/v2"), c])
            states = checker.states()
            assert set(states) == {key_a, ("other", c.address)}
            assert states[key_a][0].successes == successes  # state kept...
            assert states[key_a][0].rise == 3  # ...with the new thresholds
            assert states[key_a][1] is not None
            assert states[("other", c.address)][1] is None
            assert checker._targets[key_a].task is task_a  # same interval: same schedule
            assert task_b is not None
            await asyncio.wait([task_b], timeout=1)
            assert task_b.cancelled()
            b_results = len(results.of(bad.port))

            n = len(results.items)
            await results.until(
                lambda: (
                    sum(r.upstream == "up" for r in results.items[n:]) >= 2
                    and any(r.upstream == "other" for r in results.items[n:])
                )
            )
            assert len(results.of(bad.port)) == b_results  # removed: no more probes
            assert checker.states()[key_a][0].successes >= successes + 2  # counting on, not reset
            assert b"GET /v2 " in b"".join(ok.requests) and b"GET /c " in b"".join(ok.requests)
            await checker.stop()

    arun(main())


def test_configure_during_the_wait_applies_to_the_next_probe() -> None:
    async def main() -> list[bytes]:
        o = Origin(answer_status)
        results = Results()
        checker = HealthChecker(results)
        async with serving(o):
            checker.configure([spec(o.port, interval=0.2)])
            checker.start()
            await results.until(lambda: len(results.items) >= 1)
            # The target now waits 0.2 s before its next probe, which must use the new spec.
            checker.configure([spec(o.port, interval=0.2, path="/v2", expect=frozenset({204}))])
            await results.until(lambda: len(results.items) >= 2)
            await checker.stop()
        assert results.items[1].reason == "status 200 not expected"
        return [r.split(b" ")[1] for r in o.requests]

    assert arun(main()) == [b"/healthz", b"/v2"]


def test_configure_with_a_new_interval_reschedules_but_keeps_state() -> None:
    async def main() -> None:
        o = Origin(answer_status)
        results = Results()
        checker = HealthChecker(results)
        async with serving(o):
            checker.configure([spec(o.port, interval=60.0, rise=2, fall=3)])
            checker.start()
            await results.until(lambda: len(results.items) >= 1)
            # The old schedule would wait a minute; the new one probes again at once.
            checker.configure([spec(o.port, interval=0.01, rise=2, fall=3)])
            await results.until(lambda: len(results.items) >= 3, timeout=5.0)
            assert [r.ok for r in results.items[:3]] == [True] * 3
            assert checker.states()[("up", f"127.0.0.1:{o.port}")][0].successes >= 3
            await checker.stop()
            assert not checker_tasks()

    arun(main())


def test_configure_before_start_and_start_rules() -> None:
    checker = HealthChecker(lambda r: None)
    with pytest.raises(RuntimeError):
        checker.start()  # no running loop
    with pytest.raises(ValueError, match="duplicate"):
        checker.configure([spec(1), spec(1, path="/other")])

    async def main() -> None:
        o = Origin(answer_status)
        results = Results()
        checker = HealthChecker(results)
        async with serving(o):
            checker.configure([spec(o.port)])
            assert not checker_tasks()
            ((state, last),) = checker.states().values()
            assert (state.healthy, last) == (True, None)
            checker.start()
            with pytest.raises(RuntimeError, match="already started"):
                checker.start()
            await results.until(lambda: len(results.items) >= 1)
            await checker.stop()
            assert not checker_tasks()
            assert checker.states()[("up", f"127.0.0.1:{o.port}")][1] == results.items[-1]
            n = len(results.items)
            checker.start()  # restartable after stop()
            await results.until(lambda: len(results.items) > n)
            await checker.stop()

    arun(main())


def test_stop_cancels_everything_including_probes_in_flight() -> None:
    async def main() -> None:
        ok, hung = Origin(answer_status), Origin(answer_never)
        results = Results()
        checker = HealthChecker(results)
        async with serving(ok, hung):
            checker.configure([spec(ok.port), spec(hung.port, timeout=60.0), spec(ok.port, upstream="b")])
            checker.start()
            assert len(checker_tasks()) == 3
            await results.until(lambda: len(results.items) >= 4 and hung.open == 1)
            async with asyncio.timeout(2):  # not the hung probe's 60 s
                await checker.stop()
            assert not checker_tasks()
            n = len(results.items)
            async with asyncio.timeout(5):
                await hung.idle.wait()
            assert len(results.items) == n

    arun(main())


def test_target_removed_from_its_own_result_callback() -> None:
    async def main() -> None:
        o = Origin(answer_status)
        checker: HealthChecker
        results = Results(then=lambda r: checker.configure([]))
        checker = HealthChecker(results)
        async with serving(o):
            checker.configure([spec(o.port)])
            checker.start()
            await results.until(lambda: len(results.items) >= 1)
            await checker.stop()
            assert len(results.items) == 1 and not checker.states()

    arun(main())


def test_a_failing_callback_does_not_stop_the_checks(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def explode(result: CheckResult) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("boom")

    async def main() -> None:
        o = Origin(answer_status)
        results = Results(then=explode)
        checker = HealthChecker(results)
        async with serving(o):
            checker.configure([spec(o.port)])
            checker.start()
            await results.until(lambda: len(results.items) >= 4)
            await checker.stop()

    with caplog.at_level(logging.ERROR, logger="pulsegate.health"):
        arun(main())
    failures = [r for r in caplog.records if "callback failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info is not None and "boom" in str(r.exc_info[1]) for r in failures)


class RecordingRandom(random.Random):
    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.calls: list[tuple[float, float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        value = super().uniform(a, b)
        self.calls.append((a, b, value))
        return value


def test_jitter_comes_from_the_injected_rng_and_stays_in_bounds() -> None:
    interval, jitter = 0.03, 0.5

    async def main() -> tuple[RecordingRandom, Results]:
        o = Origin(answer_status)
        rng = RecordingRandom(7)
        results = Results()
        checker = HealthChecker(results, rng=rng)
        async with serving(o):
            checker.configure([spec(o.port, interval=interval, jitter=jitter)])
            checker.start()
            await results.until(lambda: len(results.items) >= 6)
            await checker.stop()
        return rng, results

    rng, results = arun(main())
    first, *waits = rng.calls
    assert first[:2] == (0.0, interval * jitter) and 0.0 <= first[2] <= interval * jitter
    assert len(waits) >= 5
    assert all(a == -jitter and b == jitter and -jitter <= v <= jitter for a, b, v in waits)
    for i, (_, _, v) in enumerate(waits[:5]):
        gap = results.times[i + 1] - results.times[i]
        # never sooner than the drawn wait (2 ms for loop timer granularity); upper bound is slack
        assert interval * (1 + v) - 0.002 <= gap < interval * (1 + v) + 1.0


def test_first_probes_of_many_targets_are_spread_over_the_jitter_window() -> None:
    async def main() -> RecordingRandom:
        rng = RecordingRandom(3)
        checker = HealthChecker(lambda r: None, rng=rng)
        checker.configure([spec(p, interval=100.0, jitter=0.2) for p in range(1000, 1010)])
        checker.start()
        await asyncio.sleep(0)  # let each task draw its first delay
        await checker.stop()
        return rng

    rng = arun(main())
    assert len(rng.calls) == 10
    assert all((a, b) == (0.0, 20.0) and 0.0 <= v <= 20.0 for a, b, v in rng.calls)
    assert len({v for _, _, v in rng.calls}) == 10
