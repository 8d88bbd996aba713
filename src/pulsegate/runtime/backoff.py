"""Restart policy for crashed workers: replace at once, unless it keeps crashing.

A worker that ran for at least ``stable_after`` seconds before dying is replaced immediately (and
its history of quick crashes is forgotten). Each consecutive quick crash doubles the delay, from
``first`` up to ``maximum``, so a worker that dies at start (a broken module, an exhausted fd
limit) does not spin a CPU restarting.

Example:
    >>> b = RestartBackoff(first=0.25, maximum=10.0, stable_after=5.0)
    >>> [b.delay(uptime=0.1) for _ in range(4)], b.delay(uptime=60.0)
    ([0.25, 0.5, 1.0, 2.0], 0.0)
"""

from __future__ import annotations


class RestartBackoff:
    """Delay before restarting a worker slot, from how long its last process lived."""

    def __init__(self, *, first: float = 0.25, maximum: float = 10.0, stable_after: float = 5.0) -> None:
        self.first = first
        self.maximum = maximum
        self.stable_after = stable_after
        self.quick_failures = 0

    def delay(self, uptime: float) -> float:
        """Seconds to wait before starting the replacement of a process that lived ``uptime`` s."""
        if uptime >= self.stable_after:
            self.quick_failures = 0
            return 0.0
        self.quick_failures += 1
        return float(min(self.maximum, self.first * 2.0 ** (self.quick_failures - 1)))
