"""Power of two choices over a latency-times-load cost (Finagle's / Linkerd's "P2C + EWMA").

Each pick draws two distinct targets at random, weighted by ``weight`` (a bisect over cumulative
weights: O(log N), nearly as cheap as a uniform draw; the second draw is "without replacement", so
no rejection loop), redraws the pair while it holds an unavailable or excluded target, and keeps
the cheaper one, where

    cost = ewma_us * (inflight + 1)

so a target is penalised both for being slow and for already being busy. Looking at two random
targets instead of all of them keeps the pick O(1) and avoids the herd behaviour of always
choosing the global best from slightly stale data.

Cold start: a target with no latency observation yet (``ewma_us == 0``) is treated as the best
while it is idle, so a new target gets tried. While its first responses are outstanding we do not
keep calling it "free" (a zero cost would flood it with every pick it appears in until the first
response lands -- the classic cold-start stampede); instead the pair is compared as if both were
equally fast, i.e. on ``inflight`` alone, with ties going to the unobserved target.

Randomness comes from the injected ``random.Random`` so tests are deterministic with a seed.

Example:
    >>> import random
    >>> from pulsegate.balancing.target import Target
    >>> fast, slow = Target("fast:1"), Target("slow:1")
    >>> fast.ewma_us, slow.ewma_us = 100.0, 900.0
    >>> P2CEwmaBalancer([fast, slow], rng=random.Random(1)).pick() is fast
    True
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable, Sequence

from pulsegate.balancing.base import cumulative, normalized_weights
from pulsegate.balancing.target import Target

# Redraws of the pair when a candidate is unavailable or excluded, before falling back to a draw
# over the list of eligible targets (allocates; only reached when most targets are ineligible).
REDRAWS = 4


def better(a: Target, b: Target) -> Target:
    """The cheaper of two targets (``a`` on ties); see the module docstring for the rule.

    >>> from pulsegate.balancing.target import Target
    >>> a, b = Target("a:1"), Target("b:1")
    >>> a.ewma_us, a.inflight, b.ewma_us, b.inflight = 100.0, 4, 300.0, 1
    >>> better(a, b) is a  # 100 * (4 + 1) = 500 < 300 * (1 + 1) = 600
    True
    >>> b.ewma_us = 0.0  # unobserved and less busy: compared on inflight
    >>> better(a, b) is b
    True
    """
    ea = a.ewma_us
    eb = b.ewma_us
    if ea and eb:
        return a if ea * (a.inflight + 1) <= eb * (b.inflight + 1) else b
    ia = a.inflight
    ib = b.inflight
    if ia != ib:
        return a if ia < ib else b
    return b if ea and not eb else a


class _Sampler:
    """Two distinct weighted indices from two ``random()`` calls, no rejection.

    The second draw samples the total weight minus the first target's and then steps over the
    first target's interval, which is exactly "weighted without replacement".
    """

    __slots__ = ("cum", "n", "starts", "total", "uniform", "weights")

    def __init__(self, weights: Sequence[int]) -> None:
        self.weights = tuple(weights)
        self.n = len(weights)
        self.uniform = all(w == 1 for w in weights)
        self.cum, self.total = cumulative(weights)
        self.starts = (0, *self.cum)

    def pair(self, rnd: Callable[[], float]) -> tuple[int, int]:
        n = self.n
        if self.uniform:
            i = int(rnd() * n)
            j = int(rnd() * (n - 1))
            return i, j + 1 if j >= i else j
        cum = self.cum
        i = bisect_right(cum, rnd() * self.total)
        w = self.weights[i]
        r = rnd() * (self.total - w)
        if r >= self.starts[i]:
            r += w
        return i, bisect_right(cum, r)


class P2CEwmaBalancer:
    """Power of two choices on ``ewma_us * (inflight + 1)``; ``key`` is ignored."""

    __slots__ = ("_cum", "_n", "_random", "_starts", "_total", "_uniform", "_weights", "targets")

    def __init__(self, targets: Sequence[Target], *, rng: random.Random | None = None) -> None:
        self.targets: tuple[Target, ...] = tuple(targets)
        self._n = len(self.targets)
        sampler = _Sampler(normalized_weights(self.targets))
        # Copied into slots: the pick path then avoids a call and an attribute hop.
        self._weights = sampler.weights
        self._uniform = sampler.uniform
        self._cum = sampler.cum
        self._total = sampler.total
        self._starts = sampler.starts
        self._random = (rng or random.Random()).random

    def pick(self, key: bytes | None = None, exclude: Target | None = None) -> Target | None:
        """The better of two distinct random available targets (``key`` is ignored).

        >>> import random
        >>> from pulsegate.balancing.target import Target
        >>> a, b = Target("a:1"), Target("b:1")
        >>> P2CEwmaBalancer([a, b], rng=random.Random(7)).pick(exclude=a) is b
        True
        """
        n = self._n
        if n < 2:
            t = self.targets[0] if n else None
            return t if t is not None and t.available else None
        rnd = self._random
        for _ in range(REDRAWS):
            # Inlined _Sampler.pair (hot path).
            if self._uniform:
                i = int(rnd() * n)
                j = int(rnd() * (n - 1))
                if j >= i:
                    j += 1
            else:
                cum = self._cum
                i = bisect_right(cum, rnd() * self._total)
                w = self._weights[i]
                r = rnd() * (self._total - w)
                if r >= self._starts[i]:
                    r += w
                j = bisect_right(cum, r)
            a = self.targets[i]
            b = self.targets[j]
            if a.available and b.available and a is not exclude and b is not exclude:
                return better(a, b)
        return self._pick_from_eligible(exclude)

    def _pick_from_eligible(self, exclude: Target | None) -> Target | None:
        """Degraded path (the pair kept hitting ineligible targets): sample the eligible list."""
        eligible = [t for t in self.targets if t.available and t is not exclude]
        if len(eligible) >= 2:
            i, j = _Sampler([t.weight for t in eligible]).pair(self._random)
            return better(eligible[i], eligible[j])
        if eligible:
            return eligible[0]
        if exclude is not None and exclude.available and any(t is exclude for t in self.targets):
            return exclude  # the only available target
        return None
