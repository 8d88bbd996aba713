"""Consistent hashing with a Maglev lookup table (Eisenbud et al., NSDI 2016).

Why Maglev rather than a ketama ring (details and numbers in ``docs/balancing.md``):

- the pick is one table index (``table[hash % M]``), O(1), where a ring needs a bisect over
  ``N * vnodes`` points;
- the load is balanced to within about 1% with ``M >= 100 * N``, where a ring with ~160 virtual
  nodes per target is off by several percent;
- removing a target remaps its own keys plus a small extra fraction of the others' (measured:
  at most 0.6% of all keys for N = 3..20 with ``M = 65537``), where a ring moves only the
  removed target's keys. The tests bound the total to ``[0.5 / N, 1.6 / N]``.

Table: ``M`` is the smallest prime ``>= max(65537, 100 * N)``. Every target has a preference
permutation of the slots (``offset + j * skip mod M``; ``M`` prime makes every ``skip`` a full
cycle) derived from its *address*, so the table does not depend on the order of the targets. The
targets take turns claiming their next free preferred slot; weights are honoured by giving each
target ``weight / max_weight`` of a turn per round, so slot counts are proportional to weights.

Unavailable or excluded owners: the pick walks forward to the next slot whose owner is eligible.
Only keys owned by an ineligible target move, and since consecutive slots belong to effectively
random targets, its load spreads over all the others. A retry of the same key (``exclude``) goes
to the same second choice every time.

Hashing is stable across processes (several workers and several gateway instances must agree):
the key hash is ``zlib.crc32`` followed by a 64-bit multiplicative (Fibonacci) mix, ~130 ns as a
function call (``benchmarks/balancing_bench.py``) against ~360 ns for ``hashlib.blake2b`` with an
8-byte digest. Python's ``hash()`` is randomised per process and never used. Target placement
uses ``blake2b`` (once, at build time).

``key=None`` (the configured key is absent from the request) falls back to smooth weighted round
robin among the available targets.

Example:
    >>> from pulsegate.balancing.target import Target
    >>> targets = [Target(f"10.0.0.{i}:80") for i in range(1, 4)]
    >>> ch = ConsistentHashBalancer(targets)
    >>> ch.pick(b"user-42") is ch.pick(b"user-42")
    True
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from functools import lru_cache
from zlib import crc32

from pulsegate.balancing.base import normalized_weights
from pulsegate.balancing.round_robin import RoundRobinBalancer
from pulsegate.balancing.target import Target

MIN_TABLE_SIZE = 65537  # prime (2^16 + 1)
SLOTS_PER_TARGET = 100
# Slots to walk past ineligible owners before checking whether anything is eligible at all (an
# O(N) scan) -- so an all-down pool costs O(N) per pick instead of a walk over the whole table.
QUICK_WALK = 64

_MIX = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, odd
_MASK64 = (1 << 64) - 1


def key_hash(key: bytes) -> int:
    """Stable 32-bit hash of a request key: crc32, then the top half of a 64-bit Fibonacci mix.

    CRC is linear, so similar keys give related values; multiplying by an odd 64-bit constant
    and keeping the high 32 bits spreads every input bit over the result.

    >>> key_hash(b"user-42")
    1609128998
    """
    return ((crc32(key) * _MIX) & _MASK64) >> 32


def _is_prime(m: int) -> bool:
    if m < 2:
        return False
    if m % 2 == 0:
        return m == 2
    f = 3
    while f * f <= m:
        if m % f == 0:
            return False
        f += 2
    return True


def table_size(n_targets: int) -> int:
    """Smallest prime ``>= max(65537, 100 * n_targets)``.

    >>> table_size(3), table_size(1000)
    (65537, 100003)
    """
    m = max(MIN_TABLE_SIZE, SLOTS_PER_TARGET * n_targets)
    while not _is_prime(m):
        m += 1
    return m


def _placement(name: str, m: int) -> tuple[int, int]:
    """A target's (offset, skip) in a table of size ``m``: stable, from its name."""
    digest = hashlib.blake2b(name.encode(), digest_size=16, person=b"pulsegate-maglev").digest()
    return int.from_bytes(digest[:8], "little") % m, int.from_bytes(digest[8:], "little") % (m - 1) + 1


def maglev_table(names: Sequence[str], weights: Sequence[int], m: int) -> list[int]:
    """Fill an ``m``-slot Maglev table with target indices (weighted population).

    >>> t = maglev_table(["a", "b"], [1, 3], 101)
    >>> len(t), t.count(1) / len(t) > 0.7
    (101, True)
    """
    n = len(names)
    table = [-1] * m
    if not n:
        return table
    offsets_skips = [_placement(name, m) for name in names]
    position = [o for o, _ in offsets_skips]
    skips = [s for _, s in offsets_skips]
    max_w = max(weights)
    credit = [0] * n
    filled = 0
    while True:
        for i in range(n):
            # Weighted turns: a target claims a slot each time its credit reaches max_w, i.e.
            # weight / max_weight slots per round.
            c = credit[i] + weights[i]
            if c < max_w:
                credit[i] = c
                continue
            credit[i] = c - max_w
            p = position[i]
            skip = skips[i]
            while table[p] >= 0:
                p += skip
                if p >= m:
                    p -= m
            table[p] = i
            p += skip
            position[i] = p - m if p >= m else p
            filled += 1
            if filled == m:
                return table


@lru_cache(maxsize=32)
def _cached_table(names: tuple[str, ...], weights: tuple[int, ...], m: int) -> array[int]:
    # Building costs 15-35 ms of pure Python for M = 65537; a config reload usually rebuilds the
    # same upstreams, which then cost nothing. An int array keeps an entry at 4 bytes
    # per slot (256 KiB for M = 65537) instead of 8 for a tuple.
    return array("i", maglev_table(names, weights, m))


class ConsistentHashBalancer:
    """Maglev consistent hashing on ``key``; round robin when ``key`` is None."""

    __slots__ = ("_fallback", "_m", "_table", "targets")

    def __init__(self, targets: Sequence[Target], *, size: int | None = None) -> None:
        """``size`` overrides the table size (a prime >= the number of targets; default
        :func:`table_size`); smaller tables build faster but balance and remap less precisely."""
        self.targets: tuple[Target, ...] = tuple(targets)
        if size is not None and (size < max(2, len(self.targets)) or not _is_prime(size)):
            raise ValueError(f"table size must be a prime >= the number of targets, got {size}")
        # Name targets by address so the table is independent of their order; number repeated
        # addresses so duplicates still get distinct permutations.
        seen: dict[str, int] = {}
        names: list[str] = []
        for t in self.targets:
            k = seen.get(t.address, 0)
            seen[t.address] = k + 1
            names.append(t.address if k == 0 else f"{t.address}#{k}")
        self._m = size or table_size(len(self.targets))
        indices = _cached_table(tuple(names), normalized_weights(self.targets), self._m)
        self._table: tuple[Target, ...] = tuple(self.targets[i] for i in indices) if self.targets else ()
        self._fallback = RoundRobinBalancer(self.targets)

    def pick(self, key: bytes | None = None, exclude: Target | None = None) -> Target | None:
        """The owner of ``key``'s slot, or the next eligible owner after it.

        ``key=None`` falls back to smooth weighted round robin among available targets.

        >>> from pulsegate.balancing.target import Target
        >>> a, b = Target("a:1"), Target("b:1")
        >>> ch = ConsistentHashBalancer([a, b])
        >>> owner = ch.pick(b"k")
        >>> other = ch.pick(b"k", exclude=owner)
        >>> other is not owner and other in (a, b)
        True
        """
        if key is None or not self._table:
            return self._fallback.pick(None, exclude)
        m = self._m
        s = (((crc32(key) * _MIX) & _MASK64) >> 32) % m
        t = self._table[s]
        if t.available and t is not exclude:
            return t
        return self._walk(s, exclude)

    def _walk(self, s: int, exclude: Target | None) -> Target | None:
        """Next slot whose owner is available and not excluded."""
        table = self._table
        m = self._m
        for _ in range(QUICK_WALK):
            s += 1
            if s == m:
                s = 0
            t = table[s]
            if t.available and t is not exclude:
                return t
        if not any(t.available and t is not exclude for t in self.targets):
            if exclude is not None and exclude.available and any(t is exclude for t in self.targets):
                return exclude  # the only available target
            return None
        for _ in range(m):
            s += 1
            if s == m:
                s = 0
            t = table[s]
            if t.available and t is not exclude:
                return t
        # The eligible targets own no slot (weight far below 1/M of the total): still answer.
        return self._fallback.pick(None, exclude)
