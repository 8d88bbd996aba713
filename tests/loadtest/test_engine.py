"""The load generator against real local servers: latency is measured right, the open model shows a
stall that a closed-model tool hides (coordinated omission), and spike recovery is detected."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from pulsegate.loadtest import analysis, scenario
from pulsegate.loadtest.model import RequestSpec
from pulsegate.loadtest.runner import Job, execute, summarize
from pulsegate.origin import Reply, Request
from tests.runtime.gateway_process import origin_thread


async def sleepy(req: Request) -> Reply:
    await asyncio.sleep(0.020)
    return Reply(200, body=b"ok")


@pytest.mark.timeout(30)
def test_a_20ms_upstream_gives_p50_near_20ms() -> None:
    with origin_thread(sleepy) as target:
        job = Job(plan=scenario.sustained(200, 3.0, 16), requests=[RequestSpec(f"http://{target}/")])
        result = summarize(job, execute(job, processes=2))
    assert result.errors == {}
    assert result.requests == pytest.approx(600, abs=12)  # the plan is kept: 200/s for 3 s
    assert 19.5 <= result.latency_ms.p50 <= 30.0, result.latency_ms  # 20 ms plus scheduling
    assert result.late_sends <= result.requests * 0.02 and result.missed_sends == 0
    assert result.rate_achieved == pytest.approx(200, rel=0.05)
    assert [s.sent for s in result.timeline] == pytest.approx([200, 200, 200], abs=6)


def stalling(stall_at: float, stall_for: float) -> tuple[float, object]:
    """A fast upstream that answers nothing for ``stall_for`` seconds, once, starting
    ``stall_at`` seconds after its first request."""
    first: list[float] = []

    async def handler(req: Request) -> Reply:
        now = time.monotonic()
        if not first:
            first.append(now)
        begin = first[0] + stall_at
        if begin <= now < begin + stall_for:
            await asyncio.sleep(begin + stall_for - now)
        return Reply(200, body=b"ok")

    return stall_at, handler


@pytest.mark.timeout(40)
def test_open_model_shows_a_stall_that_the_closed_model_hides() -> None:
    _, handler = stalling(1.5, 1.0)
    with origin_thread(handler) as target:  # type: ignore[arg-type]
        job = Job(plan=scenario.sustained(300, 4.0, 64), requests=[RequestSpec(f"http://{target}/")])
        open_result = summarize(job, execute(job, processes=1))
    # Every request planned during the stall waited for it: about a quarter of the run.
    assert open_result.latency_ms.p99 >= 500, open_result.latency_ms
    assert open_result.latency_ms.p90 >= 100

    _, handler = stalling(1.5, 1.0)
    with origin_thread(handler) as target:  # type: ignore[arg-type]
        job = Job(plan=scenario.closed(4, 4.0), requests=[RequestSpec(f"http://{target}/")])
        closed_result = summarize(job, execute(job, processes=1))
    # Four connections: four slow answers among thousands, invisible at p99.
    assert closed_result.requests > 1000
    assert closed_result.latency_ms.p99 < 100, closed_result.latency_ms
    assert closed_result.latency_ms.max >= 900


@pytest.mark.timeout(40)
def test_spike_recovery_is_detected() -> None:
    """A server that handles one request at a time (5 ms each, under 200/s): the baseline of
    50/s is easy; the spike of 400/s for 1 s queues a couple of hundred requests, which take
    about a second or two to drain after it."""
    lock = asyncio.Lock()

    async def serial(req: Request) -> Reply:
        async with lock:
            await asyncio.sleep(0.005)
        return Reply(200, body=b"ok")

    with origin_thread(serial) as target:
        plan = scenario.spike(50, 8, 1.0, 11.0, 64, spike_at=2.0)
        job = Job(plan=plan, requests=[RequestSpec(f"http://{target}/")])
        result = summarize(job, execute(job, processes=1))
    start, end = analysis.spike_window(plan)
    assert (start, end) == (2, 3)
    recovery = analysis.spike_recovery(result.timeline, start, end)
    p99s = [s.p99_ms for s in result.timeline]
    assert recovery is not None and recovery >= 1.0, p99s
    during = max(s.p99_ms for s in result.timeline if start <= s.t < end)
    before = max(s.p99_ms for s in result.timeline if 1 <= s.t < start)
    assert during > 10 * before


def _raw_server(answer: bytes, delay: float = 0.0) -> tuple[socket.socket, threading.Thread, str]:
    """A thread serving one canned answer per request on each connection, then closing when the
    answer says so (an HTTP/1.0-style server when it has no Content-Length)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            buf = b""
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    time.sleep(delay)
                    conn.sendall(answer)
                    if b"Content-Length" not in answer:
                        return  # the close ends the body

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    thread.stop = stop  # type: ignore[attr-defined]
    return listener, thread, f"127.0.0.1:{listener.getsockname()[1]}"


def _stop(listener: socket.socket, thread: threading.Thread) -> None:
    thread.stop.set()  # type: ignore[attr-defined]
    thread.join(5)
    listener.close()


@pytest.mark.timeout(30)
def test_http10_answers_ended_by_close_are_successes() -> None:
    listener, thread, target = _raw_server(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")
    try:
        job = Job(plan=scenario.sustained(50, 1.0, 4), requests=[RequestSpec(f"http://{target}/")])
        result = summarize(job, execute(job, processes=1))
    finally:
        _stop(listener, thread)
    assert result.errors == {} and result.ok == 50


@pytest.mark.timeout(30)
def test_requests_still_queued_at_the_end_are_reported_not_dropped() -> None:
    """One connection to a 200 ms server cannot carry 50/s: what is still waiting when the run
    ends is counted (as unsent, with its wait in the latency), so requests + missed = planned."""
    listener, thread, target = _raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", delay=0.2)
    try:
        job = Job(
            plan=scenario.sustained(50, 2.0, 1), requests=[RequestSpec(f"http://{target}/")], timeout=1.0
        )
        result = summarize(job, execute(job, processes=1))
    finally:
        _stop(listener, thread)
    assert result.requests + result.missed_sends == 100, result
    assert result.errors.get("unsent", 0) + result.errors.get("timeout", 0) > 50
    assert result.latency_ms.p99 >= 1000  # the waits are in the tail


@pytest.mark.timeout(30)
def test_low_rates_over_several_processes_keep_the_plan() -> None:
    with origin_thread(sleepy) as target:
        job = Job(plan=scenario.sustained(2, 3.0, 4), requests=[RequestSpec(f"http://{target}/")])
        result = summarize(job, execute(job, processes=2))
    assert result.requests == 6 and result.duration_s == 3.0
    assert result.rate_achieved == pytest.approx(2.0)


@pytest.mark.timeout(30)
def test_head_requests_in_the_closed_model_are_timed_per_answer() -> None:
    listener, thread, target = _raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", delay=0.01)
    try:
        job = Job(plan=scenario.closed(1, 1.0), requests=[RequestSpec(f"http://{target}/", method="HEAD")])
        result = summarize(job, execute(job, processes=1))
    finally:
        _stop(listener, thread)
    # One connection to a 10 ms server: at most about 100 answers, none faster than the server.
    assert 20 <= result.requests <= 105, result.requests
    assert result.latency_ms.p50 >= 9.5
