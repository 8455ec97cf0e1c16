"""The table's worker area: one record per worker slot, plus the retired record.

Each record is a WorkerRecord (hbfork.table.worker_record), made once per table and kept: the
memoryviews they hold are released together by release(), before the segment is closed. This
module also holds what reads across records (in-flight counts, the front queue's depth and
arrival order) and the master's fold of an exited worker into the retired record, so that a
status page's counters never go backwards.
"""

from __future__ import annotations

from hbfork.table.layout import (
    MAX_POOLS,
    MAX_ROUTES,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    PC_QUEUE_HEAD,
    PC_QUEUED,
    POOL_COUNTERS,
    ROUTE_COUNTERS,
    STATE_BOOTING,
    STATE_DRAINING,
    STATE_EXITED,
    STATE_FREE,
    STATE_READY,
    W_STATS_SEQ,
    WK_GENERATION,
    WK_MEMBERS,
    WK_SCOPE_GENERATION,
    WORKER_TOTALS,
    members_end,
)
from hbfork.table.worker_record import Indexed, WorkerRecord

LIVE = (STATE_BOOTING, STATE_READY, STATE_DRAINING)


class WorkerArea:
    """`words`: the whole table as u64 words; the area starts at word `start`, `size` words
    per record, `worker_capacity` records then the retired one; `uids_at`: the word of
    member slot 0's uid (the fold keeps only the counters of members still in their slot)."""

    def __init__(self, words: memoryview, start: int, size: int, worker_capacity: int,
                 capacity: int, uids_at: int) -> None:
        self.words = words
        self.worker_capacity = worker_capacity
        self.capacity = capacity
        self.uids_at = uids_at
        self.records = [WorkerRecord(words[base:base + size], index, base, capacity)
                        for index, base in ((i, start + i * size)
                                            for i in range(worker_capacity + 1))]
        self.retired = self.records[worker_capacity]

    def release(self) -> None:
        for record in self.records:
            record.release()

    def record(self, index: int) -> WorkerRecord:
        """Worker record `index` (index == worker_capacity: the retired record)."""
        return self.records[index]

    def free_index(self, taken: set[int]) -> int | None:
        """A record no worker uses (not in `taken`: the master's own list of its workers)."""
        for record in self.records[:self.worker_capacity]:
            if record.index not in taken and record.state in (STATE_FREE, STATE_EXITED):
                return record.index
        return None

    # --- reads across the records (by word offset in the table's words, as workers keep
    # them: these run on every pick and every queued request)

    def live_bases(self) -> list[int]:
        """Word offsets of the records of workers that may have requests in flight."""
        return [r.base for r in self.records[:self.worker_capacity] if r.state in LIVE]

    def in_flight(self, slot: int, uid: int, bases: list[int]) -> int:
        """Requests the workers at `bases` have in flight to the member `uid` in `slot`."""
        words = self.words
        at = WK_MEMBERS + slot * MEMBER_COUNTERS
        total = 0
        for base in bases:
            if words[base + at + MC_UID] == uid:
                total += words[base + at + MC_INFLIGHT]
        return total

    def queued(self, pool: Indexed, bases: list[int]) -> int:
        """Requests of `pool` waiting in the front queues of the workers at `bases`."""
        at = members_end(self.capacity) + pool.index * POOL_COUNTERS + PC_QUEUED
        words = self.words
        return sum(words[base + at] for base in bases)

    def oldest_waiter(self, pool: Indexed, bases: list[int], generation: int,
                      skip: int) -> tuple[int, int]:
        """The lowest (first-ranked) queue head word (WorkerRecord.queue_head) for `pool`
        among the workers of `generation` at `bases` but `skip`, and the index of the worker
        record that has it; (0, -1) when none has a waiter."""
        words = self.words
        at = members_end(self.capacity) + pool.index * POOL_COUNTERS + PC_QUEUE_HEAD
        oldest, owner = 0, -1
        for base in bases:
            if base == skip or words[base + WK_GENERATION] != generation:
                continue
            word = words[base + at]
            if word and (not oldest or word < oldest):
                oldest, owner = word, base
        if owner < 0:
            return 0, -1
        first = self.records[0]
        return oldest, (owner - first.base) // len(first.words)

    # --- the master's fold of an exited worker

    def retire(self, index: int) -> None:
        """Fold an exited worker's counters into the retired record, then free its record.
        Status readers see W_STATS_SEQ odd meanwhile."""
        record, retired = self.records[index].words, self.retired.words
        self.words[W_STATS_SEQ] += 1
        for word in WORKER_TOTALS:
            retired[word] += record[word]
        self._fold_members(record, retired)
        self._fold_scope(record, retired)
        self.records[index].free()
        self.words[W_STATS_SEQ] += 1

    def _fold_members(self, record: memoryview, retired: memoryview) -> None:
        """Per-member totals, for members still in their slot; a slot's new member starts
        from zero. MC_INFLIGHT is a gauge: an exited worker's requests died with it."""
        for slot in range(self.capacity):
            at = WK_MEMBERS + slot * MEMBER_COUNTERS
            uid = record[at + MC_UID]
            if not uid or uid != self.words[self.uids_at + slot]:
                continue
            if retired[at + MC_UID] != uid:
                for k in range(MEMBER_COUNTERS):
                    retired[at + k] = 0
                retired[at + MC_UID] = uid
            for k in range(MC_STATUS_CLASS, MEMBER_COUNTERS):
                retired[at + k] += record[at + k]

    def _fold_scope(self, record: memoryview, retired: memoryview) -> None:
        """Pool and route counters belong to one generation: fold those of the newest."""
        generation = record[WK_GENERATION]
        start = members_end(self.capacity)
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
