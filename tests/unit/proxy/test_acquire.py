"""acquire(): what a request (or a TCP connection) is given, by table. The picker is the tests'
FakePicker, whose primitives pick the first member with room; acquire() itself is Upstreams'."""

from __future__ import annotations

import pytest

from hbfork.proxy.upstreams import (
    NO_MEMBER,
    RETRIES_SPENT,
    SESSION_DOWN,
    STICKY_HIT,
    STICKY_LOST,
    TRIED_ALL,
    Acquired,
    Unavailable,
    Wait,
)
from tests.unit.proxy.fakes import FakeContext, member

POOL = """
[[pool]]
name = "default"
stickysession = "JSESSIONID|jsessionid"
{extra}
[[pool.member]]
address = "192.0.2.1:8080"
route = "n1"
[[pool.member]]
address = "192.0.2.2:8080"
route = "n2"
"""

# (members down, members full, excluded, sticky route, queued, failover, nofailover,
#  expected: ("acquired", slot) | ("wait", pinned) | ("unavailable", reason), sticky outcome)
CASES = [
    ((), (), set(), None, False, True, False, ("acquired", 1), 0),
    ((), (1,), set(), None, False, True, False, ("acquired", 2), 0),
    ((), (1, 2), set(), None, False, True, False, ("wait", False), 0),
    ((1, 2), (), set(), None, False, True, False, ("unavailable", NO_MEMBER), 0),
    ((2,), (), {1}, None, False, True, False, ("unavailable", TRIED_ALL), 0),
    ((), (), {1}, None, False, True, False, ("acquired", 2), 0),
    ((), (), {1, 2, 3}, None, False, True, False, ("unavailable", RETRIES_SPENT), 0),
    ((), (), set(), "n2", False, True, False, ("acquired", 2), STICKY_HIT),
    ((), (2,), set(), "n2", False, True, False, ("wait", True), 0),
    ((), (), set(), "n9", False, True, False, ("acquired", 1), 0),  # names no member
    ((2,), (), set(), "n2", False, True, False, ("acquired", 1), STICKY_LOST),
    ((), (), {2}, "n2", False, True, False, ("acquired", 1), STICKY_LOST),  # it refused
    ((2,), (), set(), "n2", False, True, True, ("unavailable", SESSION_DOWN), STICKY_LOST),
    ((2,), (), set(), "n2", False, False, False, ("unavailable", SESSION_DOWN), STICKY_LOST),
]


@pytest.mark.parametrize(
    ("down", "full", "excluded", "route", "queued", "failover", "nofailover", "expected",
     "sticky"), CASES)
def test_acquire(down: tuple[int, ...], full: tuple[int, ...], excluded: set[int],
                 route: str | None, queued: bool, failover: bool, nofailover: bool,
                 expected: tuple[str, object], sticky: int) -> None:
    members = [member(1), member(2)]
    for m in members:
        m.down, m.full = m.target.slot in down, m.target.slot in full
    ctx = FakeContext(members, POOL.format(extra="nofailover = true" if nofailover else ""))
    picker = ctx.upstreams
    got = picker.acquire(picker.default, 1.0, excluded, route, queued, failover)
    kind, value = expected
    if kind == "acquired":
        assert type(got) is Acquired and got.target.slot == value
        assert picker.in_flight == {value: 1}  # counted in flight: the caller owns it
    elif kind == "wait":
        assert type(got) is Wait and got.pinned is value
    else:
        assert type(got) is Unavailable and got.reason == value
    if kind != "acquired":
        assert not any(picker.in_flight.values())  # nothing reserved
    assert got.sticky == sticky


def test_a_new_request_goes_behind_old_waiters_unless_it_comes_from_the_queue() -> None:
    ctx = FakeContext([member(1)])
    picker = ctx.upstreams

    class Waiter:
        queued_at, pinned = 1.0, False

    ctx.queue.append(Waiter())
    assert type(picker.acquire(picker.default, 5.0)) is Wait
    assert type(picker.acquire(picker.default, 5.0, queued=True)) is Acquired


@pytest.mark.parametrize(("down", "full", "waiting"), [
    ((), (), False), ((), (1,), False), ((), (1, 2), False), ((1, 2), (), False),
    ((), (), True)])
def test_take_is_acquire_for_a_first_try_without_a_route(
        down: tuple[int, ...], full: tuple[int, ...], waiting: bool) -> None:
    # The fast path's take() gives the member acquire() would, or None where it would not
    # answer Acquired; it reserves exactly as acquire() does.
    results = []
    for way in ("acquire", "take"):
        members = [member(1), member(2)]
        for m in members:
            m.down, m.full = m.target.slot in down, m.target.slot in full
        ctx = FakeContext(members, POOL.format(extra=""))
        picker = ctx.upstreams
        if waiting:
            class Waiter:
                queued_at, pinned = 1.0, False
            ctx.queue.append(Waiter())
        if way == "acquire":
            got = picker.acquire(picker.default, 5.0)
            slot = got.target.slot if type(got) is Acquired else None
        else:
            taken = picker.take(picker.default, 5.0)
            slot = taken.slot if taken is not None else None
        results.append((slot, dict(picker.in_flight)))
    assert results[0] == results[1]
