"""The front queue across workers: arrival order holds over the front, not only per worker.

Two FrontQueues on one real table stand for two workers; their loops' clocks are set by
hand, and "room" is a counter the waiters take from.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from hbfork.core.config import loads
from hbfork.core.pool_settings import PoolSettings
from hbfork.core.queue_order import rank_word
from hbfork.core.settings import HttpSettings
from hbfork.proxy.loop import Loop
from hbfork.proxy.queue import (
    HANDOVER_GRACE,
    QUEUE_POLL,
    QUEUE_POLL_FIRST,
    YIELD_MARGIN,
    FrontQueue,
)
from hbfork.proxy.upstreams import ORDER_AFTER, PoolView, Upstreams
from hbfork.table.layout import (
    PC_QUEUE_HANDOFFS,
    STATE_READY,
    pool_counters_at,
)
from hbfork.table.table import Table


class Room:
    def __init__(self) -> None:
        self.free = 0


class FakeWaiter:
    def __init__(self, room: Room, name: str, pinned: bool = False,
                 returning: bool = True) -> None:
        self.room = room
        self.name = name
        self.pinned = pinned
        self.returning = returning
        self.queued_at = 0.0
        self.queue_rank = 0
        self.closed = False
        self.served = False

    def try_dispatch(self) -> bool:
        if self.room.free <= 0:
            return False
        self.room.free -= 1
        self.served = True
        return True


@pytest.fixture
def table() -> Iterator[Table]:
    t = Table.create(4, 4, master_pid=930_000 + os.getpid() % 1000)
    yield t
    gc.collect()  # a queue and its loop's timer form a cycle that holds views of the segment
    t.unlink()
    t.close()


@pytest.fixture
def pool() -> PoolView:
    return PoolView(0, PoolSettings(name="default", queue_fresh_offset=1.0), HttpSettings())


def worker_queues(table: Table, count: int = 2,
                  generations: tuple[int, ...] = ()) -> list[FrontQueue]:
    bases = [table.workers.record(index).base for index in range(count)]
    queues = []
    for index in range(count):
        record = table.workers.record(index)
        record.claim(index + 1, generations[index] if generations else 1)
        record.set_state(STATE_READY)
        loop = Loop()
        loop.now = 1000.0
        queues.append(FrontQueue(loop, table.workers, record, lambda: bases))
    return queues


def at(queue: FrontQueue, now: float) -> FrontQueue:
    queue.loop.now = now
    return queue


def test_room_made_in_one_worker_goes_to_the_older_waiter_of_another(table, pool) -> None:
    room = Room()
    a, b = worker_queues(table)
    old, young = FakeWaiter(room, "old"), FakeWaiter(room, "young")
    assert at(a, 1000.0).add(pool, old, [])
    assert at(b, 1000.5).add(pool, young, [])
    room.free = 1               # b's request finished: the room is b's to give
    at(b, 1000.6).dispatch()
    assert not young.served and room.free == 1   # left for a's older waiter
    at(a, 1000.6).dispatch()
    assert old.served and room.free == 0
    room.free = 1
    at(b, 1000.7).dispatch()    # nothing older anywhere now
    assert young.served
    assert len(a) == 0 and len(b) == 0


def test_the_worker_others_wait_for_polls_faster(table, pool) -> None:
    room = Room()
    a, b = worker_queues(table)
    at(a, 1000.0).add(pool, FakeWaiter(room, "old"), [])
    at(b, 1000.5).add(pool, FakeWaiter(room, "young"), [])
    at(a, 1000.6).dispatch()
    assert a.first and not b.first
    assert a.timer.when == pytest.approx(1000.6 + QUEUE_POLL_FIRST)
    at(b, 1000.6).dispatch()
    assert b.timer.when == pytest.approx(1000.6 + QUEUE_POLL)


def test_waiters_within_the_margin_are_not_held_back(table, pool) -> None:
    room = Room()
    a, b = worker_queues(table)
    first, second = FakeWaiter(room, "first"), FakeWaiter(room, "second")
    at(a, 1000.0).add(pool, first, [])
    at(b, 1000.0 + YIELD_MARGIN / 2).add(pool, second, [])
    room.free = 1
    at(b, 1000.1).dispatch()
    assert second.served  # a few ms apart: no room is left idle for that


def test_a_pinned_waiter_does_not_hold_other_workers_back(table, pool) -> None:
    room = Room()
    a, b = worker_queues(table)
    sticky = FakeWaiter(room, "sticky", pinned=True)   # waits for its own member
    at(a, 1000.0).add(pool, sticky, [])
    young = FakeWaiter(room, "young")
    at(b, 1000.5).add(pool, young, [])
    assert a.record.queue_head(pool) == 0
    room.free = 1
    at(b, 1000.6).dispatch()
    assert young.served and not sticky.served


def test_yielding_still_tries_own_pinned_waiters(table, pool) -> None:
    room = Room()
    a, b = worker_queues(table)
    at(a, 1000.0).add(pool, FakeWaiter(room, "old"), [])
    young = FakeWaiter(room, "young")
    sticky = FakeWaiter(room, "sticky", pinned=True)
    at(b, 1000.5).add(pool, young, [])
    at(b, 1000.5).add(pool, sticky, [])
    room.free = 1
    at(b, 1000.6).dispatch()
    assert sticky.served and not young.served


def test_leftover_words_and_other_generations_are_ignored(table, pool) -> None:
    room = Room()
    a, b, c = worker_queues(table, 3, generations=(1, 1, 2))
    at(a, 1000.0).add(pool, FakeWaiter(room, "stale"), [])
    at(c, 1000.0).add(pool, FakeWaiter(room, "other generation"), [])
    young = FakeWaiter(room, "young")
    # a's waiter arrived longer ago than the pool's queue_timeout (+1 s): a worker that
    # stopped without clearing its word; c is of another generation (other pool indexes)
    late = 1000.0 + pool.queue_timeout + 2.0
    at(b, late).add(pool, young, [])
    room.free = 1
    at(b, late).dispatch()
    assert young.served


def test_the_head_word_follows_the_oldest_waiter(table, pool) -> None:
    room = Room()
    (a,) = worker_queues(table, 1)
    first, second = FakeWaiter(room, "1"), FakeWaiter(room, "2")
    at(a, 1000.0).add(pool, first, [])
    at(a, 1001.0).add(pool, second, [])
    assert a.record.queue_head(pool) == int(1000.0 * 1e6) + 1
    a.leave(pool, first, "gone")
    assert a.record.queue_head(pool) == int(1001.0 * 1e6) + 1
    a.leave(pool, second, "timeout")
    assert a.record.queue_head(pool) == 0


def test_the_head_word_is_not_folded_into_the_retired_record(table, pool) -> None:
    room = Room()
    (a,) = worker_queues(table, 1)
    at(a, 1000.0).add(pool, FakeWaiter(room, "w"), [])
    table.workers.retire(0)
    assert table.workers.retired.queue_head(pool) == 0


def test_queue_ahead_sees_long_waiters_in_any_worker_of_the_generation(table, pool) -> None:
    room = Room()
    a, b, c = worker_queues(table, 3, generations=(1, 1, 2))
    table.bump_generation()
    picker = Upstreams(table, b.record.words)   # worker b's view (its own pool "default" is 0)
    own = picker.pools["default"]
    now = 1001.0
    assert not picker.queue_ahead(own, now)
    at(c, 1000.0).add(pool, FakeWaiter(room, "other generation"), [])
    assert not picker.queue_ahead(own, now)    # its pool indexes are another config's
    sticky = FakeWaiter(room, "sticky", pinned=True)
    at(a, 1000.0).add(pool, sticky, [])
    assert not picker.queue_ahead(own, now)    # waits for its own member only
    plain = FakeWaiter(room, "plain")
    at(a, 1000.1).add(pool, plain, [])
    assert picker.queue_ahead(own, now)        # waited 0.9 s
    assert not picker.queue_ahead(own, 1000.1 + ORDER_AFTER / 2)  # a few ms: not yet
    a.leave(pool, plain, "gone")
    assert not picker.queue_ahead(own, now)


def test_the_worker_left_the_room_is_woken_at_once_and_serves_its_waiter(table, pool) -> None:
    """Issue 28: a place left for another worker's older waiter must not idle until that
    worker polls. The worker whose request ended wakes the owner of the oldest waiter (its
    record index) when the place is made, its own younger waiter lets the place go by, and a
    few milliseconds of age are enough to go first."""
    room = Room()
    a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    b.wake = woken.append
    old, young = FakeWaiter(room, "old"), FakeWaiter(room, "young")
    assert at(a, 1000.000).add(pool, old, [])
    assert at(b, 1000.010).add(pool, young, [])  # 10 ms younger: enough to wait its turn
    room.free = 1
    at(b, 1000.011).soon()      # b's request ended: the place is made
    b.loop._run_after()         # b's own dispatch, once the handler returned
    assert woken == [0] and not young.served  # worker 0 (a) was woken for its waiter
    at(a, 1000.011).dispatch()  # what a's eventfd handler does
    assert old.served and room.free == 0
    assert handed_over(b, table, pool) == 1   # one place, one hand-over


def test_a_poll_wakes_nobody(table, pool) -> None:
    """Only a freed place is handed over: a worker whose waiters are younger, polling with no
    place made, neither takes a place nor wakes the older waiter's worker for nothing (the
    worker with the oldest waiter polls faster itself)."""
    room = Room()
    a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    a.wake = b.wake = woken.append
    old, young = FakeWaiter(room, "old"), FakeWaiter(room, "young")
    assert at(a, 1000.000).add(pool, old, [])
    assert at(b, 1000.010).add(pool, young, [])
    room.free = 1               # room from a heartbeat: no request ended anywhere
    at(b, 1000.011)._on_timer(1000.011)
    assert woken == [] and not young.served and room.free == 1
    assert handed_over(b, table, pool) == 0
    at(a, 1000.011)._on_timer(1000.011)
    assert old.served and room.free == 0   # the oldest waiter's own poll took it


def handed_over(queue: FrontQueue, table: Table, pool: PoolView) -> int:
    return int(queue.record.words[pool_counters_at(table.capacity, pool.index)
                                  + PC_QUEUE_HANDOFFS])


def test_waiters_within_a_millisecond_do_not_hand_the_room_back_and_forth(table, pool) -> None:
    room = Room()
    a, b = worker_queues(table)
    woken: list[int] = []
    b.wake = woken.append
    first, second = FakeWaiter(room, "first"), FakeWaiter(room, "second")
    assert at(a, 1000.0000).add(pool, first, [])
    assert at(b, 1000.0005).add(pool, second, [])
    room.free = 1
    at(b, 1000.001).dispatch()
    assert second.served and woken == []


def queues_with_pools(table: Table, pool: PoolView) -> tuple[FrontQueue, FrontQueue]:
    a, b = worker_queues(table)
    bases = [a.record.base, b.record.base]
    fresh = []
    for old in (a, b):
        q = FrontQueue(old.loop, table.workers, old.record, lambda: bases, None, [pool])
        fresh.append(q)
    return fresh[0], fresh[1]


def test_a_worker_with_no_waiters_wakes_the_oldest_waiters_worker_when_a_request_ends(
        table, pool) -> None:
    """Issue 28: the room a finished request makes in a worker that has no waiters of its
    own is owed to another worker's waiter; it is woken from soon() (when the request ends,
    before this worker's client can send its next request and take the room), not when it
    next polls."""
    room = Room()
    a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    b.wake = woken.append
    old = FakeWaiter(room, "old")
    assert at(a, 1000.0).add(pool, old, [])
    room.free = 1
    at(b, 1000.001).soon()          # b's request ended; b has nobody waiting
    assert woken == [0]
    assert not b.due                # and nothing of its own to try
    at(a, 1000.001).dispatch()      # a's eventfd handler
    assert old.served
    assert b.record.words[pool_counters_at(table.capacity, pool.index) + PC_QUEUE_HANDOFFS] == 1


def test_soon_wakes_the_other_worker_only_when_its_waiter_came_first(table, pool) -> None:
    room = Room()
    a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    a.wake = b.wake = woken.append
    assert at(a, 1000.000).add(pool, FakeWaiter(room, "a's"), [])
    assert at(b, 1000.010).add(pool, FakeWaiter(room, "b's"), [])
    at(a, 1000.011).soon()          # a's own waiter is the oldest: a's dispatch takes it
    assert woken == [] and a.due
    at(b, 1000.011).soon()          # b's is younger by 10 ms: a is woken now
    assert woken == [0]


def test_soon_reads_nothing_but_the_head_words_when_nobody_waits(table, pool) -> None:
    _a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    b.wake = woken.append
    at(b, 1000.0).soon()
    assert woken == [] and not b.due
    assert FrontQueue(b.loop, table.workers, b.record).queueing == []  # no pools given
    off = PoolView(1, PoolSettings(name="off", queue_timeout=0), HttpSettings())
    assert [p for p, _ in FrontQueue(b.loop, table.workers, b.record, list, None,
                                     [pool, off]).queueing] == [pool]


def test_a_room_is_offered_to_waiters_as_soon_as_the_handler_that_made_it_returns(
        table, pool) -> None:
    """Not after the rest of the loop's batch of events: the place would idle meanwhile."""
    room = Room()
    a, _b = queues_with_pools(table, pool)
    waiter = FakeWaiter(room, "w")
    assert at(a, 1000.0).add(pool, waiter, [])
    seen = []

    def handler() -> None:   # a session's event: its request ends, the room is made
        room.free = 1
        a.soon()
        a.soon()             # twice in one handler: one dispatch
        seen.append(waiter.served)

    a.loop.after(handler)
    a.loop._run_after()
    assert seen == [False] and waiter.served and not a.due


def test_places_a_worker_does_not_take_go_to_the_next_waiter_after_the_grace(
        table, pool) -> None:
    """Issue 28, on a loaded machine: the worker holding the oldest waiter does not run, and
    every place another worker frees was left for it and stood idle (traced: 10-20 ms). Once
    its head word has not moved for HANDOVER_GRACE, the other worker's own waiters take the
    places it frees."""
    room = Room()
    a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    b.wake = woken.append
    old, young = FakeWaiter(room, "old"), FakeWaiter(room, "young")
    assert at(a, 1000.000).add(pool, old, [])
    assert at(b, 1000.010).add(pool, young, [])
    room.free = 1
    at(b, 1000.011).soon()
    b.loop._run_after()
    assert woken == [0] and not young.served
    assert b.timer.when is not None and b.timer.when <= 1000.011 + HANDOVER_GRACE + 0.001
    at(b, 1000.011 + HANDOVER_GRACE / 2).soon()   # a second place, a still asleep
    b.loop._run_after()
    assert woken == [0, 0] and not young.served
    at(b, 1000.011 + HANDOVER_GRACE + 0.001)._on_timer(b.loop.now)  # the grace is over
    assert young.served and room.free == 0 and woken == [0, 0]
    assert not old.served            # it waits on for the next place (in arrival order)


def test_the_grace_starts_again_when_the_owner_takes_a_place(table, pool) -> None:
    room = Room()
    a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    b.wake = woken.append
    first, second = FakeWaiter(room, "first"), FakeWaiter(room, "second")
    young = FakeWaiter(room, "young")
    assert at(a, 1000.000).add(pool, first, [])
    assert at(a, 1000.001).add(pool, second, [])
    assert at(b, 1000.010).add(pool, young, [])
    room.free = 1
    at(b, 1000.011).soon()
    b.loop._run_after()
    at(a, 1000.012).dispatch()       # a was woken and took it: its head moved on
    assert first.served and not young.served
    room.free = 1
    later = 1000.011 + HANDOVER_GRACE + 0.001
    at(b, later).soon()              # a answers: its next waiter is still owed the place
    b.loop._run_after()
    assert woken == [0, 0] and not young.served and room.free == 1
    at(a, later).dispatch()
    assert second.served


def test_a_past_hand_over_does_not_make_the_timer_spin(table, pool) -> None:
    """The timer looks again when a hand-over's grace ends, once: after that, the usual
    poll (a hand-over long past must not arm it every half millisecond)."""
    room = Room()
    a, b = queues_with_pools(table, pool)
    b.wake = lambda index: None
    assert at(a, 1000.000).add(pool, FakeWaiter(room, "old"), [])
    assert at(b, 1000.010).add(pool, FakeWaiter(room, "young"), [])
    at(b, 1000.011).soon()
    b.loop._run_after()
    assert b.timer.when == pytest.approx(1000.011 + HANDOVER_GRACE + 0.0005)
    later = 1000.011 + HANDOVER_GRACE + 0.001
    at(b, later)._on_timer(later)     # the grace ended: b served its own (room 0: none)
    assert b.timer.when == pytest.approx(later + QUEUE_POLL)


def test_with_two_pools_a_worker_never_hands_a_place_to_itself(table, pool) -> None:
    """soon() looks at every pool that queues: a worker's own waiters of the second pool are
    its own, not another worker's to wake."""
    other = PoolView(1, PoolSettings(name="other"), HttpSettings())
    a, b = worker_queues(table)
    bases = [a.record.base, b.record.base]
    a = FrontQueue(a.loop, table.workers, a.record, lambda: bases, None, [pool, other])
    b = FrontQueue(b.loop, table.workers, b.record, lambda: bases, None, [pool, other])
    woken: list[int] = []
    a.wake = b.wake = woken.append
    room = Room()
    assert at(b, 1000.000).add(pool, FakeWaiter(room, "b's, pool 0"), [])
    assert at(a, 1000.001).add(other, FakeWaiter(room, "a's, pool 1"), [])
    at(a, 1000.010).soon()   # a's request ended: b's pool-0 waiter is owed; a's own is a's
    assert woken == [1]


# --- ranks (issue 24): a waiter on a connection with no quick exchange behind it ranks the
# pool's queue_fresh_offset (1 s in these tests; 0 by default) after its arrival
# (hbfork.core.queue_order)

def served_order(room: Room, queue: FrontQueue, waiters: list[FakeWaiter], now: float) -> list:
    """Free one place at a time and dispatch: the names in the order they were served."""
    order = []
    for _ in waiters:
        room.free = 1
        at(queue, now).dispatch()
        order += [w.name for w in waiters if w.served and w.name not in order]
    return order


def test_a_returning_waiter_passes_a_fresh_one_that_came_first(table, pool) -> None:
    room = Room()
    (a,) = worker_queues(table, 1)
    fresh = FakeWaiter(room, "fresh", returning=False)
    back = FakeWaiter(room, "back")
    assert at(a, 1000.0).add(pool, fresh, [])
    assert a.record.queue_head(pool) == rank_word(1000.0, 1.0)  # published: its rank
    assert at(a, 1000.3).add(pool, back, [])
    assert a.record.queue_head(pool) == rank_word(1000.3, 0.0)  # the returning one is first now
    assert fresh.queued_at == 1000.0 and back.queued_at == 1000.3  # arrivals, for timeouts
    assert served_order(room, a, [fresh, back], 1000.4) == ["back", "fresh"]
    assert len(a) == 0 and a.record.queue_head(pool) == 0


def test_a_fresh_waiter_that_waited_past_the_offset_goes_first(table, pool) -> None:
    room = Room()
    (a,) = worker_queues(table, 1)
    fresh = FakeWaiter(room, "fresh", returning=False)
    back = FakeWaiter(room, "back")
    at(a, 1000.0).add(pool, fresh, [])
    at(a, 1001.5).add(pool, back, [])   # 1.5 s later: the fresh one's rank (1001.0) is lower
    assert served_order(room, a, [fresh, back], 1001.6) == ["fresh", "back"]


def test_waiters_of_each_kind_keep_their_arrival_order(table, pool) -> None:
    room = Room()
    (a,) = worker_queues(table, 1)
    waiters = [FakeWaiter(room, "f1", returning=False), FakeWaiter(room, "r1"),
               FakeWaiter(room, "f2", returning=False), FakeWaiter(room, "r2"),
               FakeWaiter(room, "f3", returning=False)]
    for i, waiter in enumerate(waiters):
        at(a, 1000.0 + i * 0.1).add(pool, waiter, [])
    assert served_order(room, a, waiters, 1000.5) == ["r1", "r2", "f1", "f2", "f3"]


def test_offset_zero_is_plain_arrival_order(table) -> None:
    room = Room()
    fifo = PoolView(0, PoolSettings(name="default", queue_fresh_offset=0.0), HttpSettings())
    (a,) = worker_queues(table, 1)
    waiters = [FakeWaiter(room, "f1", returning=False), FakeWaiter(room, "r1"),
               FakeWaiter(room, "f2", returning=False)]
    for i, waiter in enumerate(waiters):
        at(a, 1000.0 + i * 0.1).add(fifo, waiter, [])
    assert waiters[0].queue_rank == rank_word(1000.0, 0.0)
    assert served_order(room, a, waiters, 1000.5) == ["f1", "r1", "f2"]


def test_the_published_head_skips_pinned_waiters_of_either_kind(table, pool) -> None:
    room = Room()
    (a,) = worker_queues(table, 1)
    at(a, 1000.0).add(pool, FakeWaiter(room, "pinned back", pinned=True), [])
    at(a, 1000.1).add(pool, FakeWaiter(room, "pinned fresh", pinned=True, returning=False), [])
    assert a.record.queue_head(pool) == 0
    at(a, 1000.2).add(pool, FakeWaiter(room, "fresh", returning=False), [])
    assert a.record.queue_head(pool) == rank_word(1000.2, 1.0)
    at(a, 1000.3).add(pool, FakeWaiter(room, "back"), [])
    assert a.record.queue_head(pool) == rank_word(1000.3, 0.0)


def test_a_closed_waiter_leaves_from_a_mixed_line(table, pool) -> None:
    room = Room()
    (a,) = worker_queues(table, 1)
    fresh, back = FakeWaiter(room, "fresh", returning=False), FakeWaiter(room, "back")
    at(a, 1000.0).add(pool, fresh, [])
    at(a, 1000.1).add(pool, back, [])
    back.closed = True
    room.free = 1
    at(a, 1000.2).dispatch()
    assert fresh.served and len(a) == 0 and pool not in a.waiting


def test_a_place_goes_to_another_workers_returning_waiter_before_our_fresh_one(
        table, pool) -> None:
    """The rank, not the arrival, is what crosses workers: worker a's fresh waiter came first,
    worker b's returning one ranks first; the place a frees is handed over to b."""
    room = Room()
    a, b = queues_with_pools(table, pool)
    woken: list[int] = []
    a.wake = woken.append
    fresh, back = FakeWaiter(room, "fresh", returning=False), FakeWaiter(room, "back")
    assert at(a, 1000.0).add(pool, fresh, [])
    assert at(b, 1000.3).add(pool, back, [])
    room.free = 1
    at(a, 1000.4).soon()        # a's request ended: the place is b's waiter's
    a.loop._run_after()         # a's own dispatch lets it go by
    assert woken == [1] and not fresh.served
    at(b, 1000.4).dispatch()    # b's eventfd handler
    assert back.served
    room.free = 1
    at(a, 1000.5).dispatch()
    assert fresh.served


def test_queue_ahead_compares_ranks(table, pool) -> None:
    """A new request goes behind waiters that rank ORDER_AFTER or more ahead of it: a new
    connection's request (ranked the offset later) behind a returning waiter at once; a
    returning one behind a fresh waiter only once that has waited the offset and more."""
    room = Room()
    a, b = worker_queues(table, 2)
    table.bump_generation()
    picker = Upstreams(table, b.record.words)
    own = picker.pools["default"]
    at(a, 1000.0).add(pool, FakeWaiter(room, "fresh", returning=False), [])
    assert not picker.queue_ahead(own, 1000.5)               # returning request, at 1000.5
    assert picker.queue_ahead(own, 1000.5 + 1.0)             # fresh request, at 1000.5
    assert picker.queue_ahead(own, 1000.0 + 1.0 + ORDER_AFTER)  # returning, 1.1 s later


def test_a_pools_offset_is_its_own_or_the_balance_sections() -> None:
    cfg = loads('[[member]]\naddress = "10.0.0.11:8080"\n[balance]\nqueue_fresh_offset = 0\n'
                '[[pool]]\nname = "p"\nmembers = ["10.0.0.12:8080"]\nqueue_fresh_offset = 2.5\n'
                '[[pool]]\nname = "q"\nmembers = ["10.0.0.13:8080"]\n')
    views = {p.name: PoolView(0, p, cfg.http, cfg.balance) for p in cfg.pools}
    assert views["p"].queue_fresh_offset == 2.5
    assert views["q"].queue_fresh_offset == 0.0   # from [balance]: plain arrival order
