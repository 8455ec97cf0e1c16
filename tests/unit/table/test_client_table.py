"""hbfork.table.client_table: the per-client limit table shared by forked processes.

The cross-process tests fork real children (as test_table's torn-read test does): the table
is shared memory and its locks process-shared semaphores, so one process cannot show them."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from hbfork.core.client_limits import BUCKET, NS, Bucket, take
from hbfork.table.client_table import (
    CONNS,
    KEY,
    LOCK_WAIT,
    SLOT_WORDS,
    STRIPES,
    ClientTable,
    key_hash,
)

T0 = 1_000 * NS


def in_children(n: int, work: object) -> None:
    """Run `work(i)` in `n` forked children, started together; fail unless each exits 0."""
    go = os.pipe()
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.read(go[0], 1)
                work(i)  # type: ignore[operator]
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.write(go[1], b"x" * n)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_key_hash_is_nonzero_and_stable() -> None:
    assert key_hash("10.0.0.1") == key_hash("10.0.0.1") != 0
    assert key_hash("10.0.0.1") != key_hash("10.0.0.2")


def test_one_client_charged_from_two_processes_is_counted_exactly() -> None:
    """Two processes charge the same client 30,000 times each at one instant: exactly the
    bucket's size gets through, as if one process had done it all (no lost update). A busy
    machine may run the two one after the other (30,000 + 10,000: nothing raced); the count
    must hold in every attempt, and at least one of five must have raced."""
    bucket = Bucket.of(1.0, 40_000)
    key = key_hash("192.0.2.7")
    raced = 0
    for _ in range(5):
        table = ClientTable(1024)
        allowed = os.pipe()

        def work(i: int, table: ClientTable = table, allowed: tuple[int, int] = allowed) -> None:
            got = sum(1 for _ in range(30_000) if table.charge(key, T0, bucket)[1] == 0)
            os.write(allowed[1], got.to_bytes(4, "little"))

        in_children(2, work)
        counts = [int.from_bytes(os.read(allowed[0], 4), "little") for _ in range(2)]
        os.close(allowed[0])
        os.close(allowed[1])
        assert sum(counts) == 40_000, counts
        if min(counts) > 10_000:  # they ran at once
            raced += 1
            break
    assert raced, "the two processes never charged at the same time in five attempts"


def test_connections_opened_and_closed_from_two_processes_balance() -> None:
    table = ClientTable(1024)
    key = key_hash("192.0.2.8")

    def work(i: int) -> None:
        for _ in range(20_000):
            assert table.open(key, T0, 0)[0]
            table.close_one(key)
        for _ in range(5):
            table.open(key, T0, 0)

    in_children(2, work)
    assert table.connections(key) == 10


def test_connection_limit_holds_across_processes() -> None:
    table = ClientTable(1024)
    key = key_hash("192.0.2.9")
    admitted = os.pipe()

    def work(i: int) -> None:
        got = sum(1 for _ in range(500) if table.open(key, T0, 7)[0])
        os.write(admitted[1], got.to_bytes(4, "little"))

    in_children(2, work)
    assert sum(int.from_bytes(os.read(admitted[0], 4), "little") for _ in range(2)) == 7
    assert table.connections(key) == 7


def test_a_hundred_thousand_clients_stay_in_bounds_and_evictions_are_counted() -> None:
    table = ClientTable(4096)
    bucket = Bucket.of(10.0, 10)
    evictions = 0
    for i in range(100_000):
        _, wait, evicted = table.charge(key_hash(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"),
                                        T0 + i, bucket)
        assert wait == 0
        evictions += evicted
    assert table.in_use() == table.slots == 4096
    assert evictions == 100_000 - 4096  # every client past the table's size evicted one
    # The newest clients are all there (least recently seen went first).
    last = key_hash("10.1.134.159")  # i = 99,999
    assert table.charge(last, T0 + 200_000, bucket)[2] is False


def test_eviction_prefers_clients_without_open_connections() -> None:
    table = ClientTable(1024)
    bucket_of = [k for k in range(1, 100_000) if k % table.buckets == 5][:BUCKET + 1]
    busy = bucket_of[0]
    table.open(busy, T0, 0)  # the oldest, but a connection is open
    for n, key in enumerate(bucket_of[1:BUCKET]):
        table.charge(key, T0 + n + 1, Bucket.of(1.0, 1))
    _, _, evicted = table.charge(bucket_of[BUCKET], T0 + 100, Bucket.of(1.0, 1))
    assert evicted
    assert table.connections(busy) == 1  # kept: its count would have been lost
    assert table.charge(bucket_of[1], T0 + 200, Bucket.of(1.0, 1))[2]  # the idle oldest went


def test_charge_follows_take() -> None:
    """charge() writes the GCRA out for speed: it must decide exactly as take() does."""
    table = ClientTable(1024)
    bucket = Bucket.of(7.0, 3)
    key = key_hash("192.0.2.50")
    rng = random.Random(5)
    now, tat, slot = T0, 0, -1
    for _ in range(2000):
        now += rng.randrange(0, NS // 4)
        tat, expected = take(tat, now, bucket)
        slot, wait, _ = table.charge(key, now, bucket, slot)
        assert wait == expected


def test_close_of_an_evicted_client_changes_nothing() -> None:
    table = ClientTable(1024)
    table.close_one(key_hash("198.51.100.1"))
    assert table.in_use() == 0


def test_a_lock_left_held_by_a_killed_process_stalls_its_stripe_only_briefly() -> None:
    """A worker killed inside the lock: the next update waits LOCK_WAIT, goes ahead, and
    the stripe works normally again."""
    table = ClientTable(1024)
    key = key_hash("203.0.113.5")
    stripe = (key % table.buckets) % STRIPES
    ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child takes the lock and is killed holding it
        table.locks[stripe].acquire()
        os.write(ready[1], b"x")
        time.sleep(60)
        os._exit(0)
    os.read(ready[0], 1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    started = time.monotonic()
    assert table.open(key, T0, 0)[0]
    assert LOCK_WAIT * 0.9 <= time.monotonic() - started < 2
    assert table.stalls == 1
    started = time.monotonic()
    table.close_one(key)
    assert time.monotonic() - started < LOCK_WAIT / 2  # the stripe is back in service
    assert table.stalls == 1 and table.connections(key) == 0


def test_slot_words_layout() -> None:
    table = ClientTable(1024)
    key = key_hash("192.0.2.1")
    base, _, _ = table.charge(key, T0, Bucket.of(1.0, 1))
    assert base % SLOT_WORDS == 0 and table.words[base + KEY] == key
    assert table.words[base + CONNS] == 0


@pytest.mark.parametrize("slots", [1024, 1025, 65536])
def test_size_is_whole_buckets(slots: int) -> None:
    table = ClientTable(slots)
    assert table.slots % BUCKET == 0 and table.slots >= slots
    assert len(table.words) == table.slots * SLOT_WORDS
    table.close()


def test_the_master_uncounts_what_a_killed_worker_held() -> None:
    """A worker SIGKILLed with connections open: forget_worker (the master, at the reap)
    uncounts exactly what its mirror lists, and leaves the other workers' counts alone."""
    from hbfork.core.config import loads
    from hbfork.proxy.client_limits import ClientLimits

    class Open:
        closed = False

    settings = loads("[heartbeat]\ndiscover = true\n[limits]\n"
                     "connections_per_client = 10\n").limits
    table = ClientTable(1024, workers=4, held=16)
    survivor = ClientLimits(settings, table, memoryview(bytearray(1024)).cast("Q"), index=1)
    survivor.hold(Open(), survivor.admit("192.0.2.1"))
    ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the worker that is killed
        mine = ClientLimits(settings, table, memoryview(bytearray(1024)).cast("Q"), index=2)
        for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
            mine.hold(Open(), mine.admit(ip))
        gone = Open()
        mine.hold(gone, mine.admit("192.0.2.3"))
        mine.drop(gone)  # closed in order: not listed any more
        os.write(ready[1], b"x")
        time.sleep(60)
        os._exit(0)
    os.read(ready[0], 1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert table.connections(key_hash("192.0.2.1")) == 3
    assert table.forget_worker(2) == 3
    assert table.connections(key_hash("192.0.2.1")) == 1  # the survivor's
    assert table.connections(key_hash("192.0.2.2")) == 0
    assert table.forget_worker(2) == 0  # nothing twice
    assert table.mirror[table.mirror_of(1)] == 1


def test_a_full_mirror_still_counts() -> None:
    from hbfork.core.config import loads
    from hbfork.proxy.client_limits import ClientLimits

    class Open:
        closed = False

    settings = loads("[heartbeat]\ndiscover = true\n[limits]\n"
                     "connections_per_client = 10\n").limits
    table = ClientTable(1024, workers=1, held=2)
    limits = ClientLimits(settings, table, memoryview(bytearray(1024)).cast("Q"))
    sessions = [Open() for _ in range(3)]
    for s in sessions:
        limits.hold(s, limits.admit("192.0.2.9"))
    assert table.connections(key_hash("192.0.2.9")) == 3
    assert table.mirror[0] == 2  # two listed, the third not
    for s in sessions:
        limits.drop(s)
    assert table.connections(key_hash("192.0.2.9")) == 0 and table.mirror[0] == 0
    assert table.mirror.tolist() == [0, 0, 0]
