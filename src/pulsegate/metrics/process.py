"""Process-level signals of a worker: RSS, CPU, event-loop lag and garbage-collector pauses.

All cheap enough to run always: RSS is one read of ``/proc/self/statm``, CPU one ``os.times()``,
loop lag one timer every ``lag_interval``, GC pauses two ``perf_counter`` calls per collection
(via ``gc.callbacks``).

Example:
    >>> probe = ProcessProbe()
    >>> probe.sample(connections=0).rss_bytes > 0
    True
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable
from typing import Any

from pulsegate.metrics.snapshot import ProcessSample

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):  # pragma: no cover - non-Linux
        return 0


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ProcessProbe:
    """Collects loop lag and GC pauses between samples; :meth:`sample` returns and resets them."""

    def __init__(self, *, lag_interval: float = 0.05, clock: Callable[[], float] = time.perf_counter) -> None:
        self.lag_interval = lag_interval
        self.clock = clock
        self._lag_max = 0.0
        self._lag_sum = 0.0
        self._lag_n = 0
        self._gc_counts = [0, 0, 0]
        self._gc_pause = 0.0
        self._gc_pause_max = 0.0
        self._gc_started = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the lag timer on ``loop`` and hook the garbage collector."""
        self._loop = loop
        gc.callbacks.append(self._on_gc)
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _arm(self) -> None:
        assert self._loop is not None
        self._expected = self.clock() + self.lag_interval
        self._timer = self._loop.call_later(self.lag_interval, self._tick)

    def _tick(self) -> None:
        self.observe_lag(max(0.0, self.clock() - self._expected))
        self._arm()

    def observe_lag(self, lag: float) -> None:
        """One lateness measurement of the loop (seconds)."""
        self._lag_n += 1
        self._lag_sum += lag
        self._lag_max = max(self._lag_max, lag)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = self.clock()
            return
        pause = self.clock() - self._gc_started
        generation = info.get("generation", 0)
        if 0 <= generation < 3:
            self._gc_counts[generation] += 1
        self._gc_pause += pause
        self._gc_pause_max = max(self._gc_pause_max, pause)

    def sample(self, connections: int) -> ProcessSample:
        """Gauges now, and lag/GC figures since the previous sample."""
        sample = ProcessSample(
            connections=connections,
            rss_bytes=rss_bytes(),
            cpu_seconds=cpu_seconds(),
            loop_lag_max=self._lag_max,
            loop_lag_mean=self._lag_sum / self._lag_n if self._lag_n else 0.0,
            gc_collections=self._gc_counts,
            gc_pause_seconds=self._gc_pause,
            gc_pause_max=self._gc_pause_max,
        )
        self._lag_max = self._lag_sum = 0.0
        self._lag_n = 0
        self._gc_counts = [0, 0, 0]
        self._gc_pause = self._gc_pause_max = 0.0
        return sample
