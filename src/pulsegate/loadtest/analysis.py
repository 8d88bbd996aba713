"""What spike and stress runs conclude from their timelines: the time a spike takes to wear off,
and the knee of a stress ramp.

Example:
    >>> from pulsegate.loadtest.model import Second
    >>> tl = [Second(t=t, p99_ms=p, sent=100, ok=100) for t, p in enumerate([2, 2, 2, 9, 9, 6, 2.1, 2])]
    >>> spike_recovery(tl, spike_start=3, spike_end=5)
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence

from pulsegate.loadtest.model import Plan, Result, Second, StressStep
from pulsegate.loadtest.runner import latency_of
from pulsegate.metrics.histogram import merge_into, percentile

#: A second counts as recovered when its p99 is within this factor of the baseline p99 (plus
#: ``RECOVERY_SLACK_MS``, so a sub-millisecond baseline does not demand the impossible).
RECOVERY_FACTOR = 1.25
RECOVERY_SLACK_MS = 0.5


def baseline_p99(timeline: Sequence[Second], start: int, end: int) -> float | None:
    """p99 over the seconds ``[start, end)``, from their merged histograms when present."""
    window = [s for s in timeline if start <= s.t < end and s.sent]
    if not window:
        return None
    hist: dict[int, int] = {}
    for s in window:
        merge_into(hist, s.hist)
    if hist:
        return percentile(hist, 99) / 1000.0
    return sorted(s.p99_ms for s in window)[int(0.99 * (len(window) - 1))]


def spike_recovery(timeline: Sequence[Second], spike_start: int, spike_end: int) -> float | None:
    """Seconds after the spike ended until the p99 of a second is back within the pre-spike p99
    (None if it never came back within the run). The first second of the run is warm-up."""
    base = baseline_p99(timeline, 1 if spike_start > 1 else 0, spike_start)
    if base is None:
        return None
    bound = base * RECOVERY_FACTOR + RECOVERY_SLACK_MS
    for s in timeline:
        # Answers, mostly good ones, and fast: a second of only errors is not a recovery.
        if s.t >= spike_end and s.ok and s.errors <= s.ok * 0.01 and s.p99_ms <= bound:
            return float(s.t - spike_end)
    return None


def knee(steps: Sequence[StressStep]) -> tuple[float | None, float | None]:
    """(highest rate that met the objectives, the first rate that did not)."""
    best: float | None = None
    for step in steps:
        if not step.ok:
            return best, step.rate
        best = step.rate
    return best, None


def spike_window(plan: Plan) -> tuple[int, int]:
    """The whole seconds ``[start, end)`` of a spike plan's burst (its highest-rate stage)."""
    t = 0.0
    best = (0.0, 0.0, -1.0)
    for stage in plan.stages:
        if stage.end > best[2]:
            best = (t, t + stage.duration, stage.end)
        t += stage.duration
    return int(best[0]), int(-(-best[1] // 1))


def merge_results(results: Sequence[Result]) -> Result:
    """One result over consecutive runs (the steps of a stress test): timelines concatenated,
    counts and histograms added, percentiles recomputed."""
    first = results[0]
    hist: dict[int, int] = {}
    errors: dict[str, int] = {}
    for r in results:
        merge_into(hist, r.histogram)
        for k, n in r.errors.items():
            errors[k] = errors.get(k, 0) + n
    requests = sum(r.requests for r in results)
    duration = sum(r.duration_s for r in results)
    return Result(
        scenario=first.scenario,
        url=first.url,
        duration_s=round(duration, 3),
        requests=requests,
        ok=sum(r.ok for r in results),
        errors=errors,
        rate_target=first.rate_target,
        rate_achieved=round(requests / duration, 3) if duration else 0.0,
        latency_ms=latency_of(hist),
        timeline=[s for r in results for s in r.timeline],
        processes=first.processes,
        connections=first.connections,
        late_sends=sum(r.late_sends for r in results),
        missed_sends=sum(r.missed_sends for r in results),
        interrupted=any(r.interrupted for r in results),
        histogram=hist,
    )
