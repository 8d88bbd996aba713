"""Weighted random: proportional to weight among eligible targets, deterministic with a seed."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.balancing import RandomBalancer, Target

SETTINGS = settings(derandomize=True, deadline=None, max_examples=40)


def make_targets(weights: Sequence[int]) -> list[Target]:
    return [Target(f"10.0.0.{i + 1}:80", weight=w) for i, w in enumerate(weights)]


def chi_square(observed: Sequence[int], expected: Sequence[float]) -> float:
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))


# 99.9th percentile of the chi-square distribution by degrees of freedom (1..11).
CHI2_999 = [10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26]


@SETTINGS
@given(
    weights=st.lists(st.integers(1, 8), min_size=2, max_size=12),
    down=st.sets(st.integers(0, 11)),
    exclude_index=st.one_of(st.none(), st.integers(0, 11)),
    seed=st.integers(0, 2**32),
)
def test_distribution_follows_weights(
    weights: list[int], down: set[int], exclude_index: int | None, seed: int
) -> None:
    targets = make_targets(weights)
    for i in down:
        if i < len(targets):
            targets[i].available = False
    exclude = targets[exclude_index % len(targets)] if exclude_index is not None else None
    eligible = [t for t in targets if t.available and t is not exclude]
    if len(eligible) < 2:
        return
    rb = RandomBalancer(targets, rng=random.Random(seed))
    picks = 4000
    counts = Counter(id(rb.pick(exclude=exclude)) for _ in range(picks))
    assert set(counts) <= {id(t) for t in eligible}
    total = sum(t.weight for t in eligible)
    observed = [counts[id(t)] for t in eligible]
    expected = [picks * t.weight / total for t in eligible]
    # Seeded and derandomized, so this is deterministic; the bound is the 99.9% quantile.
    assert chi_square(observed, expected) < CHI2_999[len(eligible) - 2]


def test_uniform_shares() -> None:
    targets = make_targets([1] * 5)
    rb = RandomBalancer(targets, rng=random.Random(2024))
    counts = Counter(id(rb.pick()) for _ in range(50_000))
    assert all(abs(counts[id(t)] / 50_000 - 0.2) < 0.01 for t in targets)


def test_weighted_shares_with_most_targets_down() -> None:
    targets = make_targets([1, 3, 1, 1, 1, 1, 1, 1, 1, 6])
    for t in targets[2:9]:
        t.available = False
    rb = RandomBalancer(targets, rng=random.Random(7))
    counts = Counter(id(rb.pick()) for _ in range(20_000))
    shares = [counts[id(t)] / 20_000 for t in (targets[0], targets[1], targets[9])]
    assert [round(s, 1) for s in shares] == [0.1, 0.3, 0.6]


def test_seeded_rng_is_deterministic() -> None:
    def run(seed: int) -> list[str]:
        rb = RandomBalancer(make_targets([2, 1, 4]), rng=random.Random(seed))
        return [t.address if t else "-" for t in (rb.pick() for _ in range(50))]

    assert run(1) == run(1)
    assert run(1) != run(2)
