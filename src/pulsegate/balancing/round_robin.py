"""Smooth weighted round robin, exactly nginx's algorithm, with an O(1) pick when all are up.

nginx (``ngx_http_upstream_get_peer``) keeps a ``current_weight`` per peer; each pick adds every
peer's weight to its current weight, takes the peer with the largest current weight (the first one
on ties) and subtracts the total weight from it. Weights 5, 1, 1 give ``a a b a c a a``: every
window of ``sum(weights)`` picks holds each peer exactly ``weight`` times, and picks interleave.

Running that loop costs O(N) per pick. Started from all-zero current weights the sequence is
periodic (after ``sum(weights)`` picks every current weight is back to 0), so while every target
is available we replay a precomputed period with one index: the *static* mode. With all weights
equal the period is the target list itself, i.e. a plain rotating index.

When the static mode meets an unavailable target at its position, it converts its position into
nginx's current weights (exact: after ``p`` picks from zero, ``cw[j] = p * w[j] - W * picks[j]``)
and continues with nginx's loop, skipping unavailable targets (the *dynamic* mode). The first
dynamic pick that sees every target available switches back to the schedule at the position it
would have reached had it kept running; credit accumulated while degraded is forgiven, as nginx
does on a reload. Because the static mode only looks at the target at its position, it notices a
target going down when that target's turn comes, at most one period later -- indistinguishable
from the health check flipping the flag a moment later.

Equal weights never need the dynamic mode: rotating past ineligible targets already shares the
load exactly evenly among the available ones, as nginx's loop does for equal weights.

Retries: when the target at the position is ``exclude``, it loses that turn (the schedule moves
past it), which keeps the cyclic schedule and its exact counts; the dynamic mode skips it the way
nginx skips peers it already tried.

Example:
    >>> from pulsegate.balancing.target import Target
    >>> a, b, c = Target("a:1", 5), Target("b:1"), Target("c:1")
    >>> rr = RoundRobinBalancer([a, b, c])
    >>> "".join(rr.pick().address[0] for _ in range(7))
    'aabacaa'
"""

from __future__ import annotations

from collections.abc import Sequence

from pulsegate.balancing.base import normalized_weights
from pulsegate.balancing.target import Target

# Longest schedule we precompute (entries, after dividing weights by their gcd). Above this the
# balancer always runs nginx's O(N) loop; 64k references are 512 KiB, built once per config.
MAX_SCHEDULE = 1 << 16
# Building the schedule costs O(period * N) Python steps; keep a config reload under ~0.1 s.
MAX_SCHEDULE_WORK = 1 << 20


def swrr_sequence(weights: Sequence[int], count: int) -> list[int]:
    """The first ``count`` picks (as indices) of nginx's smooth weighted round robin from zero.

    >>> swrr_sequence([5, 1, 1], 7)
    [0, 0, 1, 0, 2, 0, 0]
    """
    n = len(weights)
    total = sum(weights)
    current = [0] * n
    out: list[int] = []
    for _ in range(count):
        best = 0
        best_cw = current[0] = current[0] + weights[0]
        for i in range(1, n):
            c = current[i] = current[i] + weights[i]
            if c > best_cw:  # strict: the first maximum wins, as in nginx
                best, best_cw = i, c
        current[best] -= total
        out.append(best)
    return out


class RoundRobinBalancer:
    """nginx's smooth weighted round robin over available targets; ``key`` is ignored."""

    __slots__ = (
        "_current",
        "_entries",
        "_equal",
        "_period",
        "_pos",
        "_schedule",
        "_schedule_idx",
        "_static",
        "_weights",
        "targets",
    )

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets: tuple[Target, ...] = tuple(targets)
        weights = normalized_weights(self.targets)
        self._weights = weights
        n = len(weights)
        self._equal = all(w == 1 for w in weights)
        period = sum(weights)
        if self._equal:
            idx: Sequence[int] = range(n)
        elif period <= MAX_SCHEDULE and period * n <= MAX_SCHEDULE_WORK:
            idx = swrr_sequence(weights, period)
        else:
            idx = ()
        self._schedule_idx: tuple[int, ...] = tuple(idx)
        self._schedule: tuple[Target, ...] = tuple(self.targets[i] for i in idx)
        self._period = len(self._schedule)
        self._pos = 0
        # nginx's current_weight per target; only meaningful in the dynamic mode.
        self._current = [0] * n
        # (index, target, weight) triples: the dynamic loop unpacks them instead of indexing.
        self._entries = tuple(zip(range(n), self.targets, weights, strict=True))
        self._static = self._period > 0

    def pick(self, key: bytes | None = None, exclude: Target | None = None) -> Target | None:
        """Next target in smooth weighted round-robin order (``key`` is ignored).

        >>> from pulsegate.balancing.target import Target
        >>> a, b = Target("a:1"), Target("b:1")
        >>> rr = RoundRobinBalancer([a, b])
        >>> rr.pick() is a, rr.pick(exclude=b) is a
        (True, True)
        """
        if self._static:
            i = self._pos
            t = self._schedule[i]
            if t.available and t is not exclude:
                i += 1
                self._pos = 0 if i == self._period else i
                return t
            return self._pick_static_slow(exclude)
        return self._pick_dynamic(exclude)

    def _pick_static_slow(self, exclude: Target | None) -> Target | None:
        """The target at the position is unavailable or excluded."""
        schedule = self._schedule
        period = self._period
        i = self._pos
        if self._equal:
            excluded_up = False
            for _ in range(period):
                t = schedule[i]
                i += 1
                if i == period:
                    i = 0
                if t.available:
                    if t is not exclude:
                        self._pos = i
                        return t
                    excluded_up = True
            return exclude if excluded_up else None
        for _ in range(period):
            t = schedule[i]
            if not t.available:
                self._pos = i
                self._enter_dynamic()
                return self._pick_dynamic(exclude)
            i += 1
            if i == period:
                i = 0
            if t is not exclude:
                self._pos = i
                return t
            # ``t`` is the excluded target: it loses this turn.
        return exclude  # every entry is ``exclude``, which is available: it is the only one

    def _enter_dynamic(self) -> None:
        """Turn the schedule position into nginx's current weights (exact, see module doc)."""
        p = self._pos
        period = self._period
        current = [p * w for w in self._weights]
        for j in self._schedule_idx[:p]:
            current[j] -= period
        self._current = current
        self._static = False

    def _pick_dynamic(self, exclude: Target | None) -> Target | None:
        """nginx's loop: skip unavailable (and excluded) targets, pick the max current weight."""
        current = self._current
        best = -1
        best_cw = 0
        total = 0
        up = 0
        for i, t, w in self._entries:
            if t.available:
                up += 1
                if t is not exclude:
                    c = current[i] + w
                    current[i] = c
                    total += w
                    if best < 0 or c > best_cw:
                        best = i
                        best_cw = c
        if best < 0:
            # Nothing but (maybe) ``exclude`` is up; ``up`` counts it only if it is ours.
            return exclude if up else None
        current[best] -= total
        if self._period:
            # Keep the schedule clock running so that returning to it does not restart at the
            # top (which would favour the first entries after every flap).
            p = self._pos + 1
            self._pos = 0 if p == self._period else p
            if up == len(current):
                self._static = True
        return self.targets[best]
