"""The front queue's rank-order decisions across workers (hbfork.core.queue_order)."""

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
    queue_offset,
    rank_word,
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


# --- ranks: arrival plus the waiter's offset (HAProxy's set-priority-offset)

OFFSET = 1.0


@pytest.mark.parametrize(("returning", "fresh_offset", "offset"), [
    (True, 1.0, 0.0),    # a returning client ranks by its arrival
    (False, 1.0, 1.0),   # a new connection (or one whose last response lagged): 1 s later
    (False, 0.25, 0.25),  # the pool's own offset
    (False, 0.0, 0.0),   # offset 0: everybody by arrival (FIFO)
    (True, 0.0, 0.0),
])
def test_the_offset_of_a_waiter(returning: bool, fresh_offset: float, offset: float) -> None:
    assert queue_offset(returning, fresh_offset) == offset


@pytest.mark.parametrize(("arrived", "offset", "word"), [
    (T, 0.0, w(T)),                # offset 0: the head word of its arrival, as before ranks
    (T, 1.0, w(T + 1.0)),
    (T + 0.5, 0.25, w(T + 0.75)),
])
def test_a_rank_word_is_the_head_word_of_arrival_plus_offset(
        arrived: float, offset: float, word: int) -> None:
    assert rank_word(arrived, offset) == word
    assert head_time(rank_word(arrived, offset)) == pytest.approx(arrived + offset, abs=1e-6)


# (arrival, returning) of each waiter, in arrival order -> the order they are served in
@pytest.mark.parametrize(("waiters", "fresh_offset", "served"), [
    # a returning client passes the new connections that came less than the offset before it
    ([(T, False), (T + 0.1, True)], OFFSET, [1, 0]),
    ([(T, False), (T + 0.5, False), (T + 0.9, True)], OFFSET, [2, 0, 1]),
    # ... but not one that has waited longer than the offset already
    ([(T, False), (T + 1.5, True)], OFFSET, [0, 1]),
    # among waiters of one kind, arrival order (FIFO)
    ([(T, False), (T + 0.1, False), (T + 0.2, False)], OFFSET, [0, 1, 2]),
    ([(T, True), (T + 0.1, True)], OFFSET, [0, 1]),
    # offset 0: plain arrival order whatever the connections did
    ([(T, False), (T + 0.1, True), (T + 0.2, False)], 0.0, [0, 1, 2]),
])
def test_waiters_are_served_lowest_rank_first(
        waiters: list[tuple[float, bool]], fresh_offset: float, served: list[int]) -> None:
    ranks = [rank_word(arrived, queue_offset(returning, fresh_offset))
             for arrived, returning in waiters]
    assert sorted(range(len(waiters)), key=lambda i: (ranks[i], i)) == served


@pytest.mark.parametrize(("own", "other", "goes"), [
    # our fresh waiter came 100 ms before the other worker's returning one: theirs ranks first
    (rank_word(T, OFFSET), rank_word(T + 0.1, 0.0), HAND_OVER),
    # our returning waiter ranks before their fresh one that came first
    (rank_word(T + 0.1, 0.0), rank_word(T, OFFSET), SERVE),
    # two fresh ones: arrival order, as ever
    (rank_word(T + 0.1, OFFSET), rank_word(T, OFFSET), HAND_OVER),
])
def test_across_workers_the_lowest_rank_goes_first(own: int, other: int, goes: str) -> None:
    assert place_goes(own, other, MARGIN) == goes


def test_a_fresh_waiters_word_is_never_a_leftover_while_it_may_wait() -> None:
    # its word is later than its arrival, never earlier: what is not a leftover by arrival
    # is not one by rank either
    timeout = 5.0
    assert not is_leftover(rank_word(T, OFFSET), T + timeout, timeout)
    assert is_leftover(rank_word(T, OFFSET), T + OFFSET + timeout + LEFTOVER_GRACE + 0.01,
                       timeout)
