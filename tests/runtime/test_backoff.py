"""Restart policy: immediate after a stable run, doubling delays in a crash loop, capped."""

from __future__ import annotations

from pulsegate.runtime.backoff import RestartBackoff


def test_stable_worker_is_replaced_at_once() -> None:
    b = RestartBackoff(first=0.25, maximum=10.0, stable_after=5.0)
    assert b.delay(uptime=3600.0) == 0.0
    assert b.delay(uptime=5.0) == 0.0


def test_crash_loop_doubles_up_to_the_cap_and_a_stable_run_resets_it() -> None:
    b = RestartBackoff(first=0.25, maximum=3.0, stable_after=5.0)
    assert [b.delay(uptime=0.2) for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.quick_failures == 6
    assert b.delay(uptime=10.0) == 0.0
    assert b.quick_failures == 0
    assert b.delay(uptime=0.2) == 0.25
