"""hbfork.table.worker_record and worker_area: one worker's record, read and written by name.

Real segments (named after a fake master pid, always unlinked); what a record's methods write
is read back through its readers' copies, the way the status page reads it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from hbfork.core.members import ELIGIBLE, Member
from hbfork.table.layout import (
    MAX_POOLS,
    MC_CONNECT_FAILURES,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    PC_DEQUEUED,
    PC_NO_MEMBER,
    PC_QUEUE_FULL,
    PC_QUEUE_HEAD,
    PC_QUEUED,
    PC_STATUS_CLASS,
    PC_STICKY,
    PC_STICKY_LOST,
    POOL_COUNTERS,
    RC_ERRORS,
    RC_REQUESTS,
    ROUTE_COUNTERS,
    STATE_BOOTING,
    STATE_DRAINING,
    STATE_EXITED,
    STATE_FREE,
    STATE_READY,
    STICKY_HIT,
    TLS_RESULTS,
    W_STATS_SEQ,
    WK_ACCEPTED,
    WK_BYTES_IN,
    WK_BYTES_OUT,
    WK_CLIENT_ERRORS,
    WK_CONNECT_FAILURES,
    WK_CONNECTIONS,
    WK_FAST_PATH,
    WK_MEMBERS,
    WK_NO_MEMBER,
    WK_QUEUE_COUNT,
    WK_QUEUE_HISTOGRAM,
    WK_QUEUE_SUM,
    WK_REQUESTS,
    WK_RETRIES,
    WK_STATUS_CLASS,
    WK_TLS,
    WK_UPSTREAM_TIMEOUTS,
)
from hbfork.table.table import Table
from hbfork.table.worker_record import WorkerRecord

CAPACITY = 4
WORKERS = 3
ROUTES_AT = MAX_POOLS * POOL_COUNTERS  # in scoped_words(): pools first, then routes


@dataclass
class Place:
    """A pool or a route: only its index matters to the record."""
    index: int


@pytest.fixture
def table() -> Iterator[Table]:
    t = Table.create(CAPACITY, WORKERS, master_pid=940_000 + os.getpid() % 1000)
    yield t
    t.unlink()
    t.close()


def member(slot: int, uid: int) -> Member:
    return Member(slot=slot, uid=uid, ip=IPv4Address(0x0A000001 + slot), port=80, static=True,
                  ready=4, busy=0, first_seen=1, last_seen=1, weight=4, reason=ELIGIBLE,
                  usable=True, capacity=4)


def set_member_counters(record: WorkerRecord, slot: int, uid: int, n: int) -> None:
    """What the worker's picker (proxy.upstreams, which still indexes the words) counts."""
    at = WK_MEMBERS + slot * MEMBER_COUNTERS
    record.words[at + MC_UID] = uid
    record.words[at + MC_INFLIGHT] = 1
    record.words[at + MC_STATUS_CLASS + 1] = n
    record.words[at + MC_CONNECT_FAILURES] = n


# --- written, then read back


def test_claim_pid_state_and_tick_read_back(table: Table) -> None:
    record = table.workers.record(1)
    record.claim(number=2, generation=7)
    record.set_pid(4242)
    assert record.identity() == (4242, 2, 7, STATE_BOOTING, 0)
    assert (record.state, record.generation) == (STATE_BOOTING, 7)
    record.set_state(STATE_READY)
    record.tick(123_456_789)
    identity = record.identity()
    assert (identity.state, identity.tick_ns) == (STATE_READY, 123_456_789)
    assert record.index == 1 and record.base == table.workers_at // 8 + table.worker_size // 8


def test_every_worker_counter_lands_in_its_word(table: Table) -> None:
    record = table.workers.record(0)
    record.claim(1, 1)
    record.count_accepted()
    record.set_connections(5)
    record.count_connect_failure()
    record.count_no_member()
    record.count_retry()
    record.count_fast_path()
    record.count_bytes(True, 100)
    record.count_bytes(False, 250)
    record.count_bytes(False, 1)
    record.count_upstream_timeout()
    record.count_client_error()
    record.count_client_error()
    record.count_tls("resumed")
    words = record.fixed_words()
    assert [words[w] for w in (WK_ACCEPTED, WK_CONNECTIONS, WK_CONNECT_FAILURES, WK_NO_MEMBER,
                               WK_RETRIES, WK_FAST_PATH, WK_BYTES_IN, WK_BYTES_OUT,
                               WK_UPSTREAM_TIMEOUTS, WK_CLIENT_ERRORS)] == \
        [1, 5, 1, 1, 1, 1, 100, 251, 1, 2]
    assert words[WK_TLS:WK_TLS + len(TLS_RESULTS)] == [0, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        record.count_tls("no such result")


def test_requests_count_by_class_pool_route_and_sticky_outcome(table: Table) -> None:
    record = table.workers.record(0)
    record.claim(1, 1)
    pool, route = Place(3), Place(7)
    record.count_request(200, pool, route, STICKY_HIT)
    record.count_request(503, pool, route, 2)      # lost its session's member
    record.count_request(0, pool)                  # the client left before any response
    record.count_request(404)                      # answered by the proxy: no pool
    record.count_request(200, None, Place(10_000))  # beyond MAX_ROUTES: not counted by route
    record.count_no_member(pool)
    words = record.fixed_words()
    assert words[WK_REQUESTS] == 5
    assert words[WK_STATUS_CLASS:WK_STATUS_CLASS + 5] == [0, 2, 0, 1, 1]
    generation, scoped = record.scoped_words()
    assert generation == 1
    at = 3 * POOL_COUNTERS
    assert scoped[at + PC_STATUS_CLASS:at + PC_STATUS_CLASS + 5] == [0, 1, 0, 0, 1]
    assert (scoped[at + PC_STICKY], scoped[at + PC_STICKY_LOST]) == (1, 1)
    assert scoped[at + PC_NO_MEMBER] == 1
    assert sum(scoped[:at]) == 0 and sum(scoped[at + POOL_COUNTERS:ROUTES_AT]) == 0
    route_at = ROUTES_AT + 7 * ROUTE_COUNTERS
    assert (scoped[route_at + RC_REQUESTS], scoped[route_at + RC_ERRORS]) == (2, 1)
    assert sum(scoped[ROUTES_AT:]) == 3


def test_queue_words_read_back(table: Table) -> None:
    record = table.workers.record(2)
    record.claim(1, 1)
    pool = Place(1)
    record.count_pool(pool, PC_QUEUED)
    record.count_pool(pool, PC_QUEUED)
    record.count_pool(pool, PC_QUEUED, -1)
    record.count_pool(pool, PC_QUEUE_FULL)
    record.set_queue_head(pool, 1_000_001)
    assert record.queue_head(pool) == 1_000_001
    assert record.queue_head(Place(0)) == 0
    record.observe_queue_wait(pool, 0.003)  # the 0.005 bucket (index 2)
    record.observe_queue_wait(pool, 99.0)   # beyond the last bound: +Inf
    words = record.fixed_words()
    assert words[WK_QUEUE_HISTOGRAM + 2] == 1 and words[WK_QUEUE_HISTOGRAM + 15] == 1
    assert (words[WK_QUEUE_SUM], words[WK_QUEUE_COUNT]) == (3_000 + 99_000_000, 2)
    _, scoped = record.scoped_words()
    at = POOL_COUNTERS
    assert [scoped[at + k] for k in (PC_QUEUED, PC_QUEUE_FULL, PC_DEQUEUED, PC_QUEUE_HEAD)] == \
        [1, 1, 2, 1_000_001]
    assert table.workers.queued(pool, table.workers.live_bases()) == 1


def test_records_do_not_overlap(table: Table) -> None:
    records = [table.workers.record(i) for i in range(WORKERS)]
    for record in records:
        record.claim(record.index + 1, 1)
    middle = records[1]
    middle.words[len(middle.words) - 1] = 0xFFFF   # its last route counter
    middle.words[0] = 77                            # its first word
    assert records[0].words.tolist().count(0xFFFF) == 0 and records[0].identity().pid == 0
    assert records[2].identity().pid == 0 and records[2].words[0] == 0
    assert middle.scoped_words()[1][-1] == 0xFFFF


def test_live_bases_and_in_flight_follow_the_states(table: Table) -> None:
    table.write_member(0, member(0, uid=9))
    states = (STATE_READY, STATE_DRAINING, STATE_EXITED)
    for index, state in enumerate(states):
        record = table.workers.record(index)
        record.claim(index + 1, 1)
        record.set_state(state)
        set_member_counters(record, 0, 9, 1)
    bases = table.workers.live_bases()
    assert bases == [table.workers.record(0).base, table.workers.record(1).base]
    assert table.live_records() == bases
    assert table.workers.in_flight(0, 9, bases) == 2
    assert table.workers.in_flight(0, 10, bases) == 0  # another member's counts


# --- a reused record, a reused member slot


def test_a_reused_record_starts_from_zero(table: Table) -> None:
    record = table.workers.record(0)
    record.claim(1, 1)
    record.count_request(200, Place(0), Place(0))
    record.count_bytes(True, 10)
    set_member_counters(record, 2, 5, 3)
    record.set_state(STATE_EXITED)
    assert table.workers.free_index(set()) == 0
    record.claim(4, 2)   # a new worker in the same record
    assert record.identity() == (0, 4, 2, STATE_BOOTING, 0)
    assert set(record.words.tolist()) - {4, 2, STATE_BOOTING} == {0}
    assert record.member_words(2) == [0] * MEMBER_COUNTERS
    record.free()        # the fork failed: free again
    assert set(record.words.tolist()) == {STATE_FREE}


def test_free_index_skips_taken_and_live_records(table: Table) -> None:
    for index in range(WORKERS):
        table.workers.record(index).claim(index + 1, 1)
    assert table.workers.free_index(set()) is None
    table.workers.record(1).set_state(STATE_EXITED)
    assert table.workers.free_index(set()) == 1
    assert table.workers.free_index({1}) is None


# --- retirement: totals fold into the retired record, gauges do not


def test_retiring_folds_totals_and_frees_the_record(table: Table) -> None:
    table.write_member(1, member(1, uid=11))
    pool = Place(2)
    for index, n in ((0, 3), (2, 4)):
        record = table.workers.record(index)
        record.claim(index + 1, 1)
        record.set_connections(6)                 # a gauge
        record.set_queue_head(pool, 99)           # a gauge
        record.count_pool(pool, PC_QUEUED)        # a gauge
        for _ in range(n):
            record.count_accepted()
            record.count_request(200, pool, Place(1))
        set_member_counters(record, 1, 11, n)
    seq = table.header(W_STATS_SEQ)
    table.workers.retire(0)
    table.workers.retire(2)
    assert table.header(W_STATS_SEQ) == seq + 4   # even again: readers saw it move
    retired = table.workers.retired
    words = retired.fixed_words()
    assert (words[WK_ACCEPTED], words[WK_REQUESTS], words[WK_STATUS_CLASS + 1]) == (7, 7, 7)
    assert words[WK_CONNECTIONS] == 0
    assert retired.member_words(1)[MC_UID] == 11
    assert retired.member_words(1)[MC_STATUS_CLASS + 1] == 7
    assert retired.member_words(1)[MC_CONNECT_FAILURES] == 7
    assert retired.member_words(1)[MC_INFLIGHT] == 0
    generation, scoped = retired.scoped_words()
    at = 2 * POOL_COUNTERS
    assert generation == 1 and scoped[at + PC_STATUS_CLASS + 1] == 7
    assert scoped[at + PC_QUEUED] == 0 and scoped[at + PC_QUEUE_HEAD] == 0
    assert scoped[ROUTES_AT + ROUTE_COUNTERS + RC_REQUESTS] == 7
    for index in (0, 2):
        assert set(table.workers.record(index).words.tolist()) == {0}


def test_retired_member_counters_restart_with_the_slots_new_member(table: Table) -> None:
    table.write_member(1, member(1, uid=11))
    old = table.workers.record(0)
    old.claim(1, 1)
    set_member_counters(old, 1, 11, 5)
    set_member_counters(old, 2, 22, 5)   # a member that left its slot before the fold
    table.workers.retire(0)
    table.write_member(1, member(1, uid=12))   # the slot is reused
    new = table.workers.record(1)
    new.claim(2, 1)
    set_member_counters(new, 1, 12, 2)
    table.workers.retire(1)
    retired = table.workers.retired
    assert retired.member_words(1)[MC_UID] == 12
    assert retired.member_words(1)[MC_STATUS_CLASS + 1] == 2   # not 5 + 2
    assert retired.member_words(2) == [0] * MEMBER_COUNTERS


def test_retired_pool_counters_are_the_newest_generations(table: Table) -> None:
    pool = Place(0)
    for index, generation in ((0, 2), (1, 1), (2, 3)):
        record = table.workers.record(index)
        record.claim(index + 1, generation)
        record.count_request(500, pool, Place(0))
    table.workers.retire(0)          # generation 2: kept
    table.workers.retire(1)          # generation 1's pools are gone: not folded
    generation, scoped = table.workers.retired.scoped_words()
    assert generation == 2 and scoped[PC_STATUS_CLASS + 4] == 1
    table.workers.retire(2)          # generation 3: the counters start over as its own
    generation, scoped = table.workers.retired.scoped_words()
    assert generation == 3 and scoped[PC_STATUS_CLASS + 4] == 1
    assert scoped[ROUTES_AT + RC_ERRORS] == 1
    assert table.workers.retired.fixed_words()[WK_REQUESTS] == 3   # totals keep every one


# --- agreements with other modules, and the views' lifetime


def test_sticky_outcomes_agree_with_the_proxys() -> None:
    from hbfork.proxy.http.state import STICKY_HIT as PROXY_STICKY_HIT

    assert STICKY_HIT == PROXY_STICKY_HIT


def test_closing_the_table_releases_every_records_view() -> None:
    t = Table.create(CAPACITY, WORKERS, master_pid=941_000 + os.getpid() % 1000)
    try:
        record = t.workers.record(0)
        record.claim(1, 1)
        record.count_retry()
    finally:
        t.unlink()
        t.close()  # would raise BufferError if a record's view were still exported
    with pytest.raises(ValueError):
        record.count_retry()
