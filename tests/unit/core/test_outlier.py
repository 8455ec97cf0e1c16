"""hbfork.core.outlier: the detector with a fake clock, and the ejection arithmetic."""

from __future__ import annotations

import pytest

from hbfork.core.outlier import (
    CAUSE_5XX,
    CAUSE_GATEWAY,
    CAUSE_RATE,
    FAILED_STATUS,
    GATEWAY,
    OK,
    QUIET,
    Detector,
    OutlierSettings,
    decayed,
    ejection_seconds,
    may_eject,
)

T = 1000.0  # seconds on a monotonic clock


def detector(**overrides) -> Detector:
    return Detector(OutlierSettings(**overrides))


def run(d: Detector, outcomes, slot=0, uid=1, start=T, step=0.001) -> list[int]:
    return [d.observe(slot, uid, o, start + i * step) for i, o in enumerate(outcomes)]


def test_five_consecutive_5xx_report_on_the_fifth():
    assert run(detector(), [FAILED_STATUS] * 5) == [0, 0, 0, 0, CAUSE_5XX]


def test_a_success_breaks_the_run():
    d = detector(failure_rate=0)
    got = run(d, [FAILED_STATUS] * 4 + [OK] + [FAILED_STATUS] * 4)
    assert not any(got)


def test_gateway_failures_are_their_own_run():
    d = detector(failure_rate=0)
    assert run(d, [GATEWAY] * 4 + [FAILED_STATUS] + [GATEWAY] * 4)[-1] == 0
    assert run(detector(), [GATEWAY] * 5)[-1] == CAUSE_GATEWAY


def test_a_rule_set_to_zero_is_off():
    d = detector(consecutive_5xx=0, failure_rate=0)
    assert not any(run(d, [FAILED_STATUS] * 100))


def test_failure_rate_needs_the_minimum_volume():
    d = detector(consecutive_5xx=0, consecutive_gateway_failures=0, failure_rate=0.3,
                 failure_rate_min_requests=20)
    pattern = [FAILED_STATUS, OK, OK] * 6  # 33 % failures, 18 requests: too few to judge
    assert not any(run(d, pattern))
    assert run(d, [OK, FAILED_STATUS], start=T + 1)[-1] == CAUSE_RATE  # 20 requests now


def test_failure_rate_forgets_outcomes_older_than_the_window():
    d = detector(consecutive_5xx=0, failure_rate=0.5, failure_rate_min_requests=10,
                 failure_rate_window=10)
    run(d, [FAILED_STATUS, OK] * 4)  # 8 requests, half failed
    # 11 s later those have left the window: 10 new successes and one failure are 9 %.
    assert not any(run(d, [OK] * 10 + [FAILED_STATUS], start=T + 11))


def _busy_member_turns_bad(d: Detector, rate: float = 200.0) -> float:
    """10 s of successes at `rate` requests/s, then 3 of every 10 fail: the seconds from the
    change to the report (inf if none within 5 s)."""
    step = 1 / rate
    run(d, [OK] * int(10 * rate), step=step)
    change = T + 10
    pattern = [OK, FAILED_STATUS, OK, OK, FAILED_STATUS, OK, OK, OK, FAILED_STATUS, OK]
    for i in range(int(5 * rate)):
        if d.observe(0, 1, pattern[i % 10], change + i * step):
            return i * step
    return float("inf")


def test_a_busy_member_that_starts_failing_is_judged_on_its_recent_requests():
    # 30 % failures after 10 s of health: the whole window's share reaches 25 % only after
    # ~50 s; the newest 100 requests (a worker's share at 1,000 requests/s over 3 members and
    # 2 workers is ~170/s) show it within a second.
    rules = {"consecutive_5xx": 0, "consecutive_gateway_failures": 0}
    assert _busy_member_turns_bad(detector(**rules)) < 1.0
    assert _busy_member_turns_bad(detector(**rules, failure_rate_recent_requests=0)) > 5


def test_steady_failures_under_the_rate_never_trip_the_recent_rule():
    d = detector(consecutive_5xx=0, consecutive_gateway_failures=0)
    pattern = [FAILED_STATUS] + [OK] * 5  # 17 %, evenly spread, at 500 requests/s for 30 s
    assert not any(run(d, pattern * 2500, step=0.002))


def test_after_a_report_the_member_is_judged_afresh_and_quiet_for_a_while():
    d = detector()
    assert run(d, [FAILED_STATUS] * 5)[-1] == CAUSE_5XX
    # Five more at once: a new run, but within QUIET of the report: not reported again.
    assert not any(run(d, [FAILED_STATUS] * 5, start=T + 0.1))
    # Still failing once the quiet time is over: the first failure asks again.
    assert run(d, [FAILED_STATUS] * 2, start=T + QUIET + 0.2) == [CAUSE_5XX, 0]


def test_a_reused_slot_starts_from_nothing():
    d = detector()
    run(d, [FAILED_STATUS] * 4, uid=1)
    assert run(d, [FAILED_STATUS], uid=2) == [0]


def test_slots_are_tracked_apart():
    d = detector()
    for i in range(4):
        assert d.observe(0, 1, FAILED_STATUS, T + i) == 0
        assert d.observe(1, 2, FAILED_STATUS, T + i) == 0
    assert d.observe(0, 1, FAILED_STATUS, T + 5) == CAUSE_5XX


@pytest.mark.parametrize(("ejections", "seconds"), [(1, 30), (2, 60), (3, 90), (50, 300)])
def test_each_repeat_lasts_longer_up_to_the_cap(ejections, seconds):
    assert ejection_seconds(OutlierSettings(), ejections) == seconds


@pytest.mark.parametrize(("count", "back", "left"), [(3, 0, 3), (3, 29, 3), (3, 30, 2),
                                                     (3, 95, 0), (1, 10_000, 0)])
def test_the_count_decays_while_the_member_stays_in(count, back, left):
    assert decayed(count, back, 30) == left


@pytest.mark.parametrize(("out", "size", "share", "allowed"), [
    (0, 3, 0.5, True), (1, 3, 0.5, False), (1, 4, 0.5, True), (2, 4, 0.5, False),
    (0, 1, 0.5, True),   # at least one may always go
    (0, 2, 0.0, True), (1, 2, 1.0, True), (9, 10, 1.0, True), (10, 10, 1.0, False),
])
def test_the_share_of_a_pool_out_at_once(out, size, share, allowed):
    assert may_eject(out, size, share) is allowed
