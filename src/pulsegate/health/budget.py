"""Retry budget: retries may add at most a fixed share of the traffic, so a failing upstream cannot
turn into a retry storm (Finagle's ``RetryBudget``, Envoy's ``retry_budget``).

Over a sliding window (10 one-second slots), a retry is allowed while
``retries < ratio * requests + min_per_second * window``. The request path only increments
``requests``; :meth:`RetryBudget.tick` rotates the slots from the server's sweeper.

Example:
    >>> b = RetryBudget(ratio=0.2, min_per_second=0.0)
    >>> b.requests += 10
    >>> [b.try_withdraw() for _ in range(3)]
    [True, True, False]
"""

from __future__ import annotations

from collections import deque
from typing import Final

WINDOW_SLOTS: Final = 10
SLOT_SECONDS: Final = 1.0


class RetryBudget:
    """Requests and retries over the last ``WINDOW_SLOTS`` seconds of one upstream in one worker."""

    __slots__ = (
        "_next",
        "_old_requests",
        "_old_retries",
        "_slots",
        "min_per_second",
        "ratio",
        "requests",
        "retries",
    )

    def __init__(self, ratio: float, min_per_second: float, now: float = 0.0) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        #: Counts of the current slot (the request path increments ``requests`` directly).
        self.requests = 0
        self.retries = 0
        self._slots: deque[tuple[int, int]] = deque()
        self._old_requests = 0
        self._old_retries = 0
        self._next = now + SLOT_SECONDS

    def try_withdraw(self) -> bool:
        """Spend one retry if the budget allows it."""
        requests = self._old_requests + self.requests
        retries = self._old_retries + self.retries
        if retries < self.ratio * requests + self.min_per_second * WINDOW_SLOTS * SLOT_SECONDS:
            self.retries += 1
            return True
        return False

    def tick(self, now: float) -> None:
        """Close the current slot once its second is over (called a few times a second)."""
        while now >= self._next:
            self._slots.append((self.requests, self.retries))
            self._old_requests += self.requests
            self._old_retries += self.retries
            self.requests = self.retries = 0
            if len(self._slots) >= WINDOW_SLOTS:
                req, ret = self._slots.popleft()
                self._old_requests -= req
                self._old_retries -= ret
            self._next += SLOT_SECONDS
            if now - self._next > WINDOW_SLOTS * SLOT_SECONDS:
                # A long pause (no ticks): everything in the window has expired.
                self._slots.clear()
                self._old_requests = self._old_retries = 0
                self._next = now + SLOT_SECONDS
