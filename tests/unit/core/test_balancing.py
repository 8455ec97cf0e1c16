"""hbfork.core.balancing: effective ready, capacity, the three ways to pick, and slow start."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.core.balancing import (
    FULL,
    OTHERS_REPORTS,
    Members,
    ServiceTimes,
    at_report,
    capacity_of,
    choose,
    effective,
    ramp,
)


def members(*rows: tuple[int, int, int, int], tier: int = 0) -> Members:
    """rows of (slot, ready, capacity, at_report)."""
    m = Members()
    m.load([(tier, slot, ready, cap, at) for slot, ready, cap, at in rows], 1)
    return m


def shares(m: Members, weighting: str, pick: str, in_flight: dict[int, int],
           n: int = 40_000, seed: int = 7) -> dict[int, float]:
    rng = random.Random(seed)
    counts = Counter(choose(m, weighting, pick, lambda s: in_flight.get(s, 0), rng.random)
                     for _ in range(n))
    return {slot: count / n for slot, count in counts.items()}


@pytest.mark.parametrize(("ready", "now", "at", "value"), [
    (10, 0, 0, 10),     # nothing of ours anywhere
    (10, 3, 0, 7),      # three sent since the report
    (10, 3, 3, 10),     # the same three were already counted in the report
    (10, 1, 3, 12),     # two of those finished since: capacity back
    (10, 0, 3, 13),     # ... but never more than ready + at_report
    (10, 15, 0, 0),     # floored at 0
    (0, 2, 5, 3),       # reported full, but five of ours were busy and three finished
    (0, 0, 0, 0),
])
def test_effective_ready_arithmetic(ready: int, now: int, at: int, value: int) -> None:
    assert effective(ready, now, at) == value


@given(st.integers(0, 2**31), st.integers(0, 2**31), st.integers(0, 2**31))
def test_effective_is_bounded(ready: int, now: int, at: int) -> None:
    assert 0 <= effective(ready, now, at) <= ready + at


def test_capacity_from_heartbeats_or_max_conns_and_capped() -> None:
    assert capacity_of(3, 5, 0, 10_000) == 8
    assert capacity_of(3, 5, 2, 10_000) == 2
    assert capacity_of(10**9, 10**9, 0, 10_000) == 10_000  # a liar cannot make it unbounded


def test_corrected_shares_follow_effective_ready() -> None:
    m = members((1, 10, 20, 0), (2, 10, 20, 0), (3, 30, 40, 0))
    got = shares(m, "corrected", "weighted", {3: 20})  # 20 of ours went to 3 since it reported
    # effective: 10, 10, 10
    for slot in (1, 2, 3):
        assert abs(got[slot] - 1 / 3) < 0.01, got


def test_reported_shares_ignore_in_flight_but_not_capacity() -> None:
    m = members((1, 10, 20, 0), (2, 30, 40, 0))
    got = shares(m, "reported", "weighted", {2: 20})
    assert abs(got[1] - 0.25) < 0.01 and abs(got[2] - 0.75) < 0.01, got
    got = shares(m, "reported", "weighted", {2: 40})  # 2 is full
    assert got == {1: 1.0}


def test_a_liar_gets_no_more_than_its_corrected_share() -> None:
    """A member reporting ready=1000 while holding 995 of ours is worth 5 like any other."""
    m = members((1, 5, 10, 0), (2, 1000, 1000, 0))
    got = shares(m, "corrected", "weighted", {2: 995})
    assert abs(got[1] - 0.5) < 0.015 and abs(got[2] - 0.5) < 0.015, got


def test_every_member_at_zero_falls_back_to_reported_shares() -> None:
    m = members((1, 10, 100, 0), (2, 30, 100, 0))
    got = shares(m, "corrected", "weighted", {1: 50, 2: 50})  # effective 0, room left
    assert abs(got[1] - 0.25) < 0.01 and abs(got[2] - 0.75) < 0.01, got


def test_full_when_members_are_up_but_none_can_take_one() -> None:
    rng = random.Random(1)
    m = members((1, 4, 4, 0), (2, 4, 4, 0))
    assert choose(m, "corrected", "weighted", lambda s: 4, rng.random) == FULL
    assert choose(m, "reported", "weighted", lambda s: 4, rng.random) == FULL
    assert choose(m, "corrected", "p2c", lambda s: 4, rng.random) == FULL
    zero = members((1, 0, 8, 0), (2, 0, 8, 0))  # reported ready 0, nothing of ours there
    assert choose(zero, "corrected", "weighted", lambda s: 0, rng.random) == FULL
    assert choose(Members(), "corrected", "weighted", lambda s: 0, rng.random) is None


def test_requests_that_finished_since_the_report_dispatch_again() -> None:
    """Both members reported ready 0 with 8 of ours each in flight; 3 finished at member 1."""
    rng = random.Random(2)
    m = members((1, 0, 8, 8), (2, 0, 8, 8))
    picks = Counter(choose(m, "corrected", "weighted", {1: 5, 2: 8}.get, rng.random)
                    for _ in range(100))
    assert picks == {1: 100}


def test_excluded_members_are_skipped_and_none_when_all_are() -> None:
    rng = random.Random(3)
    m = members((1, 10, 20, 0), (2, 10, 20, 0))
    for weighting in ("corrected", "reported"):
        assert {choose(m, weighting, "weighted", lambda s: 0, rng.random, {1})
                for _ in range(50)} == {2}
        assert choose(m, weighting, "weighted", lambda s: 0, rng.random, {1, 2}) is None


def test_p2c_prefers_the_member_with_more_effective_ready() -> None:
    m = members((1, 10, 20, 0), (2, 10, 20, 0))
    got = shares(m, "corrected", "p2c", {1: 8}, n=2000)  # effective 2 vs 10
    assert got == {2: 1.0}
    even = shares(m, "corrected", "p2c", {}, n=20_000)
    assert abs(even[1] - 0.5) < 0.02


def test_tiers_lowest_usable_one_only() -> None:
    m = Members()
    m.load([(0, 1, 5, 10, 0), (2, 2, 50, 60, 0), (0, 3, 0, 0, 0)], 1)
    assert m.slots == [1]  # the capacity-0 member does not count; tier 2 stands by


@pytest.mark.parametrize(("weight", "up", "window", "ramped"), [
    (100, 0.0, 30, 1), (100, 15.0, 30, 50), (100, 30.0, 30, 100), (100, 99.0, 30, 100),
    (100, 5.0, 0, 100), (0, 5.0, 30, 0), (3, 1.0, 30, 1),
])
def test_slow_start_ramps_linearly(weight: int, up: float, window: float, ramped: int) -> None:
    assert ramp(weight, up, window) == ramped


def test_a_slow_member_is_refilled_by_its_speed() -> None:
    """A member 100x slower than the other: each of its slots that frees is worth a hundredth
    of the other's (corrected), instead of being refilled at once."""
    m = members((1, 8, 16, 0), (2, 8, 16, 0))
    times = ServiceTimes()
    for _ in range(50):
        times.observe(1, 0.002)
        times.observe(2, 0.200)
    m.speed = times.speeds(m.slots)
    assert m.speed[0] == 1.0 and m.speed[1] == pytest.approx(0.04, rel=0.05)
    got = shares(m, "corrected", "weighted", {})
    assert got[2] == pytest.approx(0.04 / 1.04, abs=0.006)
    assert shares(m, "reported", "weighted", {})[2] == pytest.approx(0.5, abs=0.02)  # Apache's


def test_speeds_need_two_known_members_and_have_a_floor() -> None:
    times = ServiceTimes()
    assert times.speeds([1, 2]) == [1.0, 1.0]
    times.observe(1, 0.001)
    assert times.speeds([1, 2]) == [1.0, 1.0]  # nothing to compare with yet
    times.observe(2, 100.0)
    assert times.speeds([1, 2]) == [1.0, ServiceTimes.FLOOR]
    times.observe(2, 0.003)  # back within 4x the fastest: as fast as anyone
    for _ in range(200):
        times.observe(2, 0.003)
    assert times.speeds([1, 2]) == [1.0, 1.0]
    times.forget(2)
    assert times.speeds([1, 2]) == [1.0, 1.0]


def test_the_average_follows_a_member_that_recovers() -> None:
    times = ServiceTimes()
    times.observe(1, 0.2)
    for _ in range(60):
        times.observe(1, 0.002)
    assert times.seconds[1] < 0.004


@pytest.mark.parametrize(("flying", "busy", "seen", "share", "after"), [
    (8, 8, (), 8, (0,)),             # all the member's busy workers are ours
    (7, 8, (), 7, (1,)),             # first report: one busy worker is someone else's
    (7, 8, (0, 0), 8, (0, 0, 1)),    # ... but the last two said none: a gap in our count
    (7, 8, (0,), 8, (0, 1)),
    (4, 8, (4, 4), 4, (4, 4, 4)),    # another front holds 4, report after report
    (4, 8, (0, 0), 4, (0, 0, 4)),    # ... and from its first report on (more than a skew)
    (6, 7, (0, 0), 7, (0, 0, 1)),    # one, where we were alone: a gap until seen again
    (6, 7, (1, 0), 7, (1, 0, 1)),
    (6, 7, (1, 1), 6, (1, 1, 1)),    # one, three reports in a row: another front's
    (8, 8, (4, 4), 8, (4, 4, 0)),    # it left: ours again at once
    (9, 8, (0, 0), 9, (0, 0, 0)),    # ours started after the member counted: ours as read
    (0, 8, (8, 8), 0, (8, 8, 8)),    # none of ours there: a member busy with others
    (0, 0, (), 0, (0,)),
])
def test_the_share_of_a_report_that_is_ours(flying: int, busy: int, seen: tuple[int, ...],
                                            share: int, after: tuple[int, ...]) -> None:
    assert at_report(flying, busy, seen) == (share, after)


def test_a_report_read_in_a_refill_gap_leaves_no_place_idle() -> None:
    """Issue 28's trace: the 80 ms member (8 workers, all ours) reported 0 ready while the
    master read 7 of ours in flight (one had just ended, its waiter not yet sent). With that
    report, effective() must still give the eighth place to a waiter."""
    share, _ = at_report(7, 8, (0,) * (OTHERS_REPORTS - 1))
    assert effective(0, 7, share) == 1
    assert effective(0, 7, 7) == 0      # what a report read alone gave: the place idled


@given(st.integers(0, 64), st.integers(0, 64), st.lists(st.integers(0, 64), max_size=5))
def test_the_share_is_at_least_ours_and_history_is_bounded(flying: int, busy: int,
                                                           seen: list[int]) -> None:
    share, after = at_report(flying, busy, tuple(seen))
    assert share >= flying and share <= max(flying, busy)
    assert len(after) <= OTHERS_REPORTS and after[-1] == max(0, busy - flying)
