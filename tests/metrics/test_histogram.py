"""Log-linear histogram: bucket layout, recording, take/merge, percentiles against exact ones."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.metrics import histogram as hmod
from pulsegate.metrics.histogram import (
    N_BUCKETS,
    Histogram,
    bucket_index,
    bucket_lower,
    bucket_mid,
    bucket_upper,
    count_at_most,
    merge_into,
    percentile,
    percentiles,
    total_count,
)

SETTINGS = settings(deadline=None, max_examples=60)
QS = (50, 90, 99, 99.9)
# The quantiles above as exact fractions of 100, for an independent nearest-rank reference.
Q_FRACTIONS = {50: Fraction(50), 90: Fraction(90), 99: Fraction(99), 99.9: Fraction(999, 10)}
ALL = range(N_BUCKETS)


def exact_percentile(values: Sequence[int], q: float) -> int:
    """Nearest rank on the sorted values: the ceil(q/100 * n)-th smallest (at least the first)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(Q_FRACTIONS[q] * len(ordered) / 100))
    return ordered[rank - 1]


def histogram_of(values: Sequence[int]) -> dict[int, int]:
    h = Histogram()
    for v in values:
        h.record(v)
    return h.take()


def lognormal_values(seed: int, n: int, mu: float, sigma: float) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.lognormvariate(mu, sigma)) for _ in range(n)]


values_lists = st.lists(
    st.one_of(st.integers(0, 63), st.integers(0, 10**4), st.integers(0, 10**9)), min_size=1, max_size=300
)


# --- bucket layout ------------------------------------------------------------------------------


def test_bucket_count_and_range() -> None:
    assert N_BUCKETS == 1152
    assert bucket_lower(0) == 0
    assert bucket_upper(N_BUCKETS - 1) == 2**40
    assert bucket_index(2**40 - 1) == N_BUCKETS - 1
    assert bucket_lower(N_BUCKETS - 1) == 63 << 34


def test_buckets_are_contiguous_and_round_trip() -> None:
    for i in ALL:
        lo, hi = bucket_lower(i), bucket_upper(i)
        assert lo < hi
        assert bucket_index(lo) == i
        assert bucket_index(hi - 1) == i
        if i + 1 < N_BUCKETS:
            assert hi == bucket_lower(i + 1)


def test_exact_below_64() -> None:
    for v in range(64):
        assert bucket_index(v) == v
        assert bucket_lower(v) == v
        assert bucket_upper(v) == v + 1
        assert bucket_mid(v) == float(v)
    assert bucket_index(64) == bucket_index(65) == 64
    assert bucket_upper(64) == 66
    assert [bucket_index(v) for v in (127, 128, 255, 256)] == [95, 96, 127, 128]


def test_relative_width_at_most_one_32nd() -> None:
    for i in range(64, N_BUCKETS):
        lo, hi = bucket_lower(i), bucket_upper(i)
        assert (hi - lo) * 32 <= lo
        mid = bucket_mid(i)
        assert lo <= mid <= hi - 1
        assert (mid - lo) * 64 <= lo  # the midpoint error bound for any value in the bucket


def test_clamping() -> None:
    last = N_BUCKETS - 1
    for v in (2**40, 2**40 + 1, 2**63, 10**30):
        assert bucket_index(v) == last
    for v in (-1, -64, -(10**30)):
        assert bucket_index(v) == 0


@given(st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15))
@SETTINGS
def test_bucket_index_is_monotonic(a: int, b: int) -> None:
    if a <= b:
        assert bucket_index(a) <= bucket_index(b)
    else:
        assert bucket_index(a) >= bucket_index(b)


@given(st.integers(0, 2**40 - 1))
@SETTINGS
def test_value_lies_in_its_bucket(v: int) -> None:
    i = bucket_index(v)
    assert bucket_lower(i) <= v < bucket_upper(i)
    assert abs(bucket_mid(i) - v) <= v / 64


@pytest.mark.parametrize("index", [-1, N_BUCKETS, N_BUCKETS + 10])
def test_bucket_bounds_reject_bad_index(index: int) -> None:
    for fn in (bucket_lower, bucket_upper, bucket_mid):
        with pytest.raises(ValueError, match="out of range"):
            fn(index)


# --- recording ----------------------------------------------------------------------------------


@given(st.lists(st.integers(-(10**3), 2**42), max_size=100))
@SETTINGS
def test_record_matches_bucket_index(values: list[int]) -> None:
    h = Histogram()
    for v in values:
        h.record(v)
    assert len(h.counts) == N_BUCKETS
    assert h.sparse() == dict(Counter(bucket_index(v) for v in values))
    clamped = [max(0, v) for v in values]
    assert h.count == len(values)
    assert h.total == sum(clamped)
    assert h.max == max(clamped, default=0)


def test_record_keeps_true_total_and_max_above_range() -> None:
    h = Histogram()
    h.record(-5)
    h.record(2**45)
    assert h.sparse() == {0: 1, N_BUCKETS - 1: 1}
    assert (h.count, h.total, h.max) == (2, 2**45, 2**45)


def test_take_returns_deltas_and_resets() -> None:
    h = Histogram()
    counts_list = h.counts
    for v in (1, 1, 100, 5000):
        h.record(v)
    first = h.take()
    assert first == {1: 2, bucket_index(100): 1, bucket_index(5000): 1}
    assert (h.count, h.total, h.max) == (0, 0, 0)
    assert h.counts is counts_list
    assert not any(h.counts)
    assert h.take() == {}
    h.record(100)
    assert h.sparse() == {bucket_index(100): 1}
    assert h.sparse() == {bucket_index(100): 1}  # sparse() does not reset
    assert (h.count, h.total, h.max) == (1, 100, 100)
    assert h.take() == {bucket_index(100): 1}


@given(values_lists, values_lists)
@SETTINGS
def test_merge_of_takes_equals_one_histogram(a: list[int], b: list[int]) -> None:
    h = Histogram()
    for v in a:
        h.record(v)
    first = h.take()
    for v in b:
        h.record(v)
    second = h.take()
    merged: dict[int, int] = {}
    merge_into(merged, first)
    merge_into(merged, second)
    assert merged == histogram_of(a + b)
    assert total_count(merged) == len(a) + len(b)


# --- percentiles --------------------------------------------------------------------------------


def check_percentiles(values: Sequence[int]) -> None:
    counts = histogram_of(values)
    estimates = percentiles(counts, QS)
    for q, estimate in zip(QS, estimates, strict=True):
        exact = exact_percentile(values, q)
        assert estimate == percentile(counts, q)
        if exact < 64:
            assert estimate == exact
        else:
            assert abs(estimate - exact) <= 0.02 * exact
            assert abs(estimate - exact) <= exact / 64


@given(values_lists)
@SETTINGS
def test_percentiles_within_two_percent(values: list[int]) -> None:
    check_percentiles(values)


@given(st.lists(st.integers(0, 63), min_size=1, max_size=300))
@SETTINGS
def test_percentiles_exact_below_64(values: list[int]) -> None:
    counts = histogram_of(values)
    for q in QS:
        assert percentile(counts, q) == exact_percentile(values, q)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 2000),
    st.floats(0.0, 12.0),
    st.floats(0.1, 2.5),
)
@settings(deadline=None, max_examples=30)
def test_percentiles_lognormal(seed: int, n: int, mu: float, sigma: float) -> None:
    check_percentiles(lognormal_values(seed, n, mu, sigma))


def test_percentiles_large_lognormal_sample() -> None:
    values = lognormal_values(1234, 20_000, math.log(2_000), 1.0)  # microseconds around 2 ms
    check_percentiles(values)


def test_nearest_rank_uses_the_decimal_quantile() -> None:
    # In floats 99.9 / 100 * 1000 == 999.0000000000001; the nearest rank is 999, not 1000.
    assert percentile(histogram_of([1] * 999 + [50]), 99.9) == 1.0
    assert percentile(histogram_of(list(range(1000))), 99.9) == bucket_mid(bucket_index(998))
    four = histogram_of([1, 2, 3, 4])
    assert [percentile(four, q) for q in (0, 25, 25.1, 50, 75, 75.5, 100)] == [1, 1, 2, 2, 3, 4, 4]


@given(values_lists, st.lists(st.floats(0.0, 100.0), max_size=8))
@SETTINGS
def test_percentiles_equals_percentile(values: list[int], qs: list[float]) -> None:
    counts = histogram_of(values)
    assert percentiles(counts, qs) == [percentile(counts, q) for q in qs]
    assert percentiles(counts, sorted(qs)) == sorted(percentiles(counts, qs))


def test_percentiles_ignores_key_order_and_zero_buckets() -> None:
    counts = {500: 1, 3: 2, 70: 0, 64: 1}
    assert percentiles(counts, [100, 0, 50, 75]) == [bucket_mid(500), 3.0, 3.0, 64.5]


def test_empty_histogram() -> None:
    assert percentile({}, 50) == 0.0
    assert percentiles({}, QS) == [0.0] * len(QS)
    assert percentiles({5: 1}, []) == []
    assert total_count({}) == 0
    assert count_at_most({}, 100) == 0
    h = Histogram()
    assert h.sparse() == {} and h.take() == {}
    assert (h.count, h.total, h.max) == (0, 0, 0)


@pytest.mark.parametrize("q", [-0.001, 100.0001, -1, 101, math.nan, math.inf, -math.inf])
def test_q_validation(q: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile({1: 1}, q)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile({}, q)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentiles({1: 1}, [50, q])


def test_q_bounds_accepted() -> None:
    counts = histogram_of([7, 9, 11])
    assert percentile(counts, 0) == 7.0
    assert percentile(counts, 100) == 11.0
    assert percentile(counts, 0.0) == 7.0
    assert percentile(counts, 100.0) == 11.0


# --- count_at_most ------------------------------------------------------------------------------


@given(values_lists, st.integers(-10, 10**9 + 10))
@SETTINGS
def test_count_at_most_is_a_lower_bound_within_one_bucket(values: list[int], bound: int) -> None:
    counts = histogram_of(values)
    got = count_at_most(counts, bound)
    true = sum(1 for v in values if v <= bound)
    assert got == sum(1 for v in values if bucket_upper(bucket_index(v)) - 1 <= bound)
    assert got <= true
    if bound >= 0:
        b = bucket_index(bound)
        assert true - got <= sum(1 for v in values if bucket_index(v) == b)
    if bound < 64:
        assert got == true


@given(values_lists, st.integers(0, N_BUCKETS - 1))
@SETTINGS
def test_count_at_most_exact_at_bucket_edges(values: list[int], index: int) -> None:
    bound = bucket_upper(index) - 1
    assert count_at_most(histogram_of(values), bound) == sum(1 for v in values if v <= bound)


def test_count_at_most_edges() -> None:
    counts = histogram_of([0, 63, 64, 65, 66, 2**40 - 1, 2**50])
    assert count_at_most(counts, -1) == 0
    assert count_at_most(counts, 0) == 1
    assert count_at_most(counts, 63) == 2
    assert count_at_most(counts, 64) == 2  # 64 and 65 share a bucket: not whole yet
    assert count_at_most(counts, 65) == 4
    assert count_at_most(counts, 66) == 4
    assert count_at_most(counts, 2**40 - 2) == 5
    assert count_at_most(counts, 2**40 - 1) == 7  # the last bucket, with the clamped value
    assert count_at_most(counts, 2**60) == 7


def test_module_constants_are_consistent() -> None:
    assert hmod.MAX_VALUE == 2**40 - 1
    assert bucket_index(hmod.MAX_VALUE) == N_BUCKETS - 1
