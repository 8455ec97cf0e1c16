"""The per-client limit table: one bounded hash table shared by every worker.

Theory of operation
-------------------
The master maps it once, before it forks (an anonymous MAP_SHARED mapping: nothing in
/dev/shm to leak, gone with the last process that maps it), and every worker it forks writes
it. It is not part of the member table: that one has a single writer per word (the master, or
a worker in its own record), while here every worker updates every client's counts.

Layout: `slots` slots of four u64 words, grouped in buckets of BUCKET slots:

    key        a 64-bit hash of the client's key (0 = free). Python's str/bytes hash is
               SipHash keyed by a per-interpreter secret that forked workers share, so every
               worker computes the same key and no client can aim at a bucket
    tat        the client's theoretical arrival time, monotonic ns (hbfork.core.client_limits)
    last       monotonic ns the client was last seen (the eviction order)
    conns      its client connections open now, across all workers

A client lives in the bucket its key picks. When the bucket is full, a new client takes the
slot of the least recently seen one there, preferring one with no open connection (whose
count would otherwise be lost); that eviction is counted. So 100,000 distinct clients take
no more memory than any other number (slots x 32 bytes), and the idlest ones go first.

Connections a worker counts are also listed in its own part of a second mapping, the mirror
(`held` words per worker record index, one key per open connection, 0 = free; only that
worker writes it). A worker that exits in order uncounts its connections itself; one that is
killed (SIGKILL, the OOM killer) cannot, so the master, when it reaps it, uncounts what its
mirror lists (`forget_worker`; should the worker have died inside a stripe lock, the master
waits LOCK_WAIT for it once). A connection beyond `held` (more open than the mirror has
room for) is counted but not listed: only a killed worker's count of it would stay.

Consistency: workers write the same slots concurrently, so each update (find or claim a slot,
read, compute, write) runs under the lock of the slot's stripe: STRIPES process-shared locks
(POSIX semaphores of multiprocessing's fork context; uncontended, a user-space atomic: about
0.1 µs an acquire and release on CPython 3.11). A lock is held for a few word operations and
never across I/O. A worker killed while holding one (SIGKILL inside those microseconds) would
stall its stripe for good, so a lock is awaited at most LOCK_WAIT: then the update goes ahead
without it (counted in `stalls`) and its release puts the stripe back in service; if the holder
was only slow, its own release finds the lock free and is ignored. Readers outside the lock
(metrics, tests) may see a stale word, never a torn one (aligned u64 stores).
"""

from __future__ import annotations

import mmap
import multiprocessing
import multiprocessing.synchronize  # loaded here, before the master drops privileges
from typing import Any

from hbfork.core.client_limits import BUCKET, Bucket, table_slots

SLOT_WORDS = 4
KEY, TAT, LAST, CONNS = range(SLOT_WORDS)
STRIPES = 64
MAX_HELD = 65536  # connections per worker the mirror lists at most
LOCK_WAIT = 0.05  # seconds: longer than any critical section, short enough not to hang a worker
MASK = (1 << 64) - 1


def key_hash(key: str | bytes) -> int:
    """The table key of a client key: its hash as a nonzero u64."""
    return (hash(key) & MASK) or 1


class ClientTable:
    """The shared slots and their stripe locks; every method takes a key from key_hash()."""

    def __init__(self, slots: int, workers: int = 1, held: int = 1024) -> None:
        self.slots = table_slots(slots)
        self.buckets = self.slots // BUCKET
        self._mem = mmap.mmap(-1, self.slots * SLOT_WORDS * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self.words = memoryview(self._mem).cast("Q")
        # The mirror: per worker index, a count of listed keys, then `held` key words. Pages
        # nobody touches cost no memory.
        self.held = max(1, min(held, MAX_HELD))
        self.workers = workers
        self._mirror_mem = mmap.mmap(-1, workers * (self.held + 1) * 8)
        self.mirror = memoryview(self._mirror_mem).cast("Q")
        fork = multiprocessing.get_context("fork")  # unlinked at once: no resource tracker
        self.locks: list[Any] = [fork.Lock() for _ in range(STRIPES)]
        self.stalls = 0  # this process's lock waits that gave up (see the module docstring)

    def close(self) -> None:
        self.words.release()
        self._mem.close()
        self.mirror.release()
        self._mirror_mem.close()

    def mirror_of(self, worker: int) -> int:
        """Where worker index `worker`'s mirror starts (its count word; keys follow)."""
        if not 0 <= worker < self.workers:
            raise IndexError(f"worker index {worker} not in 0..{self.workers - 1}")
        return worker * (self.held + 1)

    def forget_worker(self, worker: int) -> int:
        """Uncount the connections a dead worker's mirror lists (the master, once it reaped
        it: nobody else writes that mirror then). Returns how many."""
        if not 0 <= worker < self.workers:
            return 0
        at = self.mirror_of(worker)
        mirror = self.mirror
        if not mirror[at]:
            return 0
        found = 0
        for i in range(at + 1, at + 1 + self.held):
            key = mirror[i]
            if key:
                self.close_one(key)
                mirror[i] = 0
                found += 1
        mirror[at] = 0
        return found

    def _find(self, key: int, bucket: int, now: int) -> tuple[int, bool]:
        """The slot base (word index) of `key`, claimed if absent; with the lock held. Also
        whether claiming it evicted another client."""
        words = self.words
        first = bucket * BUCKET * SLOT_WORDS
        end = first + BUCKET * SLOT_WORDS
        for base in range(first, end, SLOT_WORDS):
            if words[base] == key:
                return base, False
        victim, best = first, (2, 0)
        for base in range(first, end, SLOT_WORDS):
            if words[base] == 0:
                victim, best = base, (-1, 0)
                break
            rank = (1 if words[base + CONNS] else 0, words[base + LAST])
            if rank < best:
                victim, best = base, rank
        evicted = words[victim] != 0
        words[victim + TAT] = 0
        words[victim + LAST] = now
        words[victim + CONNS] = 0
        words[victim] = key
        return victim, evicted

    def _enter(self, stripe: int) -> Any:
        lock = self.locks[stripe]
        if not lock.acquire(True, LOCK_WAIT):
            self.stalls += 1  # its holder died inside the lock, or is very late: go ahead
        return lock

    @staticmethod
    def _leave(lock: Any) -> None:
        try:
            lock.release()
        except ValueError:
            pass  # free already: a late holder after a stall went ahead without it

    def charge(self, key: int, now: int, bucket: Bucket, hint: int = -1) -> tuple[int, int,
                                                                                   bool]:
        """One request of client `key` at `now`: (its slot base, ns to wait (0: allowed),
        whether it evicted another). `hint`: the base it had last time, checked first."""
        # The hot path of every limited request: _enter, _leave and take() written out.
        b = key % self.buckets
        words = self.words
        lock = self.locks[b % STRIPES]
        if not lock.acquire(True, LOCK_WAIT):
            self.stalls += 1
        try:
            evicted = False
            if hint < 0 or words[hint] != key:
                hint, evicted = self._find(key, b, now)
            tat = words[hint + TAT]
            if tat < now:
                tat = now
            wait = tat - now - bucket.tolerance
            if wait > 0:
                words[hint + LAST] = now
            else:
                wait = 0
                words[hint + TAT] = tat + bucket.interval
                words[hint + LAST] = now
        finally:
            try:
                lock.release()
            except ValueError:
                pass  # see _leave
        return hint, wait, evicted

    def open(self, key: int, now: int, limit: int) -> tuple[bool, bool]:
        """A connection of client `key` opens: (admitted (counted only then), evicted)."""
        b = key % self.buckets
        words = self.words
        lock = self._enter(b % STRIPES)
        try:
            base, evicted = self._find(key, b, now)
            words[base + LAST] = now
            conns = words[base + CONNS]
            admitted = not limit or conns < limit
            if admitted:
                words[base + CONNS] = conns + 1
        finally:
            self._leave(lock)
        return admitted, evicted

    def close_one(self, key: int) -> None:
        """A counted connection of client `key` closed (nothing if it was evicted since)."""
        b = key % self.buckets
        words = self.words
        first = b * BUCKET * SLOT_WORDS
        lock = self._enter(b % STRIPES)
        try:
            for base in range(first, first + BUCKET * SLOT_WORDS, SLOT_WORDS):
                if words[base] == key:
                    if words[base + CONNS]:
                        words[base + CONNS] -= 1
                    break
        finally:
            self._leave(lock)

    def connections(self, key: int) -> int:
        """Client `key`'s open connections (a lock-free read, for status and tests)."""
        first = (key % self.buckets) * BUCKET * SLOT_WORDS
        for base in range(first, first + BUCKET * SLOT_WORDS, SLOT_WORDS):
            if self.words[base] == key:
                return int(self.words[base + CONNS])
        return 0

    def in_use(self) -> int:
        """Slots holding a client (a lock-free scan)."""
        keys = self.words[KEY::SLOT_WORDS]
        return self.slots - keys.tolist().count(0)
