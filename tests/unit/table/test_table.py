"""hbfork.table: the shared-memory member table, its seqlocked records and the worker records.

These tests create real segments (named after a fake master pid, always unlinked) and, for the
torn-read hammer test, fork one writer process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from hbfork.core.balancer import pack_word, unpack_word
from hbfork.core.members import DISABLED, DRAINED, ELIGIBLE, IN_ERROR, STALE, Member
from hbfork.table.layout import (
    HEARTBEAT_RESULTS,
    MAGIC,
    MC_CONNECT_FAILURES,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    MEMBER_SIZE,
    REASONS,
    STATE_EXITED,
    STATE_READY,
    W_GENERATION,
    W_MASTER_PID,
    W_STATS_SEQ,
    WK_ACCEPTED,
    WK_BYTES_IN,
    WK_HISTOGRAM,
    WK_LATENCY_COUNT,
    WK_MEMBERS,
    WK_PID,
    WK_REQUESTS,
    WK_STATE,
    WK_STATUS_CLASS,
    MemberRecord,
    encode_member,
    segment_name,
)
from hbfork.table.table import Table, unlink_segment

FAKE_PID = 900_000 + os.getpid() % 1000
CAPACITY = 8
WORKERS = 4
INT32_MAX = 2**31 - 1


def shm_path(name: str) -> str:
    return f"/dev/shm/{name}"


@pytest.fixture
def table() -> Iterator[Table]:
    t = Table.create(CAPACITY, WORKERS, master_pid=FAKE_PID)
    try:
        yield t
    finally:
        t.unlink()
        try:
            t.close()
        except BufferError:
            pass  # a test left a view behind; the mapping goes with the process
    assert not os.path.exists(shm_path(t.name))


def make_member(slot: int = 0, **fields) -> Member:
    values = dict(slot=slot, uid=100 + slot, ip=IPv4Address("10.0.0.1"), port=8080,
                  static=True, lbset=2, name="web-1", ready=49, busy=1,
                  first_seen=1_000, last_seen=2_000, heartbeats=17, error_until=0, errors=3,
                  weight=49, reason=ELIGIBLE)
    values.update(fields)
    return Member(**values)


def as_record(m: Member) -> MemberRecord:
    return MemberRecord(
        slot=m.slot, uid=m.uid, ip=m.ip, port=m.port, static=m.static, drained=m.drained,
        disabled=m.disabled, lbset=m.lbset, reason=m.reason, ready=m.ready, busy=m.busy,
        weight=m.weight, first_seen=m.first_seen, last_seen=m.last_seen,
        error_until=m.error_until, heartbeats=m.heartbeats, errors=m.errors, name=m.name)


def member_seq(t: Table, slot: int) -> int:
    return t.words[(t.members_at + slot * MEMBER_SIZE) // 8]


# --- lifetime and header


def test_create_lays_out_a_fresh_table(table: Table) -> None:
    assert table.name == segment_name(FAKE_PID) == f"hbfork-{FAKE_PID}"
    assert os.stat(shm_path(table.name)).st_mode & 0o777 == 0o600
    assert bytes(table.shm.buf[:8]) == MAGIC
    assert (table.capacity, table.worker_capacity) == (CAPACITY, WORKERS)
    assert table.generation == 1
    assert table.header(W_MASTER_PID) == FAKE_PID
    assert table.header(W_STATS_SEQ) == 2
    assert table.weight_words() == [0] * CAPACITY
    assert all(member_seq(table, slot) == 2 for slot in range(CAPACITY))
    assert table.members() == []
    assert [table.uid(slot) for slot in range(CAPACITY)] == [0] * CAPACITY
    assert table.workers_at % 8 == 0 and table.members_at % 8 == 0


def test_create_replaces_a_leftover_segment() -> None:
    first = Table.create(CAPACITY, WORKERS, master_pid=FAKE_PID)
    try:
        first.bump_generation()
        second = Table.create(2, 1, master_pid=FAKE_PID)
        try:
            assert second.capacity == 2 and second.generation == 1
        finally:
            second.close()
    finally:
        first.close()
        assert unlink_segment(first.name) is True
        assert unlink_segment(first.name) is False


def test_generation_and_header_words(table: Table) -> None:
    table.bump_generation()
    table.bump_generation()
    assert table.generation == 3 == table.header(W_GENERATION)
    table.set_header(20, 12345)
    assert table.header(20) == 12345


def test_attach_in_process_sees_the_same_memory(table: Table) -> None:
    other = Table.attach(table.name)
    try:
        assert not other.owner and table.owner
        assert (other.capacity, other.worker_capacity) == (CAPACITY, WORKERS)
        table.write_member(3, make_member(3))
        table.bump_generation()
        assert other.generation == table.generation
        assert other.read_member(3) == as_record(make_member(3))
    finally:
        other.close()
    assert os.path.exists(shm_path(table.name))  # closing an attachment does not unlink


def test_attach_refuses_a_foreign_segment() -> None:
    from multiprocessing import shared_memory

    from hbfork.table.table import _open

    name = f"hbfork-test-foreign-{FAKE_PID}"
    shm = _open(name, True, 4096)
    try:
        with pytest.raises(ValueError, match="not an hbfork table"):
            Table.attach(name)
    finally:
        shm.close()
        unlink_segment(name)
    assert isinstance(shm, shared_memory.SharedMemory)


ATTACH_SCRIPT = textwrap.dedent("""
    import sys
    from multiprocessing import resource_tracker
    from hbfork.table.table import Table

    table = Table.attach(sys.argv[1])
    print(table.generation, table.capacity, table.read_member(1).port)
    print("tracker", resource_tracker._resource_tracker._pid)
    if sys.argv[2] == "close":
        table.close()
""")


@pytest.mark.parametrize("ending", ["close", "just-exit"])
def test_attach_from_another_process_leaves_no_trace(table: Table, ending: str) -> None:
    table.write_member(1, make_member(1, port=8081))
    table.bump_generation()
    done = subprocess.run([sys.executable, "-c", ATTACH_SCRIPT, table.name, ending],
                          capture_output=True, text=True, timeout=60)
    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"2 {CAPACITY} 8081", "tracker None"]
    # neither the process nor a resource tracker unlinked it
    assert os.path.exists(shm_path(table.name))
    assert table.read_member(1).port == 8081


# --- member records


def test_member_round_trip_ipv4(table: Table) -> None:
    m = make_member(2)
    assert table.write_member(2, m) is True
    record = table.read_member(2)
    assert record == as_record(m)
    assert record.address == "10.0.0.1:8080" and record.label == "web-1"
    assert table.uid(2) == m.uid
    assert table.members() == [record]


def test_member_round_trip_ipv6(table: Table) -> None:
    m = make_member(5, ip=IPv6Address("fd00::1:2"), port=443, name="", static=False,
                    drained=True, disabled=True, reason=DISABLED, weight=0)
    table.write_member(5, m)
    record = table.read_member(5)
    assert record == as_record(m)
    assert record.ip == IPv6Address("fd00::1:2")
    assert record.address == "[fd00::1:2]:443" == record.label


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_round_trips(table: Table, reason: str) -> None:
    table.write_member(0, make_member(0, reason=reason))
    assert table.read_member(0).reason == reason


def test_extreme_values_round_trip(table: Table) -> None:
    m = make_member(7, ready=INT32_MAX, busy=INT32_MAX, weight=INT32_MAX, port=65535,
                    lbset=65535, first_seen=2**63, last_seen=2**64 - 1, error_until=2**62,
                    heartbeats=2**64 - 1, errors=2**40, uid=2**64 - 1)
    table.write_member(7, m)
    assert table.read_member(7) == as_record(m)


def test_long_names_are_cut_to_48_bytes(table: Table) -> None:
    table.write_member(0, make_member(0, name="x" * 100))
    assert table.read_member(0).name == "x" * 48
    table.write_member(1, make_member(1, name="nœud-é"))
    assert table.read_member(1).name == "nœud-é"


def test_weight_words_and_uids(table: Table) -> None:
    table.write_member(1, make_member(1, weight=7, lbset=3))
    table.write_member(4, make_member(4, weight=0, lbset=1, reason=STALE))
    words = table.weight_words()
    assert words[1] == pack_word(7, 3)
    assert unpack_word(words[4]) == (0, 1)  # weight 0: never picked, whatever its lbset
    assert [w for i, w in enumerate(words) if i not in (1, 4)] == [0] * (CAPACITY - 2)
    assert (table.uid(1), table.uid(4)) == (101, 104)


def test_write_member_reports_weight_changes(table: Table) -> None:
    assert table.write_member(0, make_member(0, weight=5)) is True
    assert table.write_member(0, make_member(0, weight=5, busy=9)) is False  # same word
    assert table.write_member(0, make_member(0, weight=5, lbset=9)) is True  # lbset is in it
    assert table.write_member(0, make_member(0, weight=0, lbset=0, reason=IN_ERROR)) is True
    assert table.write_member(0, None) is False  # the word was already 0


def test_freeing_a_slot(table: Table) -> None:
    table.write_member(3, make_member(3, weight=9))
    assert table.write_member(3, None) is True
    assert table.read_member(3) is None
    assert table.weight_words()[3] == 0 and table.uid(3) == 0
    assert table.members() == []
    # reused by a new member
    table.write_member(3, make_member(3, uid=555, reason=DRAINED, drained=True, weight=0))
    assert table.read_member(3).uid == 555 and table.read_member(3).drained


def test_seqlock_counter_stays_even_and_moves(table: Table) -> None:
    for n in range(1, 4):
        table.write_member(6, make_member(6, ready=n))
        assert member_seq(table, 6) == 2 + 2 * n
    assert member_seq(table, 5) == 2  # other slots untouched


def test_read_member_retries_while_a_write_is_in_progress(table: Table) -> None:
    table.write_member(0, make_member(0))
    index = (table.members_at) // 8
    table.words[index] += 1  # as if the writer stopped half-way
    with pytest.raises(RuntimeError, match="kept changing"):
        table.read_member(0)
    table.words[index] += 1
    assert table.read_member(0) == as_record(make_member(0))


def test_read_member_waits_out_a_preempted_writer(table: Table) -> None:
    """A writer descheduled mid-write for 20 ms must not make readers fail."""
    table.write_member(0, make_member(0))
    index = table.members_at // 8
    table.words[index] += 1
    new = make_member(0, ready=7)

    def finish() -> None:
        at = table.members_at + 8
        table.shm.buf[at:at + len(encode_member(new))] = encode_member(new)
        table.words[index] += 1

    timer = threading.Timer(0.02, finish)
    timer.start()
    try:
        assert table.read_member(0) == as_record(new)
    finally:
        timer.cancel()
        timer.join()


# --- counters


def test_heartbeat_counters(table: Table) -> None:
    counters = table.heartbeat_counters()
    assert list(counters) == list(HEARTBEAT_RESULTS)
    assert set(counters.values()) == {0}
    table.count_heartbeat("accepted")
    table.count_heartbeat("accepted")
    table.count_heartbeat("bad_number", 3)
    table.count_heartbeat("table_full")
    counters = table.heartbeat_counters()
    assert (counters["accepted"], counters["bad_number"], counters["table_full"]) == (2, 3, 1)
    assert sum(counters.values()) == 6
    with pytest.raises(ValueError):
        table.count_heartbeat("no_such_result")


def test_heartbeat_counters_cover_every_reject_reason() -> None:
    from hbfork.core.heartbeat import REJECT_REASONS

    assert set(REJECT_REASONS) <= set(HEARTBEAT_RESULTS)
    for reason in ("unknown_source", "unknown_port", "table_full"):
        assert reason in HEARTBEAT_RESULTS


def _fill_worker(table: Table, index: int, base: int, member_uids: dict[int, int]) -> None:
    record = table.workers.record(index).words  # as the worker would have counted
    record[WK_PID] = 4000 + index
    record[WK_STATE] = STATE_READY
    record[WK_ACCEPTED] = base
    record[WK_REQUESTS] = base * 2
    record[WK_STATUS_CLASS + 1] = base * 3  # 2xx
    record[WK_BYTES_IN] = base * 100
    record[WK_HISTOGRAM] = base
    record[WK_LATENCY_COUNT] = base
    for slot, uid in member_uids.items():
        at = WK_MEMBERS + slot * MEMBER_COUNTERS
        record[at + MC_UID] = uid
        record[at + MC_INFLIGHT] = 1
        record[at + MC_STATUS_CLASS + 1] = base
        record[at + MC_CONNECT_FAILURES] = base


def test_retire_worker_folds_counters_into_the_retired_record(table: Table) -> None:
    table.write_member(1, make_member(1, uid=11))
    table.write_member(2, make_member(2, uid=22))
    retired_index = table.worker_capacity
    _fill_worker(table, 0, 5, {1: 11, 2: 99})   # slot 2's counters belong to a gone member
    _fill_worker(table, 3, 7, {1: 11})
    seq = table.header(W_STATS_SEQ)
    table.workers.retire(0)
    table.workers.retire(3)
    assert table.header(W_STATS_SEQ) == seq + 4
    retired = table.workers.record(retired_index).words
    freed = table.workers.record(0).words
    assert retired[WK_ACCEPTED] == 12 and retired[WK_REQUESTS] == 24
    assert retired[WK_STATUS_CLASS + 1] == 36 and retired[WK_BYTES_IN] == 1200
    assert retired[WK_HISTOGRAM] == 12 and retired[WK_LATENCY_COUNT] == 12
    slot1 = WK_MEMBERS + 1 * MEMBER_COUNTERS
    slot2 = WK_MEMBERS + 2 * MEMBER_COUNTERS
    assert retired[slot1 + MC_UID] == 11
    assert retired[slot1 + MC_STATUS_CLASS + 1] == 12
    assert retired[slot1 + MC_CONNECT_FAILURES] == 12
    assert retired[slot1 + MC_INFLIGHT] == 0  # a gauge, not a total
    assert retired[slot2 + MC_UID] == 0 and retired[slot2 + MC_STATUS_CLASS + 1] == 0
    # the retired worker's own record is free again, and the others untouched
    assert set(freed.tolist()) == {0}
    assert table.workers.free_index(set()) == 0
    assert table.workers.free_index({0}) == 1


def test_retired_member_counters_restart_when_the_slot_has_a_new_member(table: Table) -> None:
    table.write_member(1, make_member(1, uid=11))
    _fill_worker(table, 0, 5, {1: 11})
    table.workers.retire(0)
    table.write_member(1, make_member(1, uid=12))  # slot reused
    _fill_worker(table, 1, 2, {1: 12})
    table.workers.retire(1)
    retired = table.workers.retired.words
    at = WK_MEMBERS + MEMBER_COUNTERS
    assert retired[at + MC_UID] == 12
    assert retired[at + MC_STATUS_CLASS + 1] == 2  # not 5 + 2
    assert retired[WK_ACCEPTED] == 7               # worker totals keep adding up


def test_free_worker_index_skips_live_records(table: Table) -> None:
    for index in range(WORKERS):
        _fill_worker(table, index, 1, {})
    assert table.workers.free_index(set()) is None
    table.workers.record(2).set_state(STATE_EXITED)
    assert table.workers.free_index(set()) == 2
    assert table.workers.free_index({2}) is None


# --- torn reads under concurrent writes


STOP_WORD = 20      # unused header words the test uses to talk to the writer
WRITES_WORD = 21
HAMMER_SLOTS = (0, 1, 5)


def consistent_member(slot: int, n: int) -> Member:
    """Every field derives from `n`, so a record mixing two writes shows."""
    return Member(slot=slot, uid=n + 1, ip=IPv4Address(n & 0xFFFFFFFF), port=n % 65535 + 1,
                  static=bool(n & 1), drained=bool(n & 2), disabled=bool(n & 4),
                  lbset=n & 0xFFFF, name=f"m{n}" * 4, ready=n & INT32_MAX, busy=n & INT32_MAX,
                  weight=n & INT32_MAX, first_seen=n, last_seen=n, error_until=n,
                  heartbeats=n, errors=n, reason=REASONS[n % len(REASONS)])


def _writer(table: Table) -> None:
    """The child: rewrite records until told to stop (or 60 s, should the parent vanish)."""
    n = 1 << 20  # start high so values of every byte width appear
    give_up = time.monotonic() + 60
    while table.header(STOP_WORD) == 0:
        for slot in HAMMER_SLOTS:
            table.write_member(slot, consistent_member(slot, n))
            n += 7919  # a prime stride: all bytes of the record change often
        table.set_header(WRITES_WORD, table.header(WRITES_WORD) + len(HAMMER_SLOTS))
        if n & 0xFF < 8 and time.monotonic() > give_up:
            break


def _reap(pid: int) -> int:
    """Wait for the child; kill it if it does not stop. Returns its exit status."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def test_no_torn_reads_while_the_master_rewrites_records(table: Table) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            _writer(table)
            status = 0
        finally:
            os._exit(status)
    reads = torn = empty = 0
    seen: set[int] = set()
    status = None
    try:
        end = time.monotonic() + 2.0
        while reads < 200_000 and time.monotonic() < end:
            for slot in HAMMER_SLOTS:
                record = table.read_member(slot)
                reads += 1
                if record is None:
                    empty += 1
                    continue
                n = record.first_seen
                if record != as_record(consistent_member(slot, n)):
                    torn += 1
                else:
                    seen.add(n)
    finally:
        table.set_header(STOP_WORD, 1)
        status = _reap(pid)
    assert status == 0, f"writer exited with status {status}"
    writes = table.header(WRITES_WORD)
    assert torn == 0, f"{torn} torn records in {reads} reads"
    assert empty < reads / 2
    # the reads really raced the writes
    assert writes > 1000, writes
    # (hundreds at least even when other processes keep both CPUs busy; ~200k on an idle box)
    assert len(seen) > 100, (len(seen), reads, writes)
