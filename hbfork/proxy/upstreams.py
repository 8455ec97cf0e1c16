"""A worker's view of the members: pick one, know its address, count what happens to it.

Reads only the shared table. The picker is rebuilt when the table's generation moved; member
addresses are cached per (slot, uid), so a pick costs a generation read, one random number and
a bisect. Counters go to this worker's own record in the table (it is their only writer).
"""

from __future__ import annotations

import random
import socket
from bisect import bisect_left
from dataclasses import dataclass

from hbfork.core.balancer import Picker
from hbfork.table.layout import (
    LATENCY_BUCKETS,
    MC_CONNECT_FAILURES,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    WK_HISTOGRAM,
    WK_LATENCY_COUNT,
    WK_LATENCY_SUM,
    WK_MEMBERS,
)
from hbfork.table.table import Table


@dataclass(slots=True, eq=False)
class Target:
    """A member as a worker connects to it."""
    slot: int
    uid: int
    family: int
    sockaddr: tuple[str, int]
    label: str
    counters: int  # index of this member's counters in the worker record

    @property
    def address(self) -> str:
        """host:port, IPv6 bracketed."""
        host, port = self.sockaddr
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Upstreams:
    def __init__(self, table: Table, record: memoryview,
                 rng: random.Random | None = None) -> None:
        self.table = table
        self.record = record
        self.picker = Picker()
        self.targets: dict[int, Target] = {}
        self.random = (rng or random.Random()).random

    def choose(self, excluded: set[int] | None = None) -> Target | None:
        """A member drawn by ready-weighted random, avoiding the slots in `excluded`."""
        table, picker = self.table, self.picker
        generation = table.generation
        if generation != picker.generation:
            picker.rebuild(table.weight_words(), generation)
        if excluded:
            slot = picker.pick_excluding(self.random(), excluded)
        else:
            slot = picker.pick(self.random())
        if slot is None:
            return None
        target = self.targets.get(slot)
        if target is None or target.uid != table.uid(slot):
            target = self._load(slot)
            if target is None:
                # The master freed the slot after this picker was built: pick again without it.
                return self.choose({*(excluded or ()), slot})
        return target

    def _load(self, slot: int) -> Target | None:
        record = self.table.read_member(slot)
        if record is None:
            return None
        family = socket.AF_INET6 if record.ip.version == 6 else socket.AF_INET
        counters = WK_MEMBERS + slot * MEMBER_COUNTERS
        if self.record[counters + MC_UID] != record.uid:
            # The slot belongs to a new member now: its counters start from zero.
            self.record[counters + MC_UID] = 0
            for k in range(1, MEMBER_COUNTERS):
                self.record[counters + k] = 0
            self.record[counters + MC_UID] = record.uid
        target = Target(slot, record.uid, family, (str(record.ip), record.port), record.label,
                        counters)
        self.targets[slot] = target
        return target

    # --- counters (this worker is the only writer of its record)

    def started(self, target: Target) -> None:
        self.record[target.counters + MC_INFLIGHT] += 1

    def finished(self, target: Target, status: int) -> None:
        """A request to `target` ended; status 0 = no response (connection failed mid-way)."""
        at = target.counters
        if self.record[at + MC_UID] != target.uid:
            return  # the slot was reused meanwhile; its counters were reset
        self.record[at + MC_INFLIGHT] -= 1
        if 100 <= status < 600:
            self.record[at + MC_STATUS_CLASS + status // 100 - 1] += 1

    def connect_failed(self, target: Target) -> None:
        if self.record[target.counters + MC_UID] == target.uid:
            self.record[target.counters + MC_CONNECT_FAILURES] += 1

    def observe_latency(self, seconds: float) -> None:
        record = self.record
        # The first bucket whose bound is >= seconds (the last index is +Inf).
        record[WK_HISTOGRAM + bisect_left(LATENCY_BUCKETS, seconds)] += 1
        record[WK_LATENCY_SUM] += int(seconds * 1e6)
        record[WK_LATENCY_COUNT] += 1
