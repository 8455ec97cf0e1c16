"""The member table in shared memory: the master writes it, every worker and `hbfork status` read.

Theory of operation
-------------------
One `multiprocessing.shared_memory` segment, named `hbfork-<master pid>`, mode 0600, created by
the master before it forks and unlinked when it exits (or, if the master is killed, by the
first worker that notices). Workers inherit the mapping through fork; `hbfork status` attaches
by name. The resource tracker is kept out of it: it would unlink the segment when any attached
process exits, and warn about "leaked" segments that are not leaked.

Layout (little-endian; every offset is a multiple of 8, so each u64 is one aligned store):

    header        HEADER_SIZE bytes: magic, layout version, capacities and record sizes, then
                  u64 words: pick generation, master pid, start times, config generation,
                  heartbeat result counters, and the stats seqlock
    weights       capacity x u64   weight (bits 0-31) | lbset (bits 32-47); 0 = not picked
    uids          capacity x u64   the member's uid; changes when a slot is reused
    members       capacity x MEMBER_SIZE, each a seqlocked record (MEMBER_FORMAT)
    workers       (worker_capacity + 1) x WORKER_SIZE; the extra last one holds the totals of
                  workers that have exited ("retired"), so counters never go backwards

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
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from multiprocessing import resource_tracker, shared_memory

from hbfork.addresses import IPAddress, normalize_ip
from hbfork.balancer import pack_word
from hbfork.members import (
    DISABLED,
    DRAINED,
    ELIGIBLE,
    IN_ERROR,
    NEVER_SEEN,
    READY_ZERO,
    STALE,
    Member,
)

MAGIC = b"HBFORK\x00\x01"
LAYOUT_VERSION = 1
HEADER_SIZE = 1024
NAME_PREFIX = "hbfork-"

# Header u64 word indexes (byte offset = index * 8).
W_GENERATION = 6
W_MASTER_PID = 7
W_STARTED_US = 8        # wall clock, µs since the epoch
W_STARTED_NS = 9        # time.monotonic_ns() at start: one clock for every process on the host
W_CONFIG_GENERATION = 10
W_CONFIG_LOADED_US = 11
W_STATS_SEQ = 12        # seqlock over "fold an exited worker into the retired record"
W_HEARTBEAT_COUNTERS = 32
HEARTBEAT_RESULTS = (
    "accepted", "malformed", "bad_number", "bad_port", "bad_signature", "unsigned", "stale",
    "replay", "not_allowed", "rate_limited", "unknown_source", "unknown_port", "table_full",
    "internal_error", "truncated",
)

MEMBER_FORMAT = struct.Struct("<Q16sBBHHHiiIIQQQQQ48s")
MEMBER_SIZE = 8 + ((MEMBER_FORMAT.size + 7) // 8) * 8
REASONS = (NEVER_SEEN, ELIGIBLE, STALE, READY_ZERO, IN_ERROR, DRAINED, DISABLED)
FLAG_STATIC, FLAG_DRAINED, FLAG_DISABLED = 1, 2, 4

# Worker record u64 word indexes.
WK_PID, WK_NUMBER, WK_GENERATION, WK_STATE, WK_TICK_NS, WK_STARTED_US = range(6)
WK_CONNECTIONS, WK_ACCEPTED, WK_REQUESTS = 6, 7, 8
WK_STATUS_CLASS = 9     # 9..13: responses 1xx..5xx sent to clients
WK_BYTES_IN, WK_BYTES_OUT = 14, 15
WK_CONNECT_FAILURES, WK_NO_MEMBER, WK_RETRIES, WK_UPSTREAM_TIMEOUTS = 16, 17, 18, 19
WK_CLIENT_ERRORS = 20   # malformed requests answered 4xx by the proxy itself
WK_HISTOGRAM = 32       # LATENCY_BUCKETS counts, then +Inf, then sum (µs) and count
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
WK_LATENCY_SUM = WK_HISTOGRAM + len(LATENCY_BUCKETS) + 1
WK_LATENCY_COUNT = WK_LATENCY_SUM + 1
WK_MEMBERS = 64         # then capacity x MEMBER_COUNTERS words
MEMBER_COUNTERS = 8
MC_UID, MC_INFLIGHT, MC_STATUS_CLASS, MC_CONNECT_FAILURES = 0, 1, 2, 7  # 2..6: 1xx..5xx
STATE_FREE, STATE_BOOTING, STATE_READY, STATE_DRAINING, STATE_EXITED = range(5)
WORKER_STATES = ("free", "booting", "ready", "draining", "exited")
WORKER_TOTALS = (WK_ACCEPTED, WK_REQUESTS, *range(WK_STATUS_CLASS, WK_STATUS_CLASS + 5),
                 WK_BYTES_IN, WK_BYTES_OUT, WK_CONNECT_FAILURES, WK_NO_MEMBER, WK_RETRIES,
                 WK_UPSTREAM_TIMEOUTS, WK_CLIENT_ERRORS,
                 *range(WK_HISTOGRAM, WK_LATENCY_COUNT + 1))


def segment_name(master_pid: int) -> str:
    return f"{NAME_PREFIX}{master_pid}"


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


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member as a reader sees it."""
    slot: int
    uid: int
    ip: IPAddress
    port: int
    static: bool
    drained: bool
    disabled: bool
    lbset: int
    reason: str
    ready: int
    busy: int
    weight: int
    first_seen: int
    last_seen: int
    error_until: int
    heartbeats: int
    errors: int
    name: str

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"

    @property
    def label(self) -> str:
        return self.name or self.address


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
        self.members_at = (self.uids_at + self.capacity) * 8
        self.workers_at = self.members_at + self.capacity * MEMBER_SIZE

    # --- lifetime

    @classmethod
    def create(cls, capacity: int, worker_capacity: int, master_pid: int | None = None) -> Table:
        pid = master_pid or os.getpid()
        worker_size = (WK_MEMBERS + capacity * MEMBER_COUNTERS) * 8
        size = HEADER_SIZE + capacity * 16 + capacity * MEMBER_SIZE \
            + (worker_capacity + 1) * worker_size
        name = segment_name(pid)
        unlink_segment(name)  # a leftover of an earlier master with our pid cannot be live
        shm = _open(name, True, size)
        os.fchmod(shm._fd, 0o600)
        buf = shm.buf
        buf[:8] = MAGIC
        struct.pack_into("<IIIIIII", buf, 8, LAYOUT_VERSION, HEADER_SIZE, capacity, MEMBER_SIZE,
                         worker_capacity, worker_size, MEMBER_COUNTERS)
        table = cls(shm, owner=True)
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

    def write_member(self, slot: int, member: Member | None) -> bool:
        """Publish one slot (None frees it). True when its weight word changed.

        Order matters to lock-free readers: a freed slot loses its weight first; a filled slot
        gets its record and uid before its weight, so a picked slot always has an address."""
        word = pack_word(member.weight, member.lbset) if member else 0
        changed = self.words[self.weights_at + slot] != word
        if member is None:
            self.words[self.weights_at + slot] = 0
        record = self._encode(member) if member else bytes(MEMBER_FORMAT.size)
        at = self.members_at + slot * MEMBER_SIZE
        seq_index = at // 8
        seq = self.words[seq_index]
        self.words[seq_index] = seq + 1
        self.shm.buf[at + 8:at + 8 + MEMBER_FORMAT.size] = record
        self.words[seq_index] = seq + 2
        self.words[self.uids_at + slot] = member.uid if member else 0
        self.words[self.weights_at + slot] = word
        return changed

    @staticmethod
    def _encode(m: Member) -> bytes:
        flags = (FLAG_STATIC if m.static else 0) | (FLAG_DRAINED if m.drained else 0) \
            | (FLAG_DISABLED if m.disabled else 0)
        packed = m.ip.packed
        return MEMBER_FORMAT.pack(
            m.uid, packed.ljust(16, b"\0"), m.ip.version, flags, m.port, m.lbset,
            REASONS.index(m.reason), m.ready, m.busy, m.weight, 0, m.first_seen, m.last_seen,
            m.error_until, m.heartbeats, m.errors, m.name.encode()[:48])

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
                return _decode(slot, raw)
        raise RuntimeError(f"member slot {slot} kept changing while being read")

    def members(self) -> list[MemberRecord]:
        return [r for slot in range(self.capacity) if (r := self.read_member(slot)) is not None]

    # --- workers

    def worker_words(self, index: int) -> memoryview:
        """The u64 words of worker record `index` (index == worker_capacity: retired totals)."""
        start = (self.workers_at + index * self.worker_size) // 8
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
        record.release()
        retired.release()
        self.reset_worker(index)
        self.words[W_STATS_SEQ] += 1


def _decode(slot: int, raw: bytes) -> MemberRecord | None:
    (uid, packed, version, flags, port, lbset, reason, ready, busy, weight, _pad, first_seen,
     last_seen, error_until, heartbeats, errors, name) = MEMBER_FORMAT.unpack(raw)
    if not uid:
        return None
    ip = IPv4Address(packed[:4]) if version == 4 else IPv6Address(packed)
    return MemberRecord(
        slot=slot, uid=uid, ip=normalize_ip(ip), port=port, static=bool(flags & FLAG_STATIC),
        drained=bool(flags & FLAG_DRAINED), disabled=bool(flags & FLAG_DISABLED), lbset=lbset,
        reason=REASONS[reason] if reason < len(REASONS) else "?", ready=ready, busy=busy,
        weight=weight, first_seen=first_seen, last_seen=last_seen, error_until=error_until,
        heartbeats=heartbeats, errors=errors, name=name.rstrip(b"\0").decode(errors="replace"))
