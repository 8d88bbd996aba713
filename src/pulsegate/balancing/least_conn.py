"""Least connections: the available target with the fewest ``inflight / weight``.

Ties are broken by where the scan starts: each scan starts just after the previous pick, so tied
targets take turns (round robin among the tied ones) instead of the first one taking every tie;
with all targets idle, picks simply rotate. The scan stops early at a target with nothing in
flight: nothing can beat zero.

The scan is a plain Python loop over a precomputed rotation of the target tuple: on CPython 3.11
that beats ``min(..., key=attrgetter(...))`` and ``map``-based variants by 2-3x (measured; see
``docs/balancing.md``). It is inherently O(N): ``inflight`` changes on every request and the proxy
updates it with plain attribute arithmetic, so there is no event to maintain a heap from.

Weighted ratios are compared as ``inflight / weight`` floats: division is correctly rounded, so
equal ratios compare equal and distinct ones (small integers) never collide.

Example:
    >>> from pulsegate.balancing.target import Target
    >>> a, b = Target("a:1"), Target("b:1", weight=2)
    >>> a.inflight, b.inflight = 1, 1
    >>> LeastConnBalancer([a, b]).pick() is b
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from pulsegate.balancing.target import Target

# Precompute every rotation of the target tuple up to this many targets (N^2 references: 32 KiB
# at 64); beyond it each pick slices a doubled tuple, which is cheap next to an O(N) scan.
MAX_PRECOMPUTED_ROTATIONS = 64


class LeastConnBalancer:
    """Fewest in-flight requests per unit of weight, rotating among ties; ``key`` is ignored."""

    __slots__ = ("_doubled", "_equal", "_index", "_n", "_rotations", "_start", "targets")

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets: tuple[Target, ...] = tuple(targets)
        n = self._n = len(self.targets)
        self._equal = len({t.weight for t in self.targets}) <= 1
        self._doubled = self.targets + self.targets
        self._rotations: tuple[tuple[Target, ...], ...] = ()
        if n <= MAX_PRECOMPUTED_ROTATIONS:
            self._rotations = tuple(self._doubled[s : s + n] for s in range(n))
        # Where the next scan starts: just after the previous pick (its index + 1).
        self._index = {t: i + 1 if i + 1 < n else 0 for i, t in enumerate(self.targets)}
        self._start = 0

    def pick(self, key: bytes | None = None, exclude: Target | None = None) -> Target | None:
        """An available target with the minimum ``inflight / weight`` (``key`` is ignored).

        >>> from pulsegate.balancing.target import Target
        >>> a, b, c = Target("a:1"), Target("b:1"), Target("c:1")
        >>> a.inflight, b.inflight, c.inflight = 3, 1, 1
        >>> lc = LeastConnBalancer([a, b, c])
        >>> [lc.pick().address for _ in range(3)]  # b and c tie: they take turns
        ['b:1', 'c:1', 'b:1']
        """
        n = self._n
        if not n:
            return None
        s = self._start
        rotation = self._rotations[s] if self._rotations else self._doubled[s : s + n]
        best: Target | None = None
        if self._equal:
            best_i = 0
            for t in rotation:
                if t.available and t is not exclude:
                    i = t.inflight
                    if best is None or i < best_i:
                        best, best_i = t, i
                        if i <= 0:
                            break
        else:
            best_r = 0.0
            for t in rotation:
                if t.available and t is not exclude:
                    r = t.inflight / t.weight
                    if best is None or r < best_r:
                        best, best_r = t, r
                        if r <= 0.0:
                            break
        if best is not None:
            self._start = self._index[best]
            return best
        if exclude is not None and exclude.available and exclude in self._index:
            return exclude  # the only available target
        return None
