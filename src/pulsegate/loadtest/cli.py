"""``pulsegate load``: the command line of the load tester.

    pulsegate load closed    URL --connections 64 --duration 10s
    pulsegate load sustained URL --rate 2000 --duration 30s
    pulsegate load spike     URL --rate 500 --factor 5 --spike-duration 10s --duration 60s
    pulsegate load stress    URL --start 500 --step 500 --step-duration 10s --slo "p99<10ms"
    pulsegate load run       scenario.yaml

Exit status: 0 done (objectives met), 1 an ``--slo`` objective was missed, 2 bad input (a one-line
error on stderr), 130 interrupted by Ctrl-C (the partial report is still printed and written).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from pulsegate.config.model import _check_header_name, _check_header_value, _check_method
from pulsegate.config.units import parse_duration
from pulsegate.loadtest import analysis, live, report, scenario
from pulsegate.loadtest.model import Plan, RequestSpec, Result, Stage, StressStep
from pulsegate.loadtest.runner import GeneratorFailed, Job, execute, summarize, targets_for
from pulsegate.loadtest.slo import Objective, evaluate, parse_slo

#: Stress stops stepping up once more than this share of a step's requests failed (with no
#: ``errors`` objective of its own).
DEFAULT_ERROR_THRESHOLD = 0.01


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = sub.add_parser("load", help="generate HTTP load and report latency (open or closed model)")
    kinds = load.add_subparsers(dest="scenario", required=True)

    def common(p: argparse.ArgumentParser, url: bool = True) -> None:
        if url:
            p.add_argument("url", help="http://host[:port]/path (loopback only unless --allow-remote)")
        p.add_argument("--method", default="GET")
        p.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'")
        body = p.add_mutually_exclusive_group()
        body.add_argument("--body", help="request body text")
        body.add_argument("--body-file", type=Path, help="request body from a file")
        p.add_argument(
            "--mix", type=Path, help="a weighted request mix (YAML list), instead of URL's one request"
        )
        p.add_argument("--connections", type=int, default=64)
        p.add_argument("--processes", type=int, default=0, help="generator processes (default: one per CPU)")
        p.add_argument("--timeout", default="30s", help="per-request timeout")
        p.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report")
        p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
        p.add_argument("--slo", help='objectives, e.g. "p99<10ms,errors<0.1%%"; exit 1 when missed')
        p.add_argument("--allow-remote", action="store_true", help="allow targets beyond loopback")
        p.add_argument("--quiet", action="store_true", help="no live progress")

    closed = kinds.add_parser("closed", help="N connections as fast as possible (throughput ceiling)")
    common(closed)
    closed.add_argument("--duration", default="10s")
    sustained = kinds.add_parser("sustained", help="constant arrival rate")
    common(sustained)
    sustained.add_argument("--rate", type=float, required=True, help="requests per second")
    sustained.add_argument("--duration", default="30s")
    spike = kinds.add_parser("spike", help="baseline rate, a burst of rate x factor, baseline again")
    common(spike)
    spike.add_argument("--rate", type=float, required=True)
    spike.add_argument("--factor", type=float, default=5.0)
    spike.add_argument("--spike-duration", default="10s")
    spike.add_argument("--duration", default="60s")
    stress = kinds.add_parser("stress", help="step the rate up until the SLO or the error threshold breaks")
    common(stress)
    stress.add_argument("--start", type=float, required=True)
    stress.add_argument("--step", type=float, required=True)
    stress.add_argument("--step-duration", default="10s")
    stress.add_argument("--max-rate", type=float)
    stress.add_argument("--max-steps", type=int, default=20)
    stress.add_argument("--error-threshold", default="1%", help="error share that breaks a step")
    run = kinds.add_parser("run", help="a YAML scenario file (stages, request mix, SLO)")
    run.add_argument("file", type=Path)
    common(run, url=False)


def _duration(text: str, what: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--{what}: {exc}") from None
    if value <= 0:
        raise UsageError(f"--{what}: must be positive")
    return value


def check_target(url: str, allow_remote: bool) -> None:
    """Refuse non-loopback targets unless ``--allow-remote``: a load test is not a weapon."""
    try:
        host, port, _, _ = scenario.parse_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if allow_remote:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UsageError(f"cannot resolve '{host}': {exc.strerror or exc}") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_loopback:
            raise UsageError(f"'{host}' is not a loopback address ({addr}); pass --allow-remote to load it")


def _requests(args: argparse.Namespace, url: str | None) -> list[RequestSpec]:
    if args.mix is not None:
        try:
            return scenario.load_mix(str(args.mix))
        except (OSError, ValueError, scenario.ScenarioError) as exc:
            raise UsageError(str(exc)) from None
    assert url is not None
    headers: list[tuple[str, str]] = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"-H: expected 'Name: value', got '{h}'")
        try:
            headers.append((_check_header_name(name.strip()), _check_header_value(value.strip())))
        except ValueError as exc:
            raise UsageError(f"-H: {exc}") from None
    body = b""
    if args.body is not None:
        body = args.body.encode()
    elif args.body_file is not None:
        try:
            body = args.body_file.read_bytes()
        except OSError as exc:
            raise UsageError(f"--body-file: {exc.strerror or exc}: {args.body_file}") from None
    try:
        method = _check_method(args.method)
    except ValueError as exc:
        raise UsageError(f"--method: {exc}") from None
    return [RequestSpec(url=url, method=method, headers=headers, body=body)]


def _plan(args: argparse.Namespace) -> tuple[Plan, list[RequestSpec], str | None]:
    kind = args.scenario
    if kind == "run":
        try:
            sf = scenario.load_scenario(str(args.file))
        except (OSError, ValueError, scenario.ScenarioError) as exc:
            raise UsageError(str(exc)) from None
        return sf.plan, sf.requests, args.slo or sf.slo
    requests = _requests(args, args.url)
    if kind == "closed":
        return scenario.closed(args.connections, _duration(args.duration, "duration")), requests, args.slo
    if kind == "sustained":
        plan = scenario.sustained(args.rate, _duration(args.duration, "duration"), args.connections)
        return plan, requests, args.slo
    if kind == "spike":
        plan = scenario.spike(
            args.rate,
            args.factor,
            _duration(args.spike_duration, "spike-duration"),
            _duration(args.duration, "duration"),
            args.connections,
        )
        return plan, requests, args.slo
    raise AssertionError(kind)


def main(args: argparse.Namespace) -> int:
    """Run ``pulsegate load ...``; returns the exit status."""
    try:
        if args.connections < 1:
            raise UsageError("--connections: must be at least 1")
        objectives: list[Objective] = parse_slo(args.slo) if args.slo else []
        threshold: list[Objective] = []
        if args.scenario == "stress":
            requests = _requests(args, args.url)
            plan = None
            threshold = parse_slo(f"errors<{args.error_threshold}")
            step_s = _duration(args.step_duration, "step-duration")
            stages = scenario.stress_steps(args.start, args.step, step_s, args.max_rate, args.max_steps)
        else:
            plan, requests, slo_text = _plan(args)
            if slo_text and not objectives:
                objectives = parse_slo(slo_text)
        for r in requests:
            check_target(r.url, args.allow_remote)
        targets_for(requests)  # one host and port, encodable headers
        timeout = _duration(args.timeout, "timeout")
        if args.processes < 0:
            raise UsageError("--processes: must be 0 (one per CPU) or more")
        for flag, path in (("--json", args.json), ("--html", args.html)):
            if path is not None and not path.parent.is_dir():
                raise UsageError(f"{flag}: no such directory: {path.parent}")
    except (UsageError, ValueError) as exc:
        print(f"pulsegate load: {exc}", file=sys.stderr)
        return 2
    total = plan.duration if plan is not None else None
    progress = None if args.quiet else live.Progress(total)
    try:
        if args.scenario == "stress":
            result = _stress(
                args, requests, stages, objectives + threshold, timeout=timeout, progress=progress
            )
        else:
            assert plan is not None
            job = Job(plan=plan, requests=requests, timeout=timeout)
            run = execute(job, args.processes, progress.update if progress else None)
            result = summarize(job, run)
            if args.scenario == "spike":
                start, end = analysis.spike_window(plan)
                result.recovery_s = analysis.spike_recovery(result.timeline, start, end)
    except UsageError as exc:
        print(f"pulsegate load: {exc}", file=sys.stderr)
        return 2
    except GeneratorFailed as exc:
        print(f"pulsegate load: {exc}", file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            progress.close()
    if objectives:
        result.slo = evaluate(objectives, result)
    live.print_report(result)
    if args.json is not None:
        args.json.write_bytes(report.to_json(result))
    if args.html is not None:
        args.html.write_text(report.render_html(result), encoding="utf-8")
    if result.interrupted:
        return 130
    return 1 if not all(result.slo.values()) else 0


def _stress(
    args: argparse.Namespace,
    requests: list[RequestSpec],
    stages: list[Stage],
    objectives: list[Objective],
    *,
    timeout: float,
    progress: live.Progress | None,
) -> Result:
    steps: list[StressStep] = []
    results: list[Result] = []
    offset = 0
    for stage in stages:
        plan = Plan(kind="stress", stages=[stage], connections=args.connections)
        job = Job(plan=plan, requests=requests, timeout=timeout)
        run = execute(job, args.processes, progress.update if progress is not None else None)
        res = summarize(job, run, t_offset=offset)
        offset += len(res.timeline)
        checks = evaluate(objectives, res)
        errors = sum(res.errors.values())
        steps.append(
            StressStep(
                rate=stage.end,
                achieved=res.rate_achieved,
                p99_ms=res.latency_ms.p99,
                error_rate=round(errors / res.requests, 6) if res.requests else 0.0,
                ok=all(checks.values()) and not run.interrupted,
            )
        )
        if run.interrupted:
            steps.pop()  # a step cut short says nothing about its rate
            results.append(res)
            break
        results.append(res)
        if not steps[-1].ok:
            break
    merged = analysis.merge_results(results)
    merged.rate_target = None  # one per step (see steps), not one for the ramp
    merged.steps = steps
    merged.knee_rate, merged.broke_at = analysis.knee(steps)
    return merged
