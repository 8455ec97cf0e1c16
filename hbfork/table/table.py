"""The member table in shared memory: the master writes it, every worker and `hbfork status` read.

Theory of operation
-------------------
One `multiprocessing.shared_memory` segment, named `hbfork-<master pid>`, mode 0600, created by
the master before it forks and unlinked when it exits (or, if the master is killed, by the
first worker that notices). Workers inherit the mapping through fork; `hbfork status` attaches
by name. The resource tracker is kept out of it: it would unlink the segment when any attached
process exits, and warn about "leaked" segments that are not leaked.

Layout: see hbfork.table.layout.

Consistency: the master is the only writer of header, weights, uids and member records; a worker
is the only writer of its own worker record. A member record is guarded by a seqlock: its first
u64 starts at 2 and is odd while the master rewrites the record (by slice assignment: never
struct.pack_into, which zero-fills first); a reader retries when the counter is odd, 0, or
moved. Weights and uids are single aligned u64 stores, so they need no lock. The master bumps
the generation after any change that alters a pick, and workers rebuild their picker only then.
"""

from __future__ import annotations

import _posixshmem  # shm_unlink without the resource tracker; imported before any setuid
import os
import struct
import sys
import time
from multiprocessing import resource_tracker, shared_memory

from hbfork.core.balancer import pack_word
from hbfork.core.members import CHECK_FAILED, EJECTED, Member
from hbfork.table.layout import (
    ADMIN_FORMAT,
    ADMIN_SIZE,
    HEADER_SIZE,
    HEARTBEAT_RESULTS,
    LAYOUT_VERSION,
    MAGIC,
    MAX_POOLS,
    MAX_ROUTES,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    MEMBER_FORMAT,
    MEMBER_SIZE,
    PC_QUEUE_HEAD,
    PC_QUEUED,
    POOL_COUNTERS,
    ROUTE_COUNTERS,
    STATE_BOOTING,
    STATE_DRAINING,
    STATE_EXITED,
    STATE_FREE,
    STATE_READY,
    W_ADMIN_CAPACITY,
    W_ADMIN_COUNT,
    W_ADMIN_SEQ,
    W_GENERATION,
    W_HEARTBEAT_COUNTERS,
    W_MASTER_PID,
    W_STARTED_NS,
    W_STARTED_US,
    W_STATS_SEQ,
    WK_GENERATION,
    WK_MEMBERS,
    WK_SCOPE_GENERATION,
    WK_STATE,
    WORKER_TOTALS,
    MemberRecord,
    decode_member,
    encode_member,
    members_end,
    segment_name,
    worker_words,
)


def _open(name: str, create: bool, size: int = 0) -> shared_memory.SharedMemory:
    """Open a segment without the resource tracker (see the module docstring)."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name, create, size, track=False)
    original = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name, create, size)
    finally:
        resource_tracker.register = original


def unlink_segment(name: str) -> bool:
    """Remove a segment by name; False if it was already gone. Never starts a tracker."""
    try:
        _posixshmem.shm_unlink("/" + name)
        return True
    except FileNotFoundError:
        return False


class Table:
    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self.shm = shm
        self.owner = owner
        self.name = shm.name.lstrip("/")
        buf = shm.buf
        if bytes(buf[:8]) != MAGIC:
            raise ValueError(f"{self.name} is not an hbfork table")
        (version, header, self.capacity, member_size, self.worker_capacity, worker_size,
         _k) = struct.unpack_from("<IIIIIII", buf, 8)
        if (version, header, member_size) != (LAYOUT_VERSION, HEADER_SIZE, MEMBER_SIZE):
            raise ValueError(f"{self.name} has layout {version}; this hbfork reads "
                             f"{LAYOUT_VERSION}")
        self.worker_size = worker_size
        self.words = buf.cast("Q")
        self.weights_at = HEADER_SIZE // 8
        self.uids_at = self.weights_at + self.capacity
        self.loads_at = self.uids_at + self.capacity
        self.members_at = (self.loads_at + self.capacity) * 8
        self.admin_at = self.members_at + self.capacity * MEMBER_SIZE
        self.admin_capacity = self.words[W_ADMIN_CAPACITY]
        self.workers_at = self.admin_at + _round8(self.admin_capacity * ADMIN_SIZE)

    # --- lifetime

    @classmethod
    def create(cls, capacity: int, worker_capacity: int, master_pid: int | None = None) -> Table:
        pid = master_pid or os.getpid()
        worker_size = worker_words(capacity) * 8
        admin_capacity = admin_capacity_for(capacity)
        size = HEADER_SIZE + capacity * 24 + capacity * MEMBER_SIZE \
            + _round8(admin_capacity * ADMIN_SIZE) + (worker_capacity + 1) * worker_size
        name = segment_name(pid)
        unlink_segment(name)  # a leftover of an earlier master with our pid cannot be live
        shm = _open(name, True, size)
        os.fchmod(shm._fd, 0o600)
        buf = shm.buf
        buf[:8] = MAGIC
        struct.pack_into("<IIIIIII", buf, 8, LAYOUT_VERSION, HEADER_SIZE, capacity, MEMBER_SIZE,
                         worker_capacity, worker_size, MEMBER_COUNTERS)
        buf.cast("Q")[W_ADMIN_CAPACITY] = admin_capacity
        table = cls(shm, owner=True)
        table.words[W_ADMIN_SEQ] = 2
        table.words[W_MASTER_PID] = pid
        table.words[W_STARTED_US] = int(time.time() * 1e6)
        table.words[W_STARTED_NS] = time.monotonic_ns()
        table.words[W_GENERATION] = 1
        table.words[W_STATS_SEQ] = 2
        for slot in range(capacity):
            table.words[(table.members_at + slot * MEMBER_SIZE) // 8] = 2
        return table

    @classmethod
    def attach(cls, name: str) -> Table:
        """Attach to a live table read-only in spirit: nothing is written, nothing unlinked."""
        return cls(_open(name, False), owner=False)

    def close(self) -> None:
        self.words.release()
        self.shm.close()

    def __del__(self) -> None:
        # Release our view before SharedMemory.__del__ closes the mapping: otherwise a process
        # that exits without close() prints "BufferError: cannot close exported pointers exist".
        words = getattr(self, "words", None)
        if words is not None:
            try:
                words.release()
            except BufferError:
                pass

    def unlink(self) -> None:
        unlink_segment(self.name)

    # --- header

    @property
    def generation(self) -> int:
        return self.words[W_GENERATION]

    def bump_generation(self) -> None:
        self.words[W_GENERATION] += 1

    def header(self, index: int) -> int:
        return self.words[index]

    def set_header(self, index: int, value: int) -> None:
        self.words[index] = value

    def count_heartbeat(self, result: str, n: int = 1) -> None:
        self.words[W_HEARTBEAT_COUNTERS + HEARTBEAT_RESULTS.index(result)] += n

    def heartbeat_counters(self) -> dict[str, int]:
        base = W_HEARTBEAT_COUNTERS
        return {name: self.words[base + i] for i, name in enumerate(HEARTBEAT_RESULTS)}

    # --- members

    def weight_words(self) -> list[int]:
        return self.words[self.weights_at:self.weights_at + self.capacity].tolist()

    def weight_word(self, slot: int) -> int:
        """The weight word of one slot (weight | lbset << 32)."""
        return self.words[self.weights_at + slot]

    def uid(self, slot: int) -> int:
        return self.words[self.uids_at + slot]

    def uid_words(self) -> list[int]:
        return self.words[self.uids_at:self.uids_at + self.capacity].tolist()

    def load_words(self) -> list[int]:
        """Per slot: capacity | requests in flight from this front at its last report << 32."""
        return self.words[self.loads_at:self.loads_at + self.capacity].tolist()

    def in_flight(self, slot: int, uid: int, records: list[int]) -> int:
        """Requests every worker (records: their word offsets) has in flight to a member."""
        words = self.words
        at = WK_MEMBERS + slot * MEMBER_COUNTERS
        total = 0
        for base in records:
            if words[base + at + MC_UID] == uid:
                total += words[base + at + MC_INFLIGHT]
        return total

    def live_records(self) -> list[int]:
        """Word offsets of the records of workers that may have requests in flight."""
        out = []
        for index in range(self.worker_capacity):
            base = (self.workers_at + index * self.worker_size) // 8
            if self.words[base + WK_STATE] in (STATE_BOOTING, STATE_READY, STATE_DRAINING):
                out.append(base)
        return out

    def admin_count(self) -> int:
        return self.words[W_ADMIN_COUNT]

    def write_member(self, slot: int, member: Member | None) -> bool:
        """Publish one slot (None frees it). True when its weight or load word changed.

        Order matters to lock-free readers: a freed slot loses its weight first; a filled slot
        gets its record and uid before its weight, so a picked slot always has an address."""
        word = _word(member) if member else 0
        load = (member.capacity | member.at_report << 32) if member else 0
        changed = self.words[self.weights_at + slot] != word or \
            self.words[self.loads_at + slot] != load
        if member is None:
            self.words[self.weights_at + slot] = 0
        record = encode_member(member) if member else bytes(MEMBER_FORMAT.size)
        at = self.members_at + slot * MEMBER_SIZE
        seq_index = at // 8
        seq = self.words[seq_index]
        self.words[seq_index] = seq + 1
        self.shm.buf[at + 8:at + 8 + MEMBER_FORMAT.size] = record
        self.words[seq_index] = seq + 2
        self.words[self.uids_at + slot] = member.uid if member else 0
        self.words[self.loads_at + slot] = load
        self.words[self.weights_at + slot] = word
        return changed

    def read_member(self, slot: int) -> MemberRecord | None:
        """A consistent copy of one slot, or None if it is free."""
        at = self.members_at + slot * MEMBER_SIZE
        seq_index = at // 8
        buf = self.shm.buf
        for attempt in range(10_000):
            before = self.words[seq_index]
            if before & 1 or before == 0:
                if attempt >= 100:
                    # The writer was preempted mid-write (busy workers on every CPU make that
                    # common): let it run instead of spinning through the budget in ~1 ms.
                    time.sleep(0.0001)
                continue
            raw = bytes(buf[at + 8:at + 8 + MEMBER_FORMAT.size])
            if self.words[seq_index] == before:
                return decode_member(slot, raw)
        raise RuntimeError(f"member slot {slot} kept changing while being read")

    def members(self) -> list[MemberRecord]:
        return [r for slot in range(self.capacity) if (r := self.read_member(slot)) is not None]

    # --- per-pool operator states

    def write_admin(self, entries: list[tuple[str, int, int]]) -> int:
        """Publish (pool name, member uid, flags) entries; returns how many fitted."""
        kept = entries[:self.admin_capacity]
        blob = b"".join(ADMIN_FORMAT.pack(name.encode()[:32], uid, flags)
                        for name, uid, flags in kept)
        seq = self.words[W_ADMIN_SEQ]
        self.words[W_ADMIN_SEQ] = seq + 1
        self.shm.buf[self.admin_at:self.admin_at + len(blob)] = blob
        self.words[W_ADMIN_COUNT] = len(kept)
        self.words[W_ADMIN_SEQ] = seq + 2
        return len(kept)

    def read_admin(self) -> dict[tuple[str, int], int]:
        """{(pool name, member uid): flags}, read consistently."""
        buf = self.shm.buf
        for attempt in range(10_000):
            before = self.words[W_ADMIN_SEQ]
            if before & 1 or before == 0:
                if attempt >= 100:
                    time.sleep(0.0001)  # the master is descheduled mid-write
                continue
            count = min(self.words[W_ADMIN_COUNT], self.admin_capacity)
            raw = bytes(buf[self.admin_at:self.admin_at + count * ADMIN_SIZE])
            if self.words[W_ADMIN_SEQ] == before:
                out = {}
                for at in range(0, len(raw), ADMIN_SIZE):
                    name, uid, flags = ADMIN_FORMAT.unpack_from(raw, at)
                    out[(name.rstrip(b"\0").decode(errors="replace"), uid)] = flags
                return out
        raise RuntimeError("the admin region kept changing while being read")

    # --- workers

    def worker_base(self, index: int) -> int:
        """The word offset of worker record `index` in `words`."""
        return (self.workers_at + index * self.worker_size) // 8

    def worker_words(self, index: int) -> memoryview:
        """The u64 words of worker record `index` (index == worker_capacity: retired totals)."""
        start = self.worker_base(index)
        return self.words[start:start + self.worker_size // 8]

    def reset_worker(self, index: int) -> None:
        start = self.workers_at + index * self.worker_size
        self.shm.buf[start:start + self.worker_size] = bytes(self.worker_size)

    def free_worker_index(self, taken: set[int]) -> int | None:
        for index in range(self.worker_capacity):
            if index not in taken and self.worker_words(index)[WK_STATE] in (STATE_FREE,
                                                                            STATE_EXITED):
                return index
        return None

    def retire_worker(self, index: int) -> None:
        """Fold an exited worker's counters into the retired record, then free its record."""
        record, retired = self.worker_words(index), self.worker_words(self.worker_capacity)
        self.words[W_STATS_SEQ] += 1
        for word in WORKER_TOTALS:
            retired[word] += record[word]
        for slot in range(self.capacity):
            at = WK_MEMBERS + slot * MEMBER_COUNTERS
            uid = record[at + MC_UID]
            if uid and uid == self.uid(slot):
                if retired[at + MC_UID] != uid:
                    for k in range(MEMBER_COUNTERS):
                        retired[at + k] = 0
                    retired[at + MC_UID] = uid
                for k in range(MC_STATUS_CLASS, MEMBER_COUNTERS):
                    retired[at + k] += record[at + k]
        _retire_scope(self.capacity, record, retired)
        record.release()
        retired.release()
        self.reset_worker(index)
        self.words[W_STATS_SEQ] += 1




def _retire_scope(capacity: int, record: memoryview, retired: memoryview) -> None:
    """Pool and route counters belong to one generation: fold those of the newest."""
    generation = record[WK_GENERATION]
    start = members_end(capacity)
    end = start + MAX_POOLS * POOL_COUNTERS + MAX_ROUTES * ROUTE_COUNTERS
    if generation < retired[WK_SCOPE_GENERATION]:
        return  # an old generation's worker: its pools and routes are gone
    if generation > retired[WK_SCOPE_GENERATION]:
        retired[start:end] = memoryview(bytes((end - start) * 8)).cast("Q")
        retired[WK_SCOPE_GENERATION] = generation
    gauges = {start + pool * POOL_COUNTERS + word
              for pool in range(MAX_POOLS) for word in (PC_QUEUED, PC_QUEUE_HEAD)}
    for word in range(start, end):
        if record[word] and word not in gauges:
            retired[word] += record[word]


def _word(member: Member) -> int:
    # A member failing its active checks is held out like an ejected one: by the EJECTED bit
    # with its reported weight, so the panic rule may still use it (as Envoy's panic does).
    if member.reason in (EJECTED, CHECK_FAILED):
        return pack_word(member.reported, member.lbset, False, member.drained,
                         ejected=True)
    return pack_word(member.weight, member.lbset, member.usable, member.drained)


def admin_capacity_for(capacity: int) -> int:
    """Admin entries: enough for every member to be drained or disabled in a few pools."""
    return max(256, 4 * capacity)


def _round8(size: int) -> int:
    return (size + 7) // 8 * 8
