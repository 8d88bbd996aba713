"""Power of two choices over a latency-times-load cost (Finagle's / Linkerd's "P2C + EWMA").

Each pick draws two distinct targets at random, weighted by ``weight`` (a bisect over cumulative
weights: O(log N), nearly as cheap as a uniform draw; the second draw is "without replacement", so
no rejection loop), and keeps the cheaper one, where

    cost = ewma_us * (inflight + 1)

so a target is penalised both for being slow and for already being busy. Looking at two random
targets instead of all of them keeps the pick O(1) and avoids the herd behaviour of always
choosing the global best from slightly stale data.

A pair holding an unavailable or excluded target is redrawn (pools of more than 8 targets, up to
4 times), otherwise the pair is drawn from the list of eligible targets (O(N), allocates; with 3
targets and one down that is the only pair anyway).

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

# Pools up to this size skip redrawing when the pair holds an unavailable or excluded target and
# go straight to an O(N) pass over the eligible targets (with 3 targets and one down, redrawing
# succeeds only 1 time in 3). Larger pools redraw the pair up to REDRAWS times first.
SMALL_POOL = 8
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


def weighted_pair(weights: Sequence[int], rnd: Callable[[], float]) -> tuple[int, int]:
    """Two distinct indices, the first drawn proportionally to weight, the second likewise among
    the rest ("weighted without replacement"), from two ``rnd()`` calls and no rejection.

    The second draw samples ``total - weights[first]`` and steps over the first's interval.
    Linear scans: this is for short lists (the degraded path); ``pick`` bisects instead.

    >>> import random
    >>> i, j = weighted_pair([1, 5, 1], random.Random(0).random)
    >>> i != j
    True
    """
    total = sum(weights)
    r = rnd() * total
    last = len(weights) - 1
    first = last
    for k, w in enumerate(weights):
        if r < w:
            first = k
            break
        r -= w
    wf = weights[first]
    r = rnd() * (total - wf)
    second = last if first != last else last - 1
    for k, w in enumerate(weights):
        if k == first:
            continue
        if r < w:
            second = k
            break
        r -= w
    return first, second


class P2CEwmaBalancer:
    """Power of two choices on ``ewma_us * (inflight + 1)``; ``key`` is ignored."""

    __slots__ = ("_cum", "_n", "_random", "_starts", "_total", "_uniform", "_weights", "targets")

    def __init__(self, targets: Sequence[Target], *, rng: random.Random | None = None) -> None:
        self.targets: tuple[Target, ...] = tuple(targets)
        self._n = len(self.targets)
        self._weights = normalized_weights(self.targets)
        self._uniform = all(w == 1 for w in self._weights)
        self._cum, self._total = cumulative(self._weights)
        # Where each target's interval starts in [0, total): for the second, distinct draw.
        self._starts = (0.0, *self._cum)
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
        if self._uniform:
            # Two distinct uniform indices from two draws, no rejection.
            i = int(rnd() * n)
            j = int(rnd() * (n - 1))
            if j >= i:
                j += 1
        else:
            # Inlined _pair(): weighted without replacement.
            cum = self._cum
            total = self._total
            i = bisect_right(cum, rnd() * total)
            w = self._weights[i]
            r = rnd() * (total - w)
            if r >= self._starts[i]:
                r += w
            j = bisect_right(cum, r)
        a = self.targets[i]
        b = self.targets[j]
        if a.available and b.available and a is not exclude and b is not exclude:
            # Inlined better() for the common case: both targets have a latency observation.
            ea = a.ewma_us
            eb = b.ewma_us
            if ea and eb:
                return a if ea * (a.inflight + 1) <= eb * (b.inflight + 1) else b
            return better(a, b)
        return self._pick_slow(exclude)

    def _pair(self) -> tuple[int, int]:
        """Two distinct indices, weighted without replacement (bisect: O(log N))."""
        rnd = self._random
        cum = self._cum
        total = self._total
        i = bisect_right(cum, rnd() * total)
        w = self._weights[i]
        r = rnd() * (total - w)
        if r >= self._starts[i]:
            r += w
        return i, bisect_right(cum, r)

    def _pick_slow(self, exclude: Target | None) -> Target | None:
        """The pair held an unavailable or excluded target."""
        targets = self.targets
        if self._n > SMALL_POOL:
            n = self._n
            rnd = self._random
            for _ in range(REDRAWS):
                if self._uniform:
                    i = int(rnd() * n)
                    j = int(rnd() * (n - 1))
                    if j >= i:
                        j += 1
                else:
                    i, j = self._pair()
                a = targets[i]
                b = targets[j]
                if a.available and b.available and a is not exclude and b is not exclude:
                    return better(a, b)
        eligible = [t for t in targets if t.available and t is not exclude]
        if len(eligible) > 2:
            i, j = weighted_pair([t.weight for t in eligible], self._random)
            return better(eligible[i], eligible[j])
        if len(eligible) == 2:
            return better(eligible[0], eligible[1])
        if eligible:
            return eligible[0]
        if exclude is not None and exclude.available and any(t is exclude for t in targets):
            return exclude  # the only available target
        return None
