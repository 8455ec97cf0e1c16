"""A worker's view of the members: pick one in a pool, find a sticky session's member, know
its address, count what happens to it.

Reads only the shared table. Whenever the table's generation moves, the worker takes one look
at it (weight and load words, uids, pool states, which workers are alive) and each pool's
candidates are rebuilt the next time the pool is used; member addresses are cached per (slot,
uid). A pick (hbfork.core.balancing) then costs a few random numbers, a bisect and the
in-flight counts of the members it looks at, summed over the workers' records. Counters go to
this worker's own record in the table (it is their only writer).
"""

from __future__ import annotations

import random
import socket
import time
from bisect import bisect_left
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from hbfork.core.addresses import Endpoint
from hbfork.core.balancer import DRAINED, EJECTED, USABLE, WEIGHT_MASK
from hbfork.core.balancing import FULL, ServiceTimes, choose
from hbfork.core.config import Config

# Why acquire() found no member (Unavailable.reason).
from hbfork.core.failures import NO_MEMBER, RETRIES_SPENT, SESSION_DOWN, TRIED_ALL
from hbfork.core.outlier import Detector
from hbfork.core.pool_admin import POOL_DISABLED, POOL_DRAINED
from hbfork.core.pool_settings import PoolSettings
from hbfork.core.reopen import Reopening
from hbfork.core.settings import BalanceSettings, HttpSettings
from hbfork.proxy.acquiring import Acquiring, Unavailable, Wait
from hbfork.proxy.targets import STICKY_HIT, STICKY_LOST, Acquired, PoolView, Target
from hbfork.table.layout import (
    LATENCY_BUCKETS,
    LOAD_MASK,
    MC_CONNECT_FAILURES,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    PC_QUEUE_HEAD,
    W_GENERATION,
    WK_GENERATION,
    WK_HISTOGRAM,
    WK_LATENCY_COUNT,
    WK_LATENCY_SUM,
    WK_MEMBERS,
    pool_counters_at,
)
from hbfork.table.table import Table

# A new request goes behind the requests waiting in the front queue (queue_ahead) once one of
# them ranks this far ahead of it (of requests with one offset: has waited this long); before
# that it may take a place that has just freed up. Between workers, the queue itself keeps
# rank order within 2 ms and wakes the worker owed a place
# (proxy.queue), so no waiter is held back by this. Measured (issue 28): at 2 ms instead,
# every new request took the slow way through the queue and closed-loop goodput fell to
# 0.79-0.87x HAProxy's; with the queue's wake-ups the oldest waiter never passed 30 ms.
ORDER_AFTER = 0.100
RESERVE_TRIES = 4  # picks a request makes when other workers keep taking the last places
# made once (a range() per pick costs ~1,000 instructions); +1: a pick that passed members by
RESERVE_DRAWS = range(RESERVE_TRIES + 1)
NOTHING: frozenset[int] = frozenset()

# sticky() when the session's member is known but cannot serve it now
STICKY_DOWN = "down"
__all__ = [
    "FULL",
    "NO_MEMBER",
    "RETRIES_SPENT",
    "SESSION_DOWN",
    "STICKY_DOWN",
    "STICKY_HIT",
    "STICKY_LOST",
    "TRIED_ALL",
    "Acquired",
    "Acquiring",
    "PoolView",
    "Target",
    "Unavailable",
    "Upstreams",
    "Wait",
]


Entry = tuple[int, int, int, int, int]  # (tier, slot, weight, capacity, at_report)


class Upstreams(Acquiring):
    def __init__(self, table: Table, record: memoryview, config: Config | None = None,
                 rng: random.Random | None = None) -> None:
        self.table = table
        self.words_view = table.words
        self.record = record
        self.targets: dict[int, Target] = {}
        self.random = (rng or random.Random()).random
        pools = config.pools if config is not None else (PoolSettings(name="default"),)
        http = config.http if config is not None else HttpSettings()
        balance = config.balance if config is not None else BalanceSettings()
        self.pools = {p.name: PoolView(i, p, http, balance) for i, p in enumerate(pools)}
        self.queue_heads = [pool_counters_at(table.capacity, i) + PC_QUEUE_HEAD  # by pool index
                            for i in range(len(self.pools))]
        self.default = next(iter(self.pools.values()))
        if config is not None:
            self.default = self.pools.get("default", self.default)
        self.seen = -1                               # the generation last looked at
        self.words: list[int] = []
        self.loads: list[int] = []
        self.uids: list[int] = []
        self.records: list[int] = []                 # live workers' records (word offsets)
        self.slot_of: dict[Endpoint, int] = {}
        self.discovered: set[int] = set()
        self.admin: dict[tuple[str, int], int] = {}
        self._everyone = config is None  # no pools configured: every member of the table
        self.on_room: Callable[[], None] | None = None  # called when a request finished
        outlier = config.outlier if config is not None else None
        self.detector = Detector(outlier) if outlier is not None and outlier.enabled else None
        self.times = ServiceTimes()  # members' recent response times: the pick's speeds
        self.reopening = Reopening()  # members re-dialled one probe at a time (core.reopen)
        # called when the detector says a member should be ejected (target, cause)
        self.on_eject: Callable[[Target, int], None] | None = None
        self.clock: Callable[[], float] = time.monotonic  # tests pass a fake one

    # --- the table, once per generation

    def _refresh(self) -> int:
        table = self.table
        generation = table.generation
        if generation != self.seen:
            self.seen = generation
            self.words = table.weight_words()
            self.loads = table.load_words()
            self.records = table.live_records()
            uids = table.uid_words()
            if uids != self.uids:
                self._remap(uids)
            self.admin = table.read_admin() if table.admin_count() else {}
        return generation

    def refresh(self) -> None:
        """Take the table's latest generation in (for a look outside the picks)."""
        self._refresh()

    def _remap(self, uids: list[int]) -> None:
        """Slots whose member changed: learn their addresses again."""
        old = self.uids
        for slot, uid in enumerate(uids):
            if slot < len(old) and old[slot] == uid:
                continue
            for address, at in list(self.slot_of.items()):
                if at == slot:
                    del self.slot_of[address]
            self.discovered.discard(slot)
            self.times.forget(slot)
            self.reopening.forget(slot)
            record = self.table.read_member(slot) if uid else None
            if record is not None:
                self.slot_of[Endpoint(record.ip, record.port)] = slot
                if not record.static or self._everyone:
                    self.discovered.add(slot)
        self.uids = uids

    def _build(self, pool: PoolView, generation: int) -> None:
        """The pool's candidates: usable members that take new requests, with their tiers.
        Panic rule: when every member that could serve is ejected, the ejected ones serve
        (by their reported weights) rather than nobody: a 503 for everything is worse than
        a member that may still answer some requests."""
        entries: list[Entry] = []
        ejected: list[Entry] = []
        listed = [] if self._everyone else pool.members
        for address, tier in listed:
            slot = self.slot_of.get(address)
            if slot is not None:
                self._add(entries, ejected, pool, slot, tier)
        if pool.discover or self._everyone:
            for slot in self.discovered:
                self._add(entries, ejected, pool, slot, self.words[slot] >> 32 & 0xFFFF
                          if self._everyone else 0)
        if ejected and not any(entry[2] for entry in entries):
            entries += ejected
        pool.candidates.load(entries, generation)
        if pool.weighting == "corrected":  # "reported" stays Apache's ready shares
            pool.candidates.speed = self.times.speeds(pool.candidates.slots)
        pool.built = generation

    def _add(self, entries: list[Entry], ejected: list[Entry], pool: PoolView, slot: int,
             tier: int) -> None:
        word, load = self.words[slot], self.loads[slot]
        if word & DRAINED or \
                self.admin.get((pool.name, self.uids[slot]), 0) & (POOL_DRAINED | POOL_DISABLED):
            return
        entry = (tier, slot, word & WEIGHT_MASK, load & LOAD_MASK, load >> 32)
        if word & EJECTED:
            ejected.append(entry)
        elif word & USABLE:
            entries.append(entry)

    def in_flight(self, slot: int) -> int:
        """Requests the whole front (every worker) has in flight to the member in `slot`
        (Table.in_flight, inlined: it runs for every member a pick looks at)."""
        words, uid = self.words_view, self.uids[slot]
        at = WK_MEMBERS + slot * MEMBER_COUNTERS
        total = 0
        for base in self.records:
            if words[base + at] == uid:  # MC_UID: the record counts this member
                total += words[base + at + MC_INFLIGHT]
        return total

    # --- picks

    def choose(self, excluded: AbstractSet[int] | None = None,
               pool: PoolView | None = None) -> Target | int | None:
        """A member of `pool` (default: the default pool) with room for one more request,
        avoiding the slots in `excluded`, and already counted in flight there (reserved: call
        finished() when the request ends or never went); FULL when members are up but none
        has room now (the caller queues the request), None when none can serve."""
        pool = pool or self.default
        generation = self.words_view[W_GENERATION]
        if generation != self.seen:
            self._refresh()
        if pool.built != generation:
            self._build(pool, generation)
        # A first try with no member avoided (the usual case) skips nothing and makes no set.
        skip: set[int] | frozenset[int] = set(excluded) if excluded else NOTHING
        # Members with a probe in flight from this worker are passed by while any other can
        # take the request (hbfork.core.reopen); when none can, they are picked after all.
        avoid = self.reopening.avoid
        avoided = avoid - skip if avoid else None
        if avoided:
            skip = skip | avoided
        lost_race = False
        for _ in RESERVE_DRAWS:
            slot = choose(pool.candidates, pool.weighting, pool.pick, self.in_flight,
                          self.random, skip)
            if slot is None or slot == FULL:
                if avoided:
                    skip = skip - avoided
                    avoided = None
                    continue
                return FULL if lost_race and slot is None else slot
            target = self.targets.get(slot)
            if target is None or target.uid != self.uids[slot]:
                target = self._load(slot)
                if target is None:
                    # The master freed the slot after this pool was built: pick again.
                    skip = skip | {slot}
                    continue
            if self.reserve(target):
                return target
            skip = skip | {slot}  # another worker took its last place meanwhile
            lost_race = True
        return FULL

    def queue_ahead(self, pool: PoolView, rank: float) -> bool:
        """A request of `pool` waits in the front queue, in any worker of this generation,
        for a place any member may give (pinned ones, waiting for their own member, do not
        count), ranked ORDER_AFTER or more ahead of a new request of rank `rank` (monotonic
        seconds: its arrival, now, plus its offset; hbfork.core.queue_order): among waiters
        of the same offset, one that has waited ORDER_AFTER. The new request then goes behind
        the waiters instead of taking a place that has just freed up: without that, arrivals
        overtook waiters and the oldest timed out (bench-overload at 3x)."""
        if self.words_view[W_GENERATION] != self.seen:
            self._refresh()
        words = self.words_view
        at = self.queue_heads[pool.index]
        generation = self.record[WK_GENERATION]
        since = int((rank - ORDER_AFTER) * 1e6) + 1  # the head words' encoding (µs + 1)
        for base in self.records:
            head = words[base + at]
            if head and head <= since and words[base + WK_GENERATION] == generation:
                return True
        return False

    def reserve(self, target: Target) -> bool:
        """Count a request in flight to `target` if it has room (False: it had none). The
        count is raised first and checked after, so that two workers taking the last place at
        once see each other (then both try elsewhere) instead of both going."""
        if self.words_view[W_GENERATION] != self.seen:
            self._refresh()
        self.record[target.counters + MC_INFLIGHT] += 1  # started(), written out
        if self.in_flight(target.slot) <= self.loads[target.slot] & LOAD_MASK:
            return True
        self.record[target.counters + MC_INFLIGHT] -= 1
        return False

    def has_other(self, pool: PoolView, tried: AbstractSet[int]) -> bool:
        """Has `pool` a member to take a request that tried the slots in `tried`?"""
        generation = self._refresh()
        if pool.built != generation:
            self._build(pool, generation)
        return any(slot not in tried for slot in pool.candidates.slots)

    def has_room(self, target: Target) -> bool:
        """Can the member take one more request (its capacity is not all in flight)?"""
        self._refresh()
        return self.in_flight(target.slot) < self.loads[target.slot] & LOAD_MASK

    def sticky(self, pool: PoolView, route: str) -> Target | str | None:
        """The member a session's route names: a Target when it can serve the session,
        STICKY_DOWN when it exists but cannot (stale, in error, disabled), None when no member
        of the pool has that route (then the route means nothing)."""
        address = pool.routes.get(route)
        if address is None:
            return None
        self._refresh()
        slot = self.slot_of.get(address)
        if slot is None:
            return STICKY_DOWN
        uid = self.uids[slot]
        if not self.words[slot] & USABLE or \
                self.admin.get((pool.name, uid), 0) & POOL_DISABLED:
            return STICKY_DOWN
        target = self.targets.get(slot)
        if target is None or target.uid != uid:
            target = self._load(slot)
        return target if target is not None else STICKY_DOWN

    def route_of(self, pool: PoolView, target: Target) -> str:
        """The route of `target` in `pool` ("" if it has none)."""
        for route, address in pool.routes.items():
            if self.slot_of.get(address) == target.slot:
                return route
        return ""

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
        if self.record[at + MC_INFLIGHT]:  # an unsigned word: never wrap below 0
            self.record[at + MC_INFLIGHT] -= 1
        if 100 <= status < 600:
            self.record[at + MC_STATUS_CLASS + status // 100 - 1] += 1
        if self.on_room is not None:
            self.on_room()

    def observe(self, target: Target, outcome: int, seconds: float = 0.0) -> None:
        """What one request told about `target` (hbfork.core.outlier: OK, FAILED_STATUS,
        GATEWAY) and, for an answer, how long it took (the corrected pick's speeds, read when
        the pool's candidates are next rebuilt); reported to the master when the detector
        says the member should go."""
        if seconds > 0:
            self.times.observe(target.slot, seconds)
        detector = self.detector
        if detector is None:
            return
        cause = detector.observe(target.slot, target.uid, outcome, self.clock())
        if cause and self.on_eject is not None:
            self.on_eject(target, cause)

    def connect_failed(self, target: Target) -> None:
        if self.record[target.counters + MC_UID] == target.uid:
            self.record[target.counters + MC_CONNECT_FAILURES] += 1

    def observe_latency(self, seconds: float) -> None:
        record = self.record
        # The first bucket whose bound is >= seconds (the last index is +Inf).
        record[WK_HISTOGRAM + bisect_left(LATENCY_BUCKETS, seconds)] += 1
        record[WK_LATENCY_SUM] += int(seconds * 1e6)
        record[WK_LATENCY_COUNT] += 1
