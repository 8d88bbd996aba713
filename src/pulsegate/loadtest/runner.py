"""Runs a plan on one generator process per core and merges what they measured.

Each process gets an equal share of the target rate (open model) or of the connections (closed
model), starts at the same wall-clock instant, records latencies per second into log-linear
histograms, and sends them back as sparse bucket counts; the parent adds them up, so merged
percentiles are exactly what one process would have computed over all requests. While the run
goes, processes report their counts every half second for the live progress line.

Example::

    job = Job(plan=sustained(1000, 10, 32), requests=[RequestSpec("http://127.0.0.1:8080/")])
    run = execute(job, processes=2)
    result = summarize(job, run)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection as Pipe

import msgspec
import uvloop

from pulsegate.loadtest.engine import Generator, SecondStats, Target
from pulsegate.loadtest.model import Latency, Plan, RequestSpec, Result, Second
from pulsegate.loadtest.scenario import parse_url
from pulsegate.metrics.histogram import bucket_mid, merge_into, percentiles, total_count

#: Seconds between the last process reporting ready and the first planned send.
START_MARGIN = 0.5
#: How long the processes may take to start (spawn, imports) before the run is called failed.
READY_TIMEOUT = 60.0
PROGRESS_EVERY = 0.5


class Job(msgspec.Struct, frozen=True):
    plan: Plan
    requests: list[RequestSpec]
    timeout: float = 30.0


class ChildSecond(msgspec.Struct, array_like=True):
    sent: int
    ok: int
    late: int
    errors: dict[str, int]
    hist: dict[int, int]


class ChildReport(msgspec.Struct):
    seconds: dict[int, ChildSecond]
    missed: int = 0
    final: bool = False
    #: The process is up (imported, its loop running) and waits for the shared start.
    ready: bool = False
    #: Failed requests so far, over the whole run (progress reports carry recent seconds only).
    errors: int = 0


class Run(msgspec.Struct):
    """The merged raw outcome of :func:`execute`."""

    seconds: dict[int, ChildSecond]
    missed: int
    processes: int
    elapsed: float
    interrupted: bool = False


def targets_for(requests: list[RequestSpec]) -> list[tuple[Target, float]]:
    """The prepared bytes of each request of the mix (all must go to one host and port)."""
    out: list[tuple[Target, float]] = []
    first: tuple[str, int] | None = None
    for r in requests:
        host, port, path, host_header = parse_url(r.url)
        if first is None:
            first = (host, port)
        elif (host, port) != first:
            raise ValueError(f"all requests of a run must go to one host and port: {r.url}")
        # A Host given with -H wins (to load a host-matched route through an address).
        host_header = next((v for k, v in r.headers if k.lower() == "host"), host_header)
        lines = [f"{r.method} {path} HTTP/1.1", f"Host: {host_header}", "User-Agent: pulsegate-load"]
        lines += [f"{k}: {v}" for k, v in r.headers if k.lower() not in ("host", "content-length")]
        if r.body or r.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(r.body)}")
        try:
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + r.body
        except UnicodeEncodeError:
            raise ValueError(f"request method, URL and headers must be Latin-1 text: {r.url}") from None
        out.append((Target(host, port, data, head_only=r.method == "HEAD"), r.weight))
    return out


def _snapshot(seconds: dict[int, SecondStats], since: int = 0) -> dict[int, ChildSecond]:
    return {
        s: ChildSecond(st.sent, st.ok, st.late, dict(st.errors), dict(st.hist))
        for s, st in seconds.items()
        if s >= since
    }


class Part(msgspec.Struct, frozen=True):
    """One process's part of a run: its share of the rate, its place among the processes (to
    stagger sends) and its connections. The wall-clock start shared by all comes once every
    process is ready (a process that took long to spawn must not start its plan late)."""

    share: float
    phase: float
    connections: int


async def _await_start(loop: asyncio.AbstractEventLoop, pipe: Pipe) -> float | None:
    """Report ready, then wait for the parent's shared start (wall clock); None: stop instead."""
    got: asyncio.Future[bytes] = loop.create_future()

    def on_readable() -> None:
        loop.remove_reader(pipe.fileno())
        try:
            got.set_result(pipe.recv_bytes())
        except (EOFError, OSError):
            got.set_result(b"stop")  # the parent went away

    loop.add_reader(pipe.fileno(), on_readable)
    pipe.send_bytes(msgspec.msgpack.encode(ChildReport({}, ready=True)))
    message = await got
    return None if message == b"stop" else msgspec.msgpack.decode(message, type=float)


async def _child_main(job: Job, part: Part, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    gen = Generator(targets_for(job.requests), connections=part.connections, timeout=job.timeout)
    start_wall = await _await_start(loop, pipe)
    if start_wall is None:
        pipe.send_bytes(msgspec.msgpack.encode(ChildReport({}, final=True)))
        return

    def on_parent() -> None:  # any message from the parent (or its exit) means "stop now"
        loop.remove_reader(pipe.fileno())
        gen.stop()

    loop.add_reader(pipe.fileno(), on_parent)
    start = time.monotonic() + (start_wall - time.time())

    # A second's figures can change until its last request ended (at most the timeout later):
    # progress reports carry only those seconds, so their size does not grow with the run.
    window = math.ceil(job.timeout) + 2

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            since = int(time.monotonic() - start) - window
            report = ChildReport(_snapshot(gen.seconds, since), gen.missed, errors=gen.errors_total)
            pipe.send_bytes(msgspec.msgpack.encode(report))

    reporter = loop.create_task(progress())
    try:
        if job.plan.kind == "closed":
            await gen.run_closed(job.plan.duration, start)
        else:
            await gen.run_open(job.plan, part.share, start, part.phase)
    finally:
        reporter.cancel()
    pipe.send_bytes(
        msgspec.msgpack.encode(
            ChildReport(_snapshot(gen.seconds), gen.missed, final=True, errors=gen.errors_total)
        )
    )


def _child(job_bytes: bytes, part_bytes: bytes, pipe: Pipe) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it tells us to stop
    job = msgspec.msgpack.decode(job_bytes, type=Job)
    part = msgspec.msgpack.decode(part_bytes, type=Part)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_child_main(job, part, pipe))
    pipe.close()


def merge(reports: list[ChildReport]) -> dict[int, ChildSecond]:
    """Add up per-second counts and histograms of several processes."""
    out: dict[int, ChildSecond] = {}
    for rep in reports:
        for s, cs in rep.seconds.items():
            dst = out.get(s)
            if dst is None:
                dst = out[s] = ChildSecond(0, 0, 0, {}, {})
            dst.sent += cs.sent
            dst.ok += cs.ok
            dst.late += cs.late
            for k, n in cs.errors.items():
                dst.errors[k] = dst.errors.get(k, 0) + n
            merge_into(dst.hist, cs.hist)
    return out


class GeneratorFailed(RuntimeError):
    """A generator process died or did not finish in time (reported as one line)."""


def _receive(pipe: Pipe, timeout: float) -> ChildReport | None:
    """The next report on ``pipe`` within ``timeout`` (None if none came); EOFError if it died."""
    if not pipe.poll(timeout):
        return None
    return msgspec.msgpack.decode(pipe.recv_bytes(), type=ChildReport)


def execute(
    job: Job,
    processes: int = 0,
    on_progress: Callable[[float, dict[int, ChildSecond], int], None] | None = None,
) -> Run:
    """Run ``job`` on ``processes`` generator processes (0: one per CPU) and merge the results.

    Ctrl-C (KeyboardInterrupt) stops the processes and returns what was measured so far; a
    second Ctrl-C stops waiting for them. Raises :class:`GeneratorFailed` if a process dies."""
    targets_for(job.requests)  # bad requests fail here, in one line, not in every child
    n = processes or len(os.sched_getaffinity(0))
    plan = job.plan
    n = max(1, min(n, plan.connections))  # each process needs a connection of its own
    conns = [plan.connections // n + (1 if i < plan.connections % n else 0) for i in range(n)]
    ctx = mp.get_context("spawn")
    # Until every process is ready; the shared start is set then (see _start_all).
    start_wall = time.time() + START_MARGIN
    job_bytes = msgspec.msgpack.encode(job)
    pipes: list[Pipe] = []
    procs = []
    # Children inherit an ignored SIGINT: a Ctrl-C typed while they import must not kill them
    # (the terminal sends it to the whole process group); the parent stops them itself.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for i in range(n):
            parent, child = ctx.Pipe()
            part = msgspec.msgpack.encode(Part(1.0 / n, i / n, conns[i]))
            p = ctx.Process(target=_child, args=(job_bytes, part, child), daemon=True)
            p.start()
            child.close()
            pipes.append(parent)
            procs.append(p)
    finally:
        signal.signal(signal.SIGINT, previous)
    # Each process's seconds as last reported (progress reports update the recent ones).
    latest: list[ChildReport] = [ChildReport({}) for _ in range(n)]
    done = [False] * n
    interrupted = False
    stopped_at: float | None = None
    deadline = time.time() + READY_TIMEOUT

    def collect(i: int, timeout: float) -> None:
        try:
            rep = _receive(pipes[i], timeout)
        except (EOFError, OSError):
            code = procs[i].exitcode
            raise GeneratorFailed(f"generator process {i + 1} exited (code {code})") from None
        if rep is not None:
            latest[i].seconds.update(rep.seconds)
            latest[i].missed = rep.missed
            latest[i].errors = rep.errors
            done[i] = rep.final

    try:
        try:
            start_wall = _start_all(pipes, procs, deadline)
            deadline = start_wall + plan.duration + job.timeout + 30.0
            while not all(done):
                if time.time() > deadline:
                    raise GeneratorFailed("generator processes did not finish in time")
                for i in range(n):
                    if not done[i]:
                        collect(i, 0.05)
                if on_progress is not None:
                    now_s = int(time.time() - start_wall)
                    keys = range(now_s - 2, now_s + 1)  # lookups: the run's length must not matter
                    recent = [ChildReport({s: r.seconds[s] for s in keys if s in r.seconds}) for r in latest]
                    errors = sum(r.errors for r in latest)
                    on_progress(time.time() - start_wall, merge(recent), errors)
        except KeyboardInterrupt:
            interrupted = True
            stopped_at = time.time()
            for i, pipe in enumerate(pipes):
                if not done[i]:
                    with contextlib.suppress(OSError):
                        pipe.send_bytes(b"stop")
            try:
                drain_until = time.time() + job.timeout + 10.0
                while not all(done) and time.time() < drain_until:
                    for i in range(n):
                        if not done[i]:
                            collect(i, 0.05)
            except KeyboardInterrupt:
                pass  # a second Ctrl-C: report what arrived so far
    finally:
        for p in procs:
            p.join(0.5 if interrupted else 5.0)
            if p.is_alive():
                p.kill()
                p.join(1.0)
        for pipe in pipes:
            pipe.close()
    elapsed = plan.duration if stopped_at is None else max(0.0, stopped_at - start_wall)
    return Run(merge(latest), sum(r.missed for r in latest), n, elapsed, interrupted)


def _start_all(pipes: list[Pipe], procs: Sequence[mp.process.BaseProcess], deadline: float) -> float:
    """Wait until every process reported ready, then send them one shared start (wall clock)."""
    waiting = set(range(len(pipes)))
    while waiting:
        if time.time() > deadline:
            raise GeneratorFailed("generator processes did not start in time")
        for i in list(waiting):
            try:
                rep = _receive(pipes[i], 0.05)
            except (EOFError, OSError):
                code = procs[i].exitcode
                raise GeneratorFailed(f"generator process {i + 1} exited (code {code})") from None
            if rep is not None and rep.ready:
                waiting.discard(i)
    start_wall = time.time() + START_MARGIN
    message = msgspec.msgpack.encode(start_wall)
    for pipe in pipes:
        pipe.send_bytes(message)
    return start_wall


def _ms(us: float) -> float:
    return round(us / 1000.0, 3)


def latency_of(hist: dict[int, int]) -> Latency:
    """The latency summary (ms) of a sparse microsecond histogram."""
    if not hist:
        return Latency()
    p50, p90, p99, p999, pmax = (_ms(q) for q in percentiles(hist, [50, 90, 99, 99.9, 100]))
    mean = sum(bucket_mid(i) * c for i, c in hist.items()) / total_count(hist)
    return Latency(p50=p50, p90=p90, p99=p99, p999=p999, max=pmax, mean=_ms(mean))


def summarize(job: Job, run: Run, *, t_offset: int = 0) -> Result:
    """The :class:`Result` of one executed run."""
    plan = job.plan
    hist: dict[int, int] = {}
    timeline: list[Second] = []
    errors: dict[str, int] = {}
    ok = requests = late = 0
    last = max([*run.seconds, math.ceil(plan.duration) - 1, 0])
    for s in range(last + 1):
        cs = run.seconds.get(s, ChildSecond(0, 0, 0, {}, {}))
        p50, p99, pmax = percentiles(cs.hist, [50, 99, 100]) if cs.hist else (0.0, 0.0, 0.0)
        n_err = sum(cs.errors.values())
        timeline.append(
            Second(
                t=s + t_offset,
                rate_target=round(plan.rate_at(s + 0.5), 3) if plan.kind != "closed" else 0.0,
                sent=cs.sent,
                ok=cs.ok,
                errors=n_err,
                late=cs.late,
                p50_ms=_ms(p50),
                p99_ms=_ms(p99),
                max_ms=_ms(pmax),
                hist=cs.hist,
            )
        )
        merge_into(hist, cs.hist)
        for k, v in cs.errors.items():
            errors[k] = errors.get(k, 0) + v
        ok += cs.ok
        requests += cs.ok + n_err
        late += cs.late
    duration = run.elapsed if run.elapsed > 0 else plan.duration
    return Result(
        scenario=plan.kind,
        url=job.requests[0].url,
        duration_s=round(duration, 3),
        requests=requests,
        ok=ok,
        errors=errors,
        rate_target=None if plan.kind == "closed" else round(plan.planned_requests() / plan.duration, 3),
        rate_achieved=round(requests / duration, 3) if duration else 0.0,
        latency_ms=latency_of(hist),
        timeline=timeline,
        processes=run.processes,
        connections=plan.connections,
        late_sends=late,
        missed_sends=run.missed,
        interrupted=run.interrupted,
        histogram=hist,
    )
