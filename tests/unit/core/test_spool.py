"""The arithmetic of the response spool (hbfork.core.spool): how much a response's file may
take, where the member's next bytes go, how the client is fed, the worker's budget, and the
directory setting."""

from __future__ import annotations

import pytest

from hbfork.core.spool import (
    LAG_RATE,
    LAG_WINDOW,
    NOTHING,
    READ,
    RELAY,
    SENDFILE,
    WAIT,
    LagWindow,
    SpoolBudget,
    feed,
    room,
    route,
    spool_directory,
)

MIB = 1 << 20


@pytest.mark.parametrize(("cap", "written", "budget_left", "expected"), [
    (16 * MIB, 0, 64 * MIB, 16 * MIB),     # its own cap first
    (16 * MIB, 10 * MIB, 64 * MIB, 6 * MIB),  # what it took counts, even once sent
    (16 * MIB, 0, MIB, MIB),               # the worker's budget first
    (16 * MIB, 16 * MIB, 64 * MIB, 0),     # at its cap
    (16 * MIB, 20 * MIB, 64 * MIB, 0),     # past it (a write larger than the room): never < 0
    (16 * MIB, 0, 0, 0),
])
def test_room(cap, written, budget_left, expected):
    assert room(cap, written, budget_left) == expected


@pytest.mark.parametrize(("pending", "room_left", "behind", "expected"), [
    (0, 0, False, RELAY),     # nothing in the file, client keeping up: the usual relay
    (0, MIB, False, RELAY),   # room, but the client is not behind: no need
    (0, MIB, True, MIB),      # behind with room: spool
    (0, 0, True, RELAY),      # behind, no room: back-pressure as without a spool
    (10, MIB, False, MIB),    # bytes wait in the file: later ones go after them...
    (10, 0, False, WAIT),     # ...or wait, never past them to the client
    (10, 0, True, WAIT),
])
def test_route(pending, room_left, behind, expected):
    assert route(pending, room_left, behind) == expected


HW, LW = 48 * 1024, 24 * 1024


@pytest.mark.parametrize(("queued", "pending", "in_file", "tls", "expected"), [
    (0, 0, 0, False, (NOTHING, 0)),            # nothing in the spool
    (0, MIB, MIB, False, (SENDFILE, MIB)),     # plain, queue empty: sendfile all it takes
    (100, MIB, MIB, False, (NOTHING, 0)),      # plain, queue not empty: it goes first
    (0, MIB, MIB - 10, False, (SENDFILE, MIB - 10)),  # the file's bytes before the tail's
    (0, 10, 0, False, (READ, 10)),             # only a failed write's tail: through the queue
    (0, MIB, 0, False, (READ, HW)),            # ...a queue's worth at a time
    (0, MIB, MIB, True, (READ, HW)),           # TLS: a queue's worth, in memory
    (30 * 1024, MIB, MIB, True, (NOTHING, 0)),  # TLS above the low-water mark: later
    (10 * 1024, MIB, MIB, True, (READ, HW - 10 * 1024)),
    (10 * 1024, 500, 500, True, (READ, 500)),
])
def test_feed(queued, pending, in_file, tls, expected):
    assert feed(queued, pending, in_file, tls, LW, HW) == expected


def test_a_client_never_behind_has_no_window():
    lag = LagWindow()
    assert lag.look(10.0, False, 0) == 0.0
    assert not lag.lags(20.0, 0)


def test_a_client_that_takes_nothing_for_a_window_lags():
    lag = LagWindow()
    assert lag.look(10.0, True, 500) == 10.0 + LAG_WINDOW  # when to look again
    assert not lag.lags(10.0 + LAG_WINDOW / 2, 500)  # not a whole window yet
    assert lag.look(10.0 + LAG_WINDOW / 2, True, 500) == 10.0 + LAG_WINDOW
    assert lag.lags(10.0 + LAG_WINDOW, 500)
    assert lag.look(10.0 + LAG_WINDOW, True, 500) == 10.0 + LAG_WINDOW  # it stays lagging
    assert lag.lags(11.0 + LAG_WINDOW, 600)


def test_a_queue_that_empties_now_and_then_does_not_reset_the_window():
    """A socket's buffer keeps taking a little from a reader that reads nothing: its queue
    empties at a look, but what it took over the window is what counts."""
    lag = LagWindow()
    lag.look(10.0, True, 0)
    assert lag.look(10.0 + LAG_WINDOW / 2, False, 200_000) == 10.0 + LAG_WINDOW
    assert lag.lags(10.0 + LAG_WINDOW, 250_000)


def test_a_client_that_keeps_up_starts_a_new_window():
    lag = LagWindow()
    fast = int(LAG_RATE * LAG_WINDOW) * 10
    lag.look(10.0, True, 0)
    assert not lag.lags(10.0 + LAG_WINDOW, fast)
    # behind again at the look: a new window from here, counting from what it took by now
    assert lag.look(10.0 + LAG_WINDOW, True, fast) == 10.0 + 2 * LAG_WINDOW
    assert not lag.lags(10.0 + 2 * LAG_WINDOW, 2 * fast)
    # not behind at the look: no window until it is behind again
    assert lag.look(10.0 + 2 * LAG_WINDOW, False, 2 * fast) == 0.0
    assert not lag.lags(20.0, 2 * fast)
    assert lag.look(20.0, True, 2 * fast) == 20.0 + LAG_WINDOW


def test_a_client_that_slows_down_lags_in_its_next_window():
    lag = LagWindow()
    fast = int(LAG_RATE * LAG_WINDOW) * 10
    lag.look(10.0, True, 0)
    lag.look(10.0 + LAG_WINDOW, True, fast)
    assert lag.lags(10.0 + 2 * LAG_WINDOW, fast + 1000)


FAST = int(LAG_RATE * LAG_WINDOW) * 10  # far more than a lagging client takes in a window


# (now, behind, taken) looks in turn -> whether it was found lagging once (`lagged`: its
# connection's next request ranks as a new connection's in the front queue)
@pytest.mark.parametrize(("looks", "lagged"), [
    ([], False),                                                # never behind
    ([(10.0, True, 0)], False),                                 # behind, the window open
    ([(10.0, True, 0), (10.0 + LAG_WINDOW / 2, True, 10)], False),  # not a whole window
    ([(10.0, True, 0), (10.0 + LAG_WINDOW, True, 500)], True),  # took nothing for a window
    ([(10.0, True, 0), (10.0 + LAG_WINDOW, True, FAST)], False),  # kept up: a new window
    ([(10.0, True, 0), (10.0 + LAG_WINDOW, True, 500),           # lagged, then caught up:
      (10.0 + 2 * LAG_WINDOW, True, 100 * FAST)], True),         # lagged it stays
])
def test_a_client_found_lagging_once_keeps_lagged(looks, lagged):
    lag = LagWindow()
    for now, behind, taken in looks:
        lag.look(now, behind, taken)
    assert lag.lagged is lagged


def test_lags_true_marks_lagged_too():
    """The spool opens on lags() (hbfork.proxy.http.spool.spool_takes), maybe before a look."""
    lag = LagWindow()
    lag.look(10.0, True, 0)
    assert not lag.lags(10.0 + LAG_WINDOW / 2, 0) and not lag.lagged
    assert lag.lags(10.0 + LAG_WINDOW, 0) and lag.lagged


def test_budget():
    budget = SpoolBudget()
    assert budget.left(100) == 100
    budget.take(70)
    assert budget.left(100) == 30
    budget.take(50)
    assert budget.left(100) == 0  # over (a write larger than the room): none left, not < 0
    budget.give(120)
    assert budget.used == 0
    budget.give(5)
    assert budget.used == 0


@pytest.mark.parametrize(("value", "ok"), [
    ("", True), ("/var/spool/hbfork", True), ("spool", False), ("./spool", False),
    (7, False), ("/a\0b", False),
])
def test_spool_directory(value, ok):
    if ok:
        assert spool_directory(value) == value
    else:
        with pytest.raises(ValueError):
            spool_directory(value)
