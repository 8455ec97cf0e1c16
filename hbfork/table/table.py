"""The member table in shared memory: the master writes it, every worker and `hbfork status` read.

Theory of operation
-------------------
One `multiprocessing.shared_memory` segment, named `hbfork-<master pid>`, mode 0600, created by
the master before it forks and unlinked when it exits (or, if the master is killed, by the
first worker that notices). Workers inherit the mapping through fork; `hbfork status` attaches
by name. The resource tracker is kept out of it: it would unlink the segment when any attached
process exits, and warn about "leaked" segments that are not leaked.

Layout: see hbfork.table.layout. The worker records are the worker area's
(hbfork.table.worker_area, `Table.workers`), each one read and written through a WorkerRecord
(hbfork.table.worker_record).

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
    MEMBER_COUNTERS,
    MEMBER_FORMAT,
    MEMBER_SIZE,
    VERSION_AT,
    VERSION_SIZE,
    W_ADMIN_CAPACITY,
    W_ADMIN_COUNT,
    W_ADMIN_SEQ,
    W_GENERATION,
    W_HEARTBEAT_COUNTERS,
    W_MASTER_PID,
    W_STARTED_NS,
    W_STARTED_US,
    W_STATS_SEQ,
    MemberRecord,
    decode_member,
    encode_member,
    segment_name,
    worker_words,
)
from hbfork.table.worker_area import WorkerArea


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
        assert buf is not None  # None only once closed
        self.buf = buf
        self.fd: int = shm._fd  # type: ignore[attr-defined]  # for fchmod and fchown
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
        self.workers = WorkerArea(self.words, self.workers_at // 8, worker_size // 8,
                                  self.worker_capacity, self.capacity, self.uids_at)

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
        os.fchmod(shm._fd, 0o600)  # type: ignore[attr-defined]
        buf = shm.buf
        assert buf is not None
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
        self.workers.release()
        self.words.release()
        self.shm.close()

    def __del__(self) -> None:
        # Release our view before SharedMemory.__del__ closes the mapping: otherwise a process
        # that exits without close() prints "BufferError: cannot close exported pointers exist".
        workers = getattr(self, "workers", None)
        if workers is not None:
            workers.release()
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

    def set_version(self, version: str) -> None:
        self.buf[VERSION_AT:VERSION_AT + VERSION_SIZE] = \
            version.encode()[:VERSION_SIZE].ljust(VERSION_SIZE, b"\0")

    def version(self) -> str:
        """The hbfork version of the master that wrote this table ("" if it did not say)."""
        raw = bytes(self.buf[VERSION_AT:VERSION_AT + VERSION_SIZE])
        return raw.rstrip(b"\0").decode("utf-8", "replace")

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

    def live_records(self) -> list[int]:
        """Word offsets of the records of workers that may have requests in flight (the
        worker area's, here for the pickers that read the table by word offsets)."""
        return self.workers.live_bases()

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
        self.buf[at + 8:at + 8 + MEMBER_FORMAT.size] = record
        self.words[seq_index] = seq + 2
        self.words[self.uids_at + slot] = member.uid if member else 0
        self.words[self.loads_at + slot] = load
        self.words[self.weights_at + slot] = word
        return changed

    def read_member(self, slot: int) -> MemberRecord | None:
        """A consistent copy of one slot, or None if it is free."""
        at = self.members_at + slot * MEMBER_SIZE
        seq_index = at // 8
        buf = self.buf
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
        self.buf[self.admin_at:self.admin_at + len(blob)] = blob
        self.words[W_ADMIN_COUNT] = len(kept)
        self.words[W_ADMIN_SEQ] = seq + 2
        return len(kept)

    def read_admin(self) -> dict[tuple[str, int], int]:
        """{(pool name, member uid): flags}, read consistently."""
        buf = self.buf
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
