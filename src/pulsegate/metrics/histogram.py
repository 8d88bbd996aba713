"""Log-linear latency histogram: fixed integer buckets, cheap to record, merge and summarize.

One implementation is shared by the gateway's per-worker metrics and by the load tester. Values
are non-negative integers (typically microseconds); negative values are recorded as 0.

Layout. Values 0..63 each have an exact bucket (index = value). Above that, every power of two
``[2**k, 2**(k+1))`` is split into 32 equal sub-buckets: for ``v >= 64``, with
``e = v.bit_length() - 6``, the index is ``e * 32 + (v >> e)`` (64..127 -> 64..95, 128..255 ->
96..127, ...; the indices are contiguous). The buckets cover 0..2**40-1 (12.7 days in
microseconds) in ``N_BUCKETS`` = 1152 buckets; larger values are counted in the last bucket.

Why log-linear. Latency needs a constant *relative* precision over many orders of magnitude:
linear buckets are either too coarse for fast requests or too many for slow ones, while pure
powers of two are too coarse everywhere. Here a bucket ``[m << e, (m + 1) << e)`` with ``32 <= m
< 64`` is at most 1/32 of its lower bound wide, so the midpoint estimate of any value in it is
off by at most 1/64 (1.6%) of that value, and exactly right below 64. Buckets are fixed, so
histograms from different workers and different seconds merge by adding counts per index.

Why integers. Recording is one ``bit_length``, a shift and an add to find the bucket: no float,
no ``log()``, no rounding at bucket edges, identical results interpreted and compiled with mypyc.

``Histogram`` is the recording instrument (a dense list of counts). Everything downstream uses
sparse histograms, ``{index: count}`` mappings of the non-zero buckets, which ``Histogram.take``
produces as per-interval deltas, ``merge_into`` adds up, and ``percentile`` and
``count_at_most`` summarize.

Example:
    >>> h = Histogram()
    >>> for v in (5, 70, 71, 1000, 250_000):
    ...     h.record(v)
    >>> h.count, h.total, h.max
    (5, 251146, 250000)
    >>> bucket_index(70), bucket_lower(67), bucket_upper(67), bucket_mid(67)
    (67, 70, 72, 70.5)
    >>> counts = h.take()
    >>> counts
    {5: 1, 67: 2, 190: 1, 445: 1}
    >>> h.count, h.take()
    (0, {})
    >>> percentile(counts, 50), percentiles(counts, [0, 90, 100])
    (70.5, [5.0, 251903.5, 251903.5])
    >>> count_at_most(counts, 71), count_at_most(counts, 70)
    (3, 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Final

# Exact buckets below LINEAR_LIMIT; above, SUB_BUCKETS per power of two (SUB_BITS bits of mantissa).
SUB_BITS: Final[int] = 5
SUB_BUCKETS: Final[int] = 1 << SUB_BITS  # 32
LINEAR_LIMIT: Final[int] = SUB_BUCKETS * 2  # 64: the first value whose bucket is 2 wide
_SHIFT_BASE: Final[int] = SUB_BITS + 1  # e = bit_length - 6 keeps the top 6 bits (32..63)

MAX_BITS: Final[int] = 40
# The largest value the buckets cover; larger values are counted in the last bucket.
MAX_VALUE: Final[int] = (1 << MAX_BITS) - 1
N_BUCKETS: Final[int] = (MAX_BITS - _SHIFT_BASE) * SUB_BUCKETS + 2 * SUB_BUCKETS  # 1152
_LAST: Final[int] = N_BUCKETS - 1


def bucket_index(value: int) -> int:
    """The bucket holding ``value``: negatives go to 0, values above ``MAX_VALUE`` to the last.

    >>> [bucket_index(v) for v in (-3, 0, 63, 64, 65, 66, 127, 128, 2**40 - 1, 2**50)]
    [0, 0, 63, 64, 64, 65, 95, 96, 1151, 1151]
    """
    if value < LINEAR_LIMIT:
        return value if value > 0 else 0
    if value > MAX_VALUE:
        return _LAST
    e = value.bit_length() - _SHIFT_BASE
    return (e << SUB_BITS) + (value >> e)


def _check_index(index: int) -> None:
    if not 0 <= index < N_BUCKETS:
        raise ValueError(f"bucket index {index} out of range 0..{N_BUCKETS - 1}")


def bucket_lower(index: int) -> int:
    """The smallest value in bucket ``index`` (inclusive)."""
    _check_index(index)
    if index < LINEAR_LIMIT:
        return index
    e = (index >> SUB_BITS) - 1
    return (SUB_BUCKETS + (index & (SUB_BUCKETS - 1))) << e


def bucket_upper(index: int) -> int:
    """One past the largest value in bucket ``index`` (exclusive); 2**40 for the last bucket."""
    _check_index(index)
    if index < LINEAR_LIMIT:
        return index + 1
    e = (index >> SUB_BITS) - 1
    return (SUB_BUCKETS + (index & (SUB_BUCKETS - 1)) + 1) << e


def bucket_mid(index: int) -> float:
    """The midpoint of the integers in bucket ``index``: the value itself for width-1 buckets."""
    return (bucket_lower(index) + bucket_upper(index) - 1) / 2


class Histogram:
    """Counts of recorded values per bucket, plus their number, sum and maximum.

    ``counts`` is dense (``N_BUCKETS`` long) so that recording is one index computation, one list
    increment and a few integer operations. ``total`` and ``max`` use the value as given (only
    negatives become 0), even above ``MAX_VALUE``. ``take()`` returns the non-zero buckets since the
    previous ``take()`` and starts over: a worker calls it once per interval for its deltas (read
    ``count``, ``total`` and ``max`` first; they are reset too).

    >>> h = Histogram()
    >>> h.record(10); h.record(10); h.record(1_000)
    >>> h.sparse()
    {10: 2, 190: 1}
    >>> h.take(), h.count, h.total, h.max, h.sparse()
    ({10: 2, 190: 1}, 0, 0, 0, {})
    """

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * N_BUCKETS
        self.count: int = 0
        self.total: int = 0
        self.max: int = 0

    def record(self, value: int) -> None:
        """Count one observation of ``value`` (``bucket_index`` inlined: this is the hot path)."""
        if value < LINEAR_LIMIT:
            if value < 0:  # noqa: PLR1730 -- a compare is ~50 ns cheaper than calling max()
                value = 0
            index = value
        elif value <= MAX_VALUE:
            e = value.bit_length() - _SHIFT_BASE
            index = (e << SUB_BITS) + (value >> e)
        else:
            index = _LAST
        self.counts[index] += 1
        self.count += 1
        self.total += value
        if value > self.max:  # noqa: PLR1730 -- as above
            self.max = value

    def sparse(self) -> dict[int, int]:
        """The non-zero buckets as ``{index: count}``, in index order; nothing is reset."""
        return {i: c for i, c in enumerate(self.counts) if c}

    def take(self) -> dict[int, int]:
        """The non-zero buckets since the last ``take()``; then counts, count, total, max restart at 0."""
        out = self.sparse()
        counts = self.counts
        for i in out:  # zero in place: only the buckets that were used
            counts[i] = 0
        self.count = 0
        self.total = 0
        self.max = 0
        return out


def merge_into(dst: dict[int, int], src: Mapping[int, int]) -> None:
    """Add the sparse histogram ``src`` into ``dst``."""
    for i, c in src.items():
        dst[i] = dst.get(i, 0) + c


def total_count(counts: Mapping[int, int]) -> int:
    """The number of observations in a sparse histogram."""
    return sum(counts.values())


def _rank(q: float, n: int) -> int:
    """Nearest rank ``max(1, ceil(q / 100 * n))`` for ``q`` read as the decimal it prints as.

    Exact rational arithmetic: in floats ``99.9 / 100 * 1000`` is ``999.0000000000001``, whose
    ceiling would be rank 1000 instead of 999.
    """
    if not 0.0 <= q <= 100.0:  # also rejects NaN
        raise ValueError(f"percentile must be in [0, 100], got {q!r}")
    frac = Fraction(repr(float(q)))
    rank = -((-frac.numerator * n) // (frac.denominator * 100))
    return rank if rank > 1 else 1


def percentiles(counts: Mapping[int, int], qs: Sequence[float]) -> list[float]:
    """``percentile(counts, q)`` for each ``q`` in ``qs`` (any order), in one pass over the buckets.

    >>> percentiles({0: 1, 10: 2, 20: 1}, [100, 50, 0])
    [20.0, 10.0, 0.0]
    """
    n = total_count(counts)
    ranks = [_rank(q, n) for q in qs]  # validates every q, even for an empty histogram
    out = [0.0] * len(ranks)
    if n == 0 or not ranks:
        return out
    order = sorted(range(len(ranks)), key=ranks.__getitem__)  # positions of qs by rank
    k = 0  # the next position in ``order`` to resolve
    seen = 0  # observations in the buckets so far
    for i in sorted(counts):
        seen += counts[i]
        while ranks[order[k]] <= seen:
            out[order[k]] = bucket_mid(i)
            k += 1
            if k == len(order):  # every rank is <= n, so this is always reached
                return out
    return out


def percentile(counts: Mapping[int, int], q: float) -> float:
    """The ``q``-th percentile (0 <= q <= 100) of a sparse histogram, by nearest rank.

    The rank-th smallest observation, ``rank = max(1, ceil(q / 100 * n))``, estimated as the
    midpoint of its bucket: within 1/64 of the true value (exact below 64). An empty histogram
    gives 0.0; ``q`` outside [0, 100] raises ``ValueError``.

    >>> percentile({1: 1, 2: 1, 3: 1, 4: 1}, 50), percentile({1: 1, 2: 1, 3: 1, 4: 1}, 50.1)
    (2.0, 3.0)
    >>> percentile({}, 99)
    0.0
    """
    return percentiles(counts, (q,))[0]


def count_at_most(counts: Mapping[int, int], bound: int) -> int:
    """Observations in the buckets whose whole range is ``<= bound`` (a Prometheus ``le`` bucket).

    A lower bound on the number of observations ``<= bound``: it leaves out those in ``bound``'s own
    bucket unless ``bound`` is that bucket's last value, so it is short by at most the count of one
    bucket, and exact for ``bound < 64`` or ``bound == bucket_upper(i) - 1``. Values above
    ``MAX_VALUE`` are counted in the last bucket, which is included from ``bound >= MAX_VALUE`` on.

    >>> count_at_most({10: 1, 64: 2, 65: 4}, 64), count_at_most({10: 1, 64: 2, 65: 4}, 65)
    (1, 3)
    """
    if bound < 0:
        return 0
    if bound >= MAX_VALUE:
        limit = N_BUCKETS
    else:
        b = bucket_index(bound)
        limit = b + 1 if bucket_upper(b) - 1 == bound else b
    return sum(c for i, c in counts.items() if i < limit)
