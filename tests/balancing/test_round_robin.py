"""Smooth weighted round robin: nginx's sequence, exact counts, interleaving, degraded mode."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsegate.balancing import RoundRobinBalancer, Target
from pulsegate.balancing import round_robin as rr_module
from pulsegate.balancing.round_robin import swrr_sequence

SETTINGS = settings(derandomize=True, deadline=None, max_examples=80)


class NginxReference:
    """A literal transcription of ngx_http_upstream_get_peer (current_weight part only)."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self.current = [0] * len(self.targets)

    def pick(self, exclude: Target | None = None) -> Target | None:
        best = -1
        total = 0
        for i, t in enumerate(self.targets):
            if not t.available or t is exclude:
                continue
            self.current[i] += t.weight
            total += t.weight
            if best < 0 or self.current[i] > self.current[best]:
                best = i
        if best < 0:
            return None
        self.current[best] -= total
        return self.targets[best]


def make_targets(weights: Sequence[int]) -> list[Target]:
    return [Target(f"{chr(ord('a') + i)}.test:80", weight=w) for i, w in enumerate(weights)]


def letters(picks: Sequence[Target | None]) -> str:
    return "".join(t.address[0] if t is not None else "-" for t in picks)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([1], "aaa"),
        ([1, 1, 1], "abcabcabc"),
        ([2, 2, 2], "abcabc"),  # gcd-normalised: same as equal weights
        ([5, 1, 1], "aabacaa" * 2),  # nginx's documented example
        ([2, 1], "aba" * 2),
        ([3, 2, 1], "abacba" * 2),
        ([1, 2, 3], "cbacbc" * 2),
        ([4, 2], "aba" * 2),  # normalised to 2:1
    ],
)
def test_known_sequences(weights: list[int], expected: str) -> None:
    rr = RoundRobinBalancer(make_targets(weights))
    assert letters([rr.pick() for _ in expected]) == expected


@SETTINGS
@given(st.lists(st.integers(1, 12), min_size=1, max_size=9))
def test_matches_nginx_and_exact_counts(weights: list[int]) -> None:
    targets = make_targets(weights)
    rr = RoundRobinBalancer(targets)
    ref = NginxReference(targets)
    total = sum(weights)
    picks = [rr.pick() for _ in range(3 * total)]
    assert picks == [ref.pick() for _ in range(3 * total)]
    # Every window of sum(weights) consecutive picks holds each target exactly weight times.
    for start in range(0, 2 * total + 1, max(1, total // 7)):
        counts = Counter(id(t) for t in picks[start : start + total])
        assert [counts[id(t)] for t in targets] == weights


def max_prefix_deviation(sequence: Sequence[int], weights: Sequence[int]) -> float:
    """Largest |count_i(k) - k * w_i / W| over every prefix k and target i, in picks."""
    total = sum(weights)
    counts = [0] * len(weights)
    worst = 0
    for k, i in enumerate(sequence, 1):
        counts[i] += 1
        worst = max(worst, *(abs(c * total - k * w) for c, w in zip(counts, weights, strict=True)))
    return worst / total


@SETTINGS
@given(st.lists(st.integers(1, 12), min_size=1, max_size=9))
def test_interleaving_is_smooth(weights: list[int]) -> None:
    # Smoothness: after every prefix of k picks each target's count stays close to its ideal
    # share k * w / W. nginx's SWRR stays within 1.2 picks over this whole input space (searched
    # offline); 2 leaves margin and still rejects a plain weighted round robin (next test).
    targets = make_targets(weights)
    rr = RoundRobinBalancer(targets)
    picks = [rr.pick() for _ in range(2 * sum(weights))]
    sequence = [targets.index(t) for t in picks if t is not None]
    assert max_prefix_deviation(sequence, weights) < 2


def test_plain_weighted_round_robin_fails_the_smoothness_check() -> None:
    weights = [6, 6, 1]
    plain = [0] * 6 + [1] * 6 + [2]  # a a a a a a b b b b b b c
    assert max_prefix_deviation(plain, weights) > 2
    assert max_prefix_deviation(swrr_sequence(weights, 13), weights) < 2


def test_swrr_sequence_helper() -> None:
    assert swrr_sequence([5, 1, 1], 7) == [0, 0, 1, 0, 2, 0, 0]
    assert swrr_sequence([1, 1], 4) == [0, 1, 0, 1]


def test_equal_weights_skip_unavailable_evenly() -> None:
    targets = make_targets([1, 1, 1, 1])
    rr = RoundRobinBalancer(targets)
    targets[1].available = False
    assert letters([rr.pick() for _ in range(6)]) == "acdacd"
    targets[1].available = True
    assert letters([rr.pick() for _ in range(4)]) == "abcd"


def test_degraded_mode_is_nginx_from_the_detection_point() -> None:
    targets = make_targets([5, 1, 1])
    rr = RoundRobinBalancer(targets)
    assert letters([rr.pick() for _ in range(3)]) == "aab"
    targets[2].available = False  # c's turn is at position 4: detected there, not before
    assert letters([rr.pick()]) == "a"
    # nginx at the same point: state after 4 picks from zero, continuing without c.
    ref = NginxReference(targets)
    targets[2].available = True
    for _ in range(4):
        ref.pick()
    targets[2].available = False
    assert [rr.pick() for _ in range(30)] == [ref.pick() for _ in range(30)]


def test_recovery_returns_to_exact_schedule() -> None:
    targets = make_targets([4, 2, 1])
    rr = RoundRobinBalancer(targets)
    targets[0].available = False
    # a is first in the schedule: detected at once, nginx continues from zero without it.
    assert letters([rr.pick() for _ in range(9)]) == "bcb" * 3
    targets[0].available = True
    rr.pick()  # the dynamic pick that sees everyone up switches back to the schedule
    picks = [rr.pick() for _ in range(7 * 3)]
    for start in range(0, 14):
        window = letters(picks[start : start + 7])
        assert (window.count("a"), window.count("b"), window.count("c")) == (4, 2, 1)


@SETTINGS
@given(
    weights=st.lists(st.integers(1, 6), min_size=2, max_size=7),
    down=st.sets(st.integers(0, 6), min_size=1),
    warmup=st.integers(0, 30),
)
def test_degraded_shares_follow_weights(weights: list[int], down: set[int], warmup: int) -> None:
    targets = make_targets(weights)
    rr = RoundRobinBalancer(targets)
    for _ in range(warmup):
        rr.pick()
    for i in down:
        if i < len(targets):
            targets[i].available = False
    up = [t for t in targets if t.available]
    if not up:
        assert rr.pick() is None
        return
    up_total = sum(t.weight for t in up)
    rounds = 20
    picks = [rr.pick() for _ in range(rounds * up_total + sum(weights))]
    picks = picks[sum(weights) :]  # let the static mode reach the first down target's turn
    counts = Counter(id(t) for t in picks)
    for t in up:
        # nginx's current weights stay within about one total of zero, so over K picks each
        # target is off its share by at most a couple of picks (plus the entry state).
        slack = 2 + sum(weights) / up_total
        assert abs(counts[id(t)] - rounds * t.weight) <= slack


def test_exclude_in_static_mode_costs_the_excluded_a_turn() -> None:
    targets = make_targets([2, 1])
    rr = RoundRobinBalancer(targets)
    a, b = targets
    assert rr.pick() is a  # schedule: a b a | a b a ...
    assert rr.pick(exclude=a) is b
    assert rr.pick(exclude=b) is a
    assert letters([rr.pick() for _ in range(6)]) == "abaaba"


def test_exclude_in_dynamic_mode_is_skipped_like_nginx_tried_peers() -> None:
    targets = make_targets([3, 2, 1, 1])
    targets[0].available = False  # first in the schedule: the dynamic mode starts from zero
    rr = RoundRobinBalancer(targets)
    ref = NginxReference(targets)
    for i in range(60):
        exclude = targets[1 + i % 3] if i % 4 == 0 else None
        got = rr.pick(exclude=exclude)
        assert got is ref.pick(exclude=exclude)
        assert got is not None and got is not exclude


def test_huge_weights_use_nginx_loop_without_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rr_module, "MAX_SCHEDULE", 8)
    targets = make_targets([7, 5, 3])
    rr = RoundRobinBalancer(targets)
    ref = NginxReference(targets)
    assert [rr.pick() for _ in range(45)] == [ref.pick() for _ in range(45)]
    targets[1].available = False
    assert [rr.pick() for _ in range(20)] == [ref.pick() for _ in range(20)]
