"""The front queue's arrival-order decisions across workers (hbfork.core.queue_order)."""

from __future__ import annotations

import pytest

from hbfork.core.queue_order import (
    HAND_OVER,
    LEFTOVER_GRACE,
    NOBODY,
    SERVE,
    head_time,
    head_word,
    is_leftover,
    place_goes,
    unanswered,
    yields,
)

MARGIN = 0.002
T = 1000.0


def w(seconds: float) -> int:
    return head_word(seconds)


def test_head_words_round_trip_and_are_never_zero() -> None:
    assert head_word(0.0) == 1   # 0 means "nobody waits"
    for t in (0.000001, 1.5, 123456.789012):
        assert head_time(head_word(t)) == pytest.approx(t, abs=1e-6)
    assert head_word(T) < head_word(T + 0.000002)   # older waiters have smaller words


@pytest.mark.parametrize(("own", "other", "goes"), [
    (0, 0, NOBODY),                           # nobody waits anywhere
    (w(T), 0, SERVE),                         # only ours wait
    (0, w(T), HAND_OVER),                     # only another worker's wait
    (w(T), w(T + 0.010), SERVE),              # ours came first
    (w(T + 0.010), w(T), HAND_OVER),          # theirs came 10 ms first
    (w(T + 0.001), w(T), SERVE),              # 1 ms: within the margin, no ping-pong
    (w(T + MARGIN), w(T), SERVE),             # exactly the margin: still ours
    (w(T + MARGIN + 0.000002), w(T), HAND_OVER),
    (w(T), w(T), SERVE),                      # the same microsecond
])
def test_where_a_freed_place_goes(own: int, other: int, goes: str) -> None:
    assert place_goes(own, other, MARGIN) == goes


@pytest.mark.parametrize(("waiter", "other", "expected"), [
    (w(T + 0.5), 0, False),          # nobody elsewhere
    (w(T + 0.5), w(T), True),        # the other came 500 ms first
    (w(T), w(T + 0.5), False),       # ours is older
    (w(T + 0.001), w(T), False),     # within the margin
])
def test_a_waiter_lets_the_place_go_to_an_older_one_elsewhere(
        waiter: int, other: int, expected: bool) -> None:
    assert yields(waiter, other, MARGIN) is expected


@pytest.mark.parametrize(("arrived", "now", "timeout", "leftover"), [
    (T, T + 1.0, 5.0, False),                        # waiting 1 s of 5
    (T, T + 5.0 + LEFTOVER_GRACE - 0.01, 5.0, False),  # its timeout is due any moment
    (T, T + 5.0 + LEFTOVER_GRACE + 0.01, 5.0, True),  # no waiter can be that old
    (T, T + 0.6, 0.5, False),
    (T, T + 2.0, 0.5, True),
])
def test_a_word_older_than_any_waiter_can_be_is_a_leftover(
        arrived: float, now: float, timeout: float, leftover: bool) -> None:
    assert is_leftover(head_word(arrived), now, timeout) is leftover


GRACE = 0.005


@pytest.mark.parametrize(("owed", "other", "now", "expected"), [
    (None, w(T), T + 1.0, False),                 # no place was left to anyone
    ((w(T), T + 0.010), w(T), T + 0.012, False),  # left 2 ms ago: its worker is waking
    ((w(T), T + 0.010), w(T), T + 0.016, True),   # 6 ms and its head has not moved
    ((w(T), T + 0.010), w(T + 0.001), T + 0.016, False),  # it took one: another head now
    ((w(T), T + 0.010), 0, T + 0.016, False),     # nobody waits there any more
])
def test_places_left_to_a_head_that_does_not_move_are_unanswered(
        owed: tuple[int, float] | None, other: int, now: float, expected: bool) -> None:
    assert unanswered(owed, other, now, GRACE) is expected
