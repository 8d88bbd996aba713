"""Least connections: always a minimum of inflight / weight, ties taken in turn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.balancing import LeastConnBalancer, Target
from pulsegate.balancing import least_conn as lc_module

SETTINGS = settings(derandomize=True, deadline=None, max_examples=100)


def make_targets(weights: Sequence[int]) -> list[Target]:
    return [Target(f"{chr(ord('a') + i)}.test:80", weight=w) for i, w in enumerate(weights)]


def ratio(t: Target) -> Fraction:
    return Fraction(t.inflight, t.weight)


target_state = st.tuples(st.integers(1, 8), st.integers(0, 30), st.booleans())


@SETTINGS
@given(
    states=st.lists(target_state, min_size=1, max_size=12),
    exclude_index=st.one_of(st.none(), st.integers(0, 11)),
    rounds=st.integers(1, 12),
)
def test_picks_a_minimum(states: list[tuple[int, int, bool]], exclude_index: int | None, rounds: int) -> None:
    targets = make_targets([w for w, _, _ in states])
    for t, (_, inflight, up) in zip(targets, states, strict=True):
        t.inflight, t.available = inflight, up
    exclude = targets[exclude_index % len(targets)] if exclude_index is not None else None
    lc = LeastConnBalancer(targets)
    for _ in range(rounds):
        picked = lc.pick(exclude=exclude)
        eligible = [t for t in targets if t.available and t is not exclude]
        if not eligible:
            assert picked is (exclude if exclude is not None and exclude.available else None)
            continue
        assert picked is not None and picked in eligible
        assert ratio(picked) == min(ratio(t) for t in eligible)
        picked.inflight += 1  # what the proxy does; the next pick must see it


@SETTINGS
@given(n=st.integers(1, 80), weight=st.integers(1, 5), inflight=st.integers(0, 3))
def test_ties_take_turns(n: int, weight: int, inflight: int) -> None:
    # Static load (the proxy never increments): every tied target still gets an equal share.
    targets = make_targets([weight] * n)
    for t in targets:
        t.inflight = inflight
    lc = LeastConnBalancer(targets)
    picks = [lc.pick() for _ in range(3 * n)]
    assert Counter(id(t) for t in picks) == Counter(id(t) for t in targets * 3)


def test_tied_subset_alternates() -> None:
    a, b, c, d = make_targets([1, 1, 1, 1])
    a.inflight, b.inflight, c.inflight, d.inflight = 5, 1, 1, 9
    lc = LeastConnBalancer([a, b, c, d])
    assert [lc.pick() for _ in range(4)] == [b, c, b, c]


@pytest.mark.parametrize(
    ("weights", "inflight", "expected"),
    [
        ([1, 1, 1], [3, 0, 2], "b"),
        ([1, 2], [1, 1], "b"),  # 1/1 > 1/2
        ([1, 3], [1, 2], "b"),  # 1/1 > 2/3
        ([2, 3], [2, 4], "a"),  # 2/2 < 4/3
        ([49, 1], [49, 1], "a"),  # 49/49 == 1/1: a tie, a comes first in the scan
        ([3, 1, 3], [1, 0, 1], "b"),
        ([5, 5], [0, 0], "a"),
    ],
)
def test_examples(weights: list[int], inflight: list[int], expected: str) -> None:
    targets = make_targets(weights)
    for t, i in zip(targets, inflight, strict=True):
        t.inflight = i
    picked = LeastConnBalancer(targets).pick()
    assert picked is not None and picked.address[0] == expected


def test_down_target_with_zero_inflight_is_skipped() -> None:
    a, b, c = make_targets([1, 1, 1])
    a.inflight, b.inflight, c.inflight = 4, 0, 2
    b.available = False  # an unavailable target gets no traffic, so its inflight drops to 0
    lc = LeastConnBalancer([a, b, c])
    assert [lc.pick(), lc.pick()] == [c, c]
    assert lc.pick(exclude=c) is a


def test_large_pools_without_precomputed_rotations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lc_module, "MAX_PRECOMPUTED_ROTATIONS", 4)
    targets = make_targets([1] * 10)
    for i, t in enumerate(targets):
        t.inflight = 1 + i % 3
    lc = LeastConnBalancer(targets)
    picks = [lc.pick() for _ in range(8)]
    assert all(p is not None and p.inflight == 1 for p in picks)
    assert len({id(p) for p in picks}) == 4  # the four targets with inflight 1, in turn
