"""Passive outlier ejection: targets that fail live traffic leave the rotation for a while.

Modelled on Envoy's outlier detection. Each worker watches the answers it gets: ``consecutive_failures``
gateway failures in a row (connect failures, resets, timeouts) or ``consecutive_5xx`` errors in a row
(5xx answers and gateway failures) eject a target. The n-th ejection in a row lasts
``n * base_ejection_time`` (capped by ``max_ejection_time``); the count decays by one for every
``base_ejection_time`` the target then stays in rotation. At most ``max_ejected_percent`` of the
upstream's targets are out at once (always at least one may go), so ejection cannot empty an upstream
that is merely degraded. A passing active health check readmits an ejected target early.

Time is the caller's (loop time), so the detector is deterministic under test.

Example:
    >>> from pulsegate.balancing.target import Target
    >>> from pulsegate.config.resilience import OutlierConfig
    >>> a, b = Target("10.0.0.1:80"), Target("10.0.0.2:80")
    >>> det = OutlierDetector("api", OutlierConfig(consecutive_failures=2), [a, b])
    >>> det.failure(a, now=100.0, gateway=True); a.available
    True
    >>> det.failure(a, now=100.5, gateway=True); (a.available, a.ejected_until, a.eject_reason)
    (False, 130.5, '2 consecutive failures')
    >>> det.sweep(131.0); a.available
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pulsegate.balancing.target import Target
from pulsegate.config.resilience import OutlierConfig

#: Called with ("ejected" | "readmitted", upstream name, target, reason).
OnChange = Callable[[str, str, Target, str], None]


class OutlierDetector:
    """Ejection bookkeeping for one upstream's targets in one worker."""

    __slots__ = ("_limit", "cfg", "ejected", "on_change", "targets", "upstream")

    def __init__(
        self,
        upstream: str,
        cfg: OutlierConfig,
        targets: Sequence[Target],
        on_change: OnChange | None = None,
    ) -> None:
        self.upstream = upstream
        self.cfg = cfg
        self.targets = tuple(targets)
        self.on_change = on_change
        self.ejected: list[Target] = [t for t in self.targets if t.ejected_until]
        pct = cfg.max_ejected_percent
        # Always at least one: a single-target upstream (or a 0 %) can still eject its failing target.
        self._limit = max(1, math.floor(len(self.targets) * pct)) if cfg.enabled else 0

    def failure(self, target: Target, now: float, gateway: bool) -> None:
        """One failed attempt on ``target``: a gateway failure, or (``gateway=False``) a 5xx answer."""
        if target.ejected_until:
            return  # answers to requests sent before the ejection do not count towards the next
        target.errors += 1
        if gateway:
            target.failures += 1
        else:
            target.failures = 0  # it answered: reachable, so the failure streak is broken
        cfg = self.cfg
        if not self._limit:
            return
        if gateway and cfg.consecutive_failures and target.failures >= cfg.consecutive_failures:
            reason = f"{target.failures} consecutive failures"
        elif cfg.consecutive_5xx and target.errors >= cfg.consecutive_5xx:
            reason = f"{target.errors} consecutive errors"
        else:
            return
        self.eject(target, now, reason)

    def eject(self, target: Target, now: float, reason: str) -> bool:
        """Take ``target`` out of rotation (False when the ejection limit is reached)."""
        if target.ejected_until or len(self.ejected) >= self._limit:
            return False
        cfg = self.cfg
        streak = target.ejections
        if streak and target.readmitted_at:
            # Good behaviour since the last readmission earns the streak back.
            streak = max(0, streak - int((now - target.readmitted_at) / cfg.base_ejection_time))
        streak += 1
        target.ejections = streak
        target.ejected_until = now + min(cfg.max_ejection_time, cfg.base_ejection_time * streak)
        target.eject_reason = reason
        target.failures = target.errors = 0
        target.refresh()
        self.ejected.append(target)
        if self.on_change is not None:
            self.on_change("ejected", self.upstream, target, reason)
        return True

    def readmit(self, target: Target, now: float, reason: str) -> None:
        """Put an ejected target back into rotation."""
        if not target.ejected_until:
            return
        target.ejected_until = 0.0
        target.eject_reason = ""
        target.readmitted_at = now
        target.refresh()
        self.ejected.remove(target)
        if self.on_change is not None:
            self.on_change("readmitted", self.upstream, target, reason)

    def sweep(self, now: float) -> None:
        """Readmit targets whose ejection time is over."""
        for target in [t for t in self.ejected if t.ejected_until <= now]:
            self.readmit(target, now, "ejection time over")
