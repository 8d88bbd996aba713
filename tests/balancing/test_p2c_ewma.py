"""Power of two choices + EWMA: the better of two, weighted sampling, cold start, determinism."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.balancing import P2CEwmaBalancer, Target
from pulsegate.balancing.p2c_ewma import better, weighted_pair

SETTINGS = settings(derandomize=True, deadline=None, max_examples=100)


def make_targets(weights: Sequence[int]) -> list[Target]:
    return [Target(f"10.0.0.{i + 1}:80", weight=w) for i, w in enumerate(weights)]


def cost(t: Target) -> float:
    return t.ewma_us * (t.inflight + 1)


def wins_against(picked: Target, other: Target) -> bool:
    """``picked`` is at least as good as ``other`` by the documented rule (either order)."""
    return better(picked, other) is picked or better(other, picked) is picked


state = st.tuples(
    st.integers(1, 5),  # weight
    st.integers(0, 20),  # inflight
    st.sampled_from([0.0, 10.0, 100.0, 250.0, 1000.0, 5000.0]),  # ewma_us
    st.booleans(),  # available
)


@SETTINGS
@given(
    states=st.lists(state, min_size=1, max_size=12),
    seed=st.integers(0, 2**32),
    exclude_index=st.one_of(st.none(), st.integers(0, 11)),
)
def test_pick_beats_some_other_eligible_target(
    states: list[tuple[int, int, float, bool]], seed: int, exclude_index: int | None
) -> None:
    targets = make_targets([s[0] for s in states])
    for t, (_, inflight, ewma, up) in zip(targets, states, strict=True):
        t.inflight, t.ewma_us, t.available = inflight, ewma, up
    exclude = targets[exclude_index % len(targets)] if exclude_index is not None else None
    p2c = P2CEwmaBalancer(targets, rng=random.Random(seed))
    for _ in range(5):
        picked = p2c.pick(exclude=exclude)
        eligible = [t for t in targets if t.available and t is not exclude]
        if len(eligible) < 2:
            continue  # covered by the shared contract tests
        assert picked is not None and picked in eligible
        # It won its pair, so it is never worse than every other eligible target...
        assert any(wins_against(picked, t) for t in eligible if t is not picked)
        # ...and with two eligible targets the pair is forced: it is the better one.
        if len(eligible) == 2:
            a, b = eligible
            assert picked is better(a, b) or (wins_against(a, b) and wins_against(b, a))


@SETTINGS
@given(
    ewmas=st.tuples(st.floats(1.0, 1e6), st.floats(1.0, 1e6)),
    inflights=st.tuples(st.integers(0, 100), st.integers(0, 100)),
    seed=st.integers(0, 2**32),
)
def test_two_targets_always_the_cheaper(
    ewmas: tuple[float, float], inflights: tuple[int, int], seed: int
) -> None:
    a, b = make_targets([1, 1])
    (a.ewma_us, b.ewma_us), (a.inflight, b.inflight) = ewmas, inflights
    picked = P2CEwmaBalancer([a, b], rng=random.Random(seed)).pick()
    assert picked is not None
    other = b if picked is a else a
    assert cost(picked) <= cost(other)


def test_rank_distribution_uniform_weights() -> None:
    # With distinct costs, rank r (0 = cheapest) of N wins iff it is drawn with a worse target:
    # P = 2 (N - 1 - r) / (N (N - 1)).
    n = 10
    targets = make_targets([1] * n)
    for r, t in enumerate(targets):
        t.ewma_us = 100.0 * (r + 1)
    p2c = P2CEwmaBalancer(targets, rng=random.Random(42))
    picks = 40_000
    counts = Counter(id(p2c.pick()) for _ in range(picks))
    for r, t in enumerate(targets):
        expected = 2 * (n - 1 - r) / (n * (n - 1))
        assert abs(counts[id(t)] / picks - expected) < 0.01, r
    assert counts[id(targets[-1])] == 0  # the worst never wins a pair


def test_first_draw_is_weighted() -> None:
    # Equal costs: the first drawn target wins every tie, so picks follow the weights.
    weights = [1, 2, 3, 4]
    targets = make_targets(weights)
    for t in targets:
        t.ewma_us = 500.0
    p2c = P2CEwmaBalancer(targets, rng=random.Random(3))
    picks = 40_000
    counts = Counter(id(p2c.pick()) for _ in range(picks))
    for t, w in zip(targets, weights, strict=True):
        assert abs(counts[id(t)] / picks - w / sum(weights)) < 0.01


@SETTINGS
@given(weights=st.lists(st.integers(1, 9), min_size=2, max_size=8), seed=st.integers(0, 2**32))
def test_weighted_pair_is_distinct(weights: list[int], seed: int) -> None:
    rnd = random.Random(seed).random
    for _ in range(50):
        i, j = weighted_pair(weights, rnd)
        assert i != j and 0 <= i < len(weights) and 0 <= j < len(weights)


def test_weighted_pair_second_draw_excludes_first() -> None:
    rnd = random.Random(9).random
    counts: Counter[tuple[int, int]] = Counter(weighted_pair([1, 1, 2], rnd) for _ in range(40_000))
    # P(i, j) = w_i / W * w_j / (W - w_i); W = 4.
    expected = {(0, 1): 1 / 12, (0, 2): 2 / 12, (1, 0): 1 / 12, (1, 2): 2 / 12, (2, 0): 1 / 4, (2, 1): 1 / 4}
    for pair, p in expected.items():
        assert abs(counts[pair] / 40_000 - p) < 0.01
    assert set(counts) == set(expected)


@pytest.mark.parametrize(
    ("a_state", "b_state", "winner"),
    [
        ((100.0, 0), (200.0, 0), "a"),
        ((100.0, 3), (200.0, 0), "b"),  # 400 > 200
        ((100.0, 1), (200.0, 0), "a"),  # 200 == 200: a on ties
        ((0.0, 0), (1.0, 0), "a"),  # unobserved and idle: tried
        ((1.0, 0), (0.0, 0), "b"),  # unobserved and idle: tried, whatever the order
        ((0.0, 0), (1.0, 5), "a"),
        ((0.0, 3), (1000.0, 1), "b"),  # unobserved but busier: no stampede onto it
        ((0.0, 1), (0.0, 2), "a"),  # both unobserved: fewer inflight
        ((0.0, 2), (0.0, 2), "a"),
    ],
)
def test_better_rule(a_state: tuple[float, int], b_state: tuple[float, int], winner: str) -> None:
    a, b = make_targets([1, 1])
    a.ewma_us, a.inflight = a_state
    b.ewma_us, b.inflight = b_state
    assert better(a, b) is (a if winner == "a" else b)


def test_new_target_warms_up() -> None:
    targets = make_targets([1, 1, 1, 1])
    for t in targets[:3]:
        t.ewma_us = 800.0
    new = targets[3]
    p2c = P2CEwmaBalancer(targets, rng=random.Random(11))
    picks = [p2c.pick() for _ in range(200)]
    # Idle and unobserved, it wins every pair it is drawn into: half of all pairs.
    assert 0.4 < picks.count(new) / 200 < 0.6


def test_degraded_pools() -> None:
    small = make_targets([1, 1, 1])
    small[0].available = False
    small[1].ewma_us, small[2].ewma_us = 300.0, 100.0
    p2c = P2CEwmaBalancer(small, rng=random.Random(0))
    assert {id(p2c.pick()) for _ in range(50)} == {id(small[2])}
    assert p2c.pick(exclude=small[2]) is small[1]

    big = make_targets([1, 2] * 10)
    for i, t in enumerate(big):
        t.ewma_us = 100.0 + i
        t.available = i in (5, 12, 17)
    p2c = P2CEwmaBalancer(big, rng=random.Random(1))
    picks = Counter(id(p2c.pick()) for _ in range(300))
    assert set(picks) <= {id(big[5]), id(big[12])}  # 17 is the worst of the three
    assert picks[id(big[5])] > picks[id(big[12])] > 0


def test_seeded_rng_is_deterministic() -> None:
    def run(seed: int) -> list[str]:
        p2c = P2CEwmaBalancer(make_targets([1, 3, 2, 5, 1]), rng=random.Random(seed))
        return [t.address if t else "-" for t in (p2c.pick() for _ in range(100))]

    assert run(5) == run(5)
    assert run(5) != run(6)
