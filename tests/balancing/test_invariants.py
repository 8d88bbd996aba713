"""Contract shared by every balancer: availability, ``exclude`` and ``None``, under random churn."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.balancing import (
    BALANCER_KINDS,
    Balancer,
    ConsistentHashBalancer,
    LeastConnBalancer,
    P2CEwmaBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    Target,
    make_balancer,
)

SETTINGS = settings(derandomize=True, deadline=None, max_examples=60)

# One step of churn: pick (with an exclude choice and a key), flip availability, or change load.
pick_op = st.tuples(
    st.just("pick"),
    st.one_of(st.none(), st.integers(0, 9), st.just(-1)),  # index of exclude; -1 = foreign target
    st.one_of(st.none(), st.binary(max_size=8)),
)
flip_op = st.tuples(st.just("flip"), st.integers(0, 9), st.booleans())
load_op = st.tuples(
    st.just("load"), st.integers(0, 9), st.integers(0, 20), st.sampled_from([0.0, 50.0, 900.0])
)
ops_strategy = st.lists(st.one_of(pick_op, pick_op, flip_op, load_op), max_size=60)


def make_targets(weights: Sequence[int]) -> list[Target]:
    return [Target(f"10.0.0.{i + 1}:80", weight=w) for i, w in enumerate(weights)]


def check_pick(
    balancer: Balancer, targets: list[Target], exclude: Target | None, key: bytes | None
) -> Target | None:
    picked = balancer.pick(key, exclude)
    available = [t for t in targets if t.available]
    others = [t for t in available if t is not exclude]
    if not available:
        assert picked is None
    elif others:
        assert picked is not None
        assert any(picked is t for t in others), "must pick an available target other than exclude"
    else:
        # ``exclude`` is the only available target: our documented choice is to return it.
        assert picked is exclude
    return picked


@pytest.mark.parametrize("kind", BALANCER_KINDS)
@SETTINGS
@given(weights=st.lists(st.integers(1, 6), max_size=10), ops=ops_strategy)
def test_contract_under_churn(kind: str, weights: list[int], ops: list[tuple[object, ...]]) -> None:
    targets = make_targets(weights)
    foreign = Target("192.0.2.1:80")
    balancer: Balancer
    if kind == "consistent_hash":
        # A small table: same code paths, a 30x faster build per example.
        balancer = ConsistentHashBalancer(targets, size=1009)
    else:
        balancer = make_balancer(kind, targets, rng=random.Random(1234))
    assert tuple(balancer.targets) == tuple(targets)
    for op in ops:
        if op[0] == "pick":
            _, ex, key = op
            exclude = None
            if ex == -1:
                exclude = foreign
            elif isinstance(ex, int) and targets:
                exclude = targets[ex % len(targets)]
            assert key is None or isinstance(key, bytes)
            check_pick(balancer, targets, exclude, key)
        elif targets:
            index = op[1]
            assert isinstance(index, int)
            t = targets[index % len(targets)]
            if op[0] == "flip":
                assert isinstance(op[2], bool)
                t.available = op[2]
            else:
                inflight, ewma = op[2], op[3]
                assert isinstance(inflight, int) and isinstance(ewma, float)
                t.inflight, t.ewma_us = inflight, ewma


@pytest.mark.parametrize("kind", BALANCER_KINDS)
def test_empty_and_all_down(kind: str) -> None:
    assert make_balancer(kind, []).pick() is None
    assert make_balancer(kind, []).pick(b"k", Target("a:1")) is None
    targets = make_targets([1, 2, 3])
    for t in targets:
        t.available = False
    b = make_balancer(kind, targets, rng=random.Random(0))
    assert all(b.pick(k) is None for k in (None, b"user-1", b""))
    assert b.pick(b"k", exclude=targets[0]) is None


@pytest.mark.parametrize("kind", BALANCER_KINDS)
def test_single_target(kind: str) -> None:
    (t,) = make_targets([4])
    b = make_balancer(kind, [t], rng=random.Random(0))
    assert [b.pick(k) for k in (None, b"x")] == [t, t]
    assert b.pick(b"x", exclude=t) is t  # the only available target is returned, not None
    t.available = False
    assert b.pick(b"x") is None
    assert b.pick(b"x", exclude=t) is None


@pytest.mark.parametrize("kind", BALANCER_KINDS)
def test_foreign_exclude_is_never_returned(kind: str) -> None:
    targets = make_targets([1, 1])
    foreign = Target("192.0.2.1:80")
    for t in targets:
        t.available = False
    b = make_balancer(kind, targets, rng=random.Random(0))
    assert b.pick(b"k", exclude=foreign) is None


@pytest.mark.parametrize("kind", BALANCER_KINDS)
def test_exclude_spreads_retries(kind: str) -> None:
    # A retry never goes back to the failed target while others are up.
    targets = make_targets([3, 1, 2, 1])
    b = make_balancer(kind, targets, rng=random.Random(5))
    for i in range(200):
        first = b.pick(f"k{i}".encode())
        assert first is not None
        second = b.pick(f"k{i}".encode(), exclude=first)
        assert second is not None and second is not first


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("round_robin", RoundRobinBalancer),
        ("least_conn", LeastConnBalancer),
        ("p2c_ewma", P2CEwmaBalancer),
        ("consistent_hash", ConsistentHashBalancer),
        ("random", RandomBalancer),
    ],
)
def test_factory_kinds(kind: str, cls: type) -> None:
    assert isinstance(make_balancer(kind, make_targets([1])), cls)


@pytest.mark.parametrize("kind", ["", "roundrobin", "Round_Robin", "least-conn", "p2c", "hash"])
def test_factory_rejects_unknown(kind: str) -> None:
    with pytest.raises(ValueError, match="unknown balancer"):
        make_balancer(kind, make_targets([1]))


def test_kinds_listed() -> None:
    assert BALANCER_KINDS == ("round_robin", "least_conn", "p2c_ewma", "consistent_hash", "random")
