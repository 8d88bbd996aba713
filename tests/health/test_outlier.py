"""Passive outlier ejection (:mod:`pulsegate.health.outlier`), driven with explicit loop times."""

from __future__ import annotations

import doctest

import pytest

import pulsegate.health.outlier as outlier_module
from pulsegate.balancing.target import Target
from pulsegate.config.resilience import OutlierConfig
from pulsegate.health.outlier import OutlierDetector

Change = tuple[str, str, str, str]


def detector(
    n: int = 2, changes: list[Change] | None = None, **cfg: object
) -> tuple[OutlierDetector, list[Target]]:
    targets = [Target(f"10.0.0.{i + 1}:80") for i in range(n)]

    def on_change(kind: str, upstream: str, target: Target, reason: str) -> None:
        if changes is not None:
            changes.append((kind, upstream, target.address, reason))

    return OutlierDetector("api", OutlierConfig.model_validate(cfg), targets, on_change), targets


def test_docstring_examples() -> None:
    assert doctest.testmod(outlier_module).failed == 0


def test_consecutive_gateway_failures_eject_with_reason_and_event() -> None:
    changes: list[Change] = []
    det, (a, b) = detector(changes=changes, consecutive_failures=3, base_ejection_time=10)
    for now in (1.0, 2.0):
        det.failure(a, now, gateway=True)
    assert a.available and changes == []
    det.failure(a, 3.0, gateway=True)
    assert not a.available and b.available
    assert (a.ejected_until, a.eject_reason, a.ejections) == (13.0, "3 consecutive failures", 1)
    assert changes == [("ejected", "api", "10.0.0.1:80", "3 consecutive failures")]
    assert (a.failures, a.errors) == (0, 0)  # counting starts over after an ejection
    assert det.ejected == [a]


def test_5xx_answers_and_gateway_failures_both_count_as_errors() -> None:
    det, (a, _) = detector(consecutive_5xx=3, consecutive_failures=5)
    det.failure(a, 1.0, gateway=False)  # a 503 answer
    det.failure(a, 1.0, gateway=True)  # a reset
    assert a.available and (a.errors, a.failures) == (2, 1)
    det.failure(a, 1.0, gateway=False)
    assert not a.available and a.eject_reason == "3 consecutive errors"


def test_5xx_answers_alone_never_trip_the_failure_detector() -> None:
    det, (a, _) = detector(consecutive_5xx=0, consecutive_failures=2)
    for _ in range(10):
        det.failure(a, 1.0, gateway=False)
    assert a.available  # consecutive_5xx: 0 turns the 5xx detector off
    det.failure(a, 1.0, gateway=True)
    det.failure(a, 1.0, gateway=True)
    assert not a.available and a.eject_reason == "2 consecutive failures"


def test_failure_detector_off_leaves_the_error_detector() -> None:
    det, (a, _) = detector(consecutive_5xx=4, consecutive_failures=0)
    for _ in range(3):
        det.failure(a, 1.0, gateway=True)
    assert a.available
    det.failure(a, 1.0, gateway=True)
    assert not a.available and a.eject_reason == "4 consecutive errors"


def test_disabled_detector_never_ejects() -> None:
    det, (a, _) = detector(enabled=False, consecutive_failures=1, consecutive_5xx=1)
    for _ in range(5):
        det.failure(a, 1.0, gateway=True)
    assert a.available and det.ejected == []


@pytest.mark.parametrize(
    ("n", "percent", "limit"),
    [(2, 50, 1), (3, 50, 1), (4, 50, 2), (2, 1, 1), (10, 30, 3), (2, 100, 2), (5, "100%", 5)],
)
def test_max_ejected_percent_bounds_ejections_but_allows_one(n: int, percent: object, limit: int) -> None:
    det, targets = detector(n, consecutive_failures=1, max_ejected_percent=percent)
    for t in targets:
        det.failure(t, 1.0, gateway=True)
    ejected = [t for t in targets if not t.available]
    assert len(ejected) == limit == len(det.ejected)
    # The ones kept in rotation keep counting and are ejected as soon as there is room.
    kept = [t for t in targets if t.available]
    if kept:
        det.readmit(ejected[0], 2.0, "test")
        det.failure(kept[0], 2.0, gateway=True)
        assert not kept[0].available


def test_max_ejected_percent_zero_still_allows_one_ejection() -> None:
    """docs/config.md: always at least one may be ejected (``outlier: off`` turns ejection off)."""
    det, (a, b) = detector(consecutive_failures=1, max_ejected_percent=0)
    det.failure(a, 1.0, gateway=True)
    det.failure(b, 1.0, gateway=True)
    assert not a.available and b.available


def test_ejection_time_grows_with_the_streak_and_is_capped() -> None:
    det, (a, _) = detector(consecutive_failures=1, base_ejection_time=10, max_ejection_time=25)
    durations = []
    now = 0.0
    for _ in range(4):
        det.failure(a, now, gateway=True)
        durations.append(a.ejected_until - now)
        now = a.ejected_until
        det.sweep(now)  # readmitted exactly when the time is over
        assert a.available
    assert durations == [10.0, 20.0, 25.0, 25.0]


def test_streak_decays_while_the_target_behaves() -> None:
    det, (a, _) = detector(consecutive_failures=1, base_ejection_time=10, max_ejection_time=300)
    det.failure(a, 0.0, gateway=True)
    det.sweep(10.0)
    det.failure(a, 10.5, gateway=True)  # straight back: 2nd in a row
    assert a.ejected_until == 10.5 + 20
    det.sweep(30.5)
    # 25 s in rotation = two base periods: the streak of 2 drops to 0, so this is a first ejection.
    det.failure(a, 55.5, gateway=True)
    assert (a.ejections, a.ejected_until) == (1, 65.5)


def test_sweep_readmits_only_expired_ejections() -> None:
    changes: list[Change] = []
    det, (a, b, c, d) = detector(4, changes, consecutive_failures=1, base_ejection_time=10)
    det.failure(a, 0.0, gateway=True)
    det.failure(b, 5.0, gateway=True)
    changes.clear()
    det.sweep(9.99)
    assert not a.available and not b.available
    det.sweep(10.0)
    assert a.available and not b.available and a.eject_reason == ""
    assert changes == [("readmitted", "api", a.address, "ejection time over")]
    det.sweep(15.0)
    assert b.available and det.ejected == []
    assert c.available and d.available


def test_readmit_of_a_target_in_rotation_is_a_no_op() -> None:
    changes: list[Change] = []
    det, (a, _) = detector(changes=changes)
    det.readmit(a, 1.0, "health check passed")
    assert changes == [] and a.readmitted_at == 0.0


def test_an_unhealthy_target_stays_unavailable_after_readmission() -> None:
    det, (a, _) = detector(consecutive_failures=1, base_ejection_time=1)
    det.failure(a, 0.0, gateway=True)
    a.healthy = False  # the active checks failed it meanwhile
    a.refresh()
    det.sweep(2.0)
    assert a.ejected_until == 0.0 and not a.available


def test_explicit_eject_refuses_a_second_ejection_and_the_limit() -> None:
    det, (a, b) = detector(base_ejection_time=5)
    assert det.eject(a, 1.0, "manual")
    assert not det.eject(a, 2.0, "again")  # already out: the first ejection stands
    assert a.ejected_until == 6.0
    assert not det.eject(b, 2.0, "limit")  # 50 % of 2 targets is 1
    assert b.available


def test_targets_already_ejected_are_adopted() -> None:
    """A reload builds a new detector over carried-over targets: their ejection still counts."""
    a, b = Target("10.0.0.1:80"), Target("10.0.0.2:80")
    a.ejected_until = 50.0
    a.refresh()
    det = OutlierDetector("api", OutlierConfig(consecutive_failures=1), [a, b])
    det.failure(b, 1.0, gateway=True)
    assert b.available  # the limit (1 of 2) is taken by a
    det.sweep(50.0)
    assert a.available and det.ejected == []


def test_failures_while_ejected_do_not_count_towards_the_next_ejection() -> None:
    det, (a, _) = detector(consecutive_5xx=5, consecutive_failures=0, base_ejection_time=10)
    for _ in range(5):
        det.failure(a, 1.0, gateway=False)
    assert not a.available
    for _ in range(4):  # answers to requests sent before the ejection
        det.failure(a, 2.0, gateway=False)
    assert a.errors == 0
    det.sweep(11.0)
    det.failure(a, 12.0, gateway=False)
    assert a.available and a.errors == 1  # one error after readmission is not five


def test_an_answer_breaks_the_gateway_failure_streak() -> None:
    det, (a, _) = detector(consecutive_failures=2, consecutive_5xx=0)
    det.failure(a, 1.0, gateway=True)  # a reset
    det.failure(a, 1.0, gateway=False)  # then a 500: the target is reachable
    det.failure(a, 1.0, gateway=True)
    assert a.available and a.failures == 1
