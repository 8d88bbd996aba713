"""Weighted random choice among available targets.

One ``random()`` call and a bisect over cumulative weights (O(log N)); an unavailable or excluded
draw is simply redrawn, which keeps the choice exactly proportional to weight among the eligible
targets. After a few misses (most targets down) it samples the list of eligible targets instead.

Randomness comes from the injected ``random.Random`` so tests are deterministic with a seed.

Example:
    >>> import random
    >>> from pulsegate.balancing.target import Target
    >>> a, b = Target("a:1", weight=3), Target("b:1")
    >>> rb = RandomBalancer([a, b], rng=random.Random(0))
    >>> picks = [rb.pick() for _ in range(1000)]
    >>> 700 < picks.count(a) < 800
    True
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence

from pulsegate.balancing.base import cumulative, normalized_weights
from pulsegate.balancing.target import Target

# Draws that may hit an ineligible target before sampling the eligible list (which allocates).
REDRAWS = 4


class RandomBalancer:
    """Weighted random among available targets; ``key`` is ignored."""

    __slots__ = ("_cum", "_n", "_random", "_total", "_uniform", "targets")

    def __init__(self, targets: Sequence[Target], *, rng: random.Random | None = None) -> None:
        self.targets: tuple[Target, ...] = tuple(targets)
        self._n = len(self.targets)
        weights = normalized_weights(self.targets)
        self._uniform = all(w == 1 for w in weights)
        self._cum, self._total = cumulative(weights)
        self._random = (rng or random.Random()).random

    def pick(self, key: bytes | None = None, exclude: Target | None = None) -> Target | None:
        """A random available target, chosen proportionally to weight (``key`` is ignored).

        >>> import random
        >>> from pulsegate.balancing.target import Target
        >>> a, b = Target("a:1"), Target("b:1")
        >>> b.available = False
        >>> RandomBalancer([a, b], rng=random.Random(3)).pick() is a
        True
        """
        n = self._n
        if not n:
            return None
        if self._uniform:
            t = self.targets[int(self._random() * n)]
        else:
            t = self.targets[bisect_right(self._cum, self._random() * self._total)]
        if t.available and t is not exclude:
            return t
        return self._pick_slow(exclude)

    def _pick_slow(self, exclude: Target | None) -> Target | None:
        """The draw hit an unavailable or excluded target: redraw (exact: rejection sampling)."""
        n = self._n
        rnd = self._random
        for _ in range(REDRAWS):
            if self._uniform:
                t = self.targets[int(rnd() * n)]
            else:
                t = self.targets[bisect_right(self._cum, rnd() * self._total)]
            if t.available and t is not exclude:
                return t
        return self._pick_from_eligible(exclude)

    def _pick_from_eligible(self, exclude: Target | None) -> Target | None:
        """Most targets are ineligible: draw from the list of eligible ones (allocates)."""
        eligible = [t for t in self.targets if t.available and t is not exclude]
        if not eligible:
            if exclude is not None and exclude.available and any(t is exclude for t in self.targets):
                return exclude  # the only available target
            return None
        cum, total = cumulative([t.weight for t in eligible])
        return eligible[bisect_right(cum, self._random() * total)]
