"""In-flight counts across workers: what balancing reads, summed over the workers' records."""

from __future__ import annotations

import os
from ipaddress import IPv4Address

import pytest

from hbfork.core.members import ELIGIBLE, Member
from hbfork.proxy.upstreams import Upstreams
from hbfork.table.layout import (
    MC_INFLIGHT,
    STATE_DRAINING,
    STATE_EXITED,
    STATE_READY,
)
from hbfork.table.table import Table


@pytest.fixture
def table():
    t = Table.create(4, 4, master_pid=920_000 + os.getpid() % 1000)
    yield t
    t.unlink()
    t.close()


def member(slot: int, ready: int = 5, busy: int = 3) -> Member:
    return Member(slot=slot, uid=slot + 1, ip=IPv4Address(0x0A000001 + slot), port=80,
                  static=True, ready=ready, busy=busy, first_seen=1, last_seen=1,
                  weight=ready, reason=ELIGIBLE, usable=True, capacity=ready + busy)


def workers(table: Table, *states: int) -> list[Upstreams]:
    out = []
    for index, state in enumerate(states):
        record = table.workers.record(index)
        record.claim(index + 1, 1)
        record.set_state(state)
        out.append(Upstreams(table, record.words))
    table.bump_generation()
    return out


def test_in_flight_is_summed_over_live_workers(table) -> None:
    table.write_member(0, member(0))
    a, b, c = workers(table, STATE_READY, STATE_DRAINING, STATE_READY)
    target = a.choose()  # a pick reserves: it counts in flight from now on
    assert target is not None and target.slot == 0
    for upstreams in (b, b, c):
        assert upstreams.choose() is not None
    assert a.in_flight(0) == 4 and c.in_flight(0) == 4  # every worker sees the whole front
    assert table.workers.in_flight(0, 1, table.live_records()) == 4


def test_a_worker_that_exits_takes_its_requests_with_it(table) -> None:
    table.write_member(0, member(0))
    a, b = workers(table, STATE_READY, STATE_READY)
    for upstreams in (a, b, b):
        upstreams.choose()
    assert a.in_flight(0) == 3
    table.workers.record(1).set_state(STATE_EXITED)
    table.workers.retire(1)  # its connections died with it
    table.bump_generation()
    a.choose()  # a new generation: the worker list is read again (and this pick counts)
    assert a.in_flight(0) == 2  # a's two; b's two died with it
    assert table.workers.retired.member_words(0)[MC_INFLIGHT] == 0  # not folded into totals


def test_finishing_more_than_started_never_wraps(table) -> None:
    table.write_member(0, member(0))
    (a,) = workers(table, STATE_READY)
    target = a.choose()
    a.finished(target, 200)
    a.finished(target, 200)  # a bug elsewhere must not make the member look full forever
    assert a.in_flight(0) == 0


def test_a_reused_slot_starts_from_zero(table) -> None:
    table.write_member(0, member(0))
    (a,) = workers(table, STATE_READY)
    old = a.choose()
    fresh = member(0)
    fresh.uid = 99
    table.write_member(0, fresh)
    table.bump_generation()
    new = a.choose()
    assert new is not None and new.uid == 99 and a.in_flight(0) == 1  # only the new pick
    a.finished(old, 200)  # the old member's request ends: nothing to count any more
    assert a.in_flight(0) == 1


def test_full_members_are_not_picked(table) -> None:
    table.write_member(0, member(0, ready=1, busy=1))  # capacity 2
    a, b = workers(table, STATE_READY, STATE_READY)
    assert a.choose() is not None and b.choose() is not None
    assert a.choose() == -1 and b.choose() == -1  # FULL: the caller queues the request
    assert a.in_flight(0) == 2  # the refused picks took nothing


def test_two_workers_racing_for_the_last_place_do_not_both_get_it(table) -> None:
    """Both raise their count before checking, so the later one sees the earlier one."""
    table.write_member(0, member(0, ready=1, busy=0))  # capacity 1
    a, b = workers(table, STATE_READY, STATE_READY)
    first = a.choose()
    a.started(first)  # as if a's reservation landed while b was checking: now 2 in flight
    assert b.reserve(first) is False  # b sees more than the capacity and backs off
    assert a.in_flight(0) == 2 and b.in_flight(0) == 2
