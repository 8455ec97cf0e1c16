"""A worker's view of the members: pick one in a pool, find a sticky session's member, know
its address, count what happens to it.

Reads only the shared table. Whenever the table's generation moves, the worker takes one look
at it (weight words, uids, pool states) and each pool's picker is rebuilt the next time the
pool is used; member addresses are cached per (slot, uid). A pick then costs a generation read,
one random number and a bisect. Counters go to this worker's own record in the table (it is
their only writer).
"""

from __future__ import annotations

import random
import socket
from bisect import bisect_left
from dataclasses import dataclass

from hbfork.core.addresses import Endpoint
from hbfork.core.balancer import USABLE, WEIGHT_MASK, Picker
from hbfork.core.config import Config
from hbfork.core.pool_admin import POOL_DISABLED, POOL_DRAINED
from hbfork.core.pool_settings import PoolSettings
from hbfork.core.settings import HttpSettings
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

# sticky() when the session's member is known but cannot serve it now
STICKY_DOWN = "down"


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


class PoolView:
    """One pool as the worker picks from it (its settings, and a picker over its members)."""

    __slots__ = ("built", "connect_timeout", "cookie_bytes", "cookie_name", "discover", "index",
                 "members", "name", "param_bytes", "param_name", "picker", "response_timeout",
                 "retries", "retry_ms", "routes", "separator", "settings", "sticky")

    def __init__(self, index: int, settings: PoolSettings, http: HttpSettings) -> None:
        self.index = index
        # The pool's own timeouts, or [http]'s; retry_ms None: the master's [proxy] retry.
        self.connect_timeout = _or(settings.connect_timeout, http.connect_timeout)
        self.response_timeout = _or(settings.response_timeout, http.response_timeout)
        self.retries = _or(settings.retries, http.retries)
        self.retry_ms = None if settings.retry is None else int(settings.retry * 1000)
        self.name = settings.name
        self.settings = settings
        self.members = [(m.address, m.tier) for m in settings.members]
        self.routes = {m.route: m.address for m in settings.members if m.route}
        self.discover = settings.discover
        self.cookie_name, self.param_name = settings.sticky_names
        self.cookie_bytes = self.cookie_name.encode()
        self.param_bytes = self.param_name.encode()
        self.sticky = bool(self.cookie_name)
        self.separator = settings.stickysessionsep
        self.picker = Picker()
        self.built = -1


def _or(value: float | int | None, default: float | int) -> float | int:
    return default if value is None else value


class Upstreams:
    def __init__(self, table: Table, record: memoryview, config: Config | None = None,
                 rng: random.Random | None = None) -> None:
        self.table = table
        self.record = record
        self.targets: dict[int, Target] = {}
        self.random = (rng or random.Random()).random
        pools = config.pools if config is not None else (PoolSettings(name="default"),)
        http = config.http if config is not None else HttpSettings()
        self.pools = {p.name: PoolView(i, p, http) for i, p in enumerate(pools)}
        self.default = next(iter(self.pools.values()))
        if config is not None:
            self.default = self.pools.get("default", self.default)
        self.seen = -1                               # the generation last looked at
        self.words: list[int] = []
        self.uids: list[int] = []
        self.slot_of: dict[Endpoint, int] = {}
        self.discovered: set[int] = set()
        self.admin: dict[tuple[str, int], int] = {}
        self._everyone = config is None  # no pools configured: every member of the table

    # --- the table, once per generation

    def _refresh(self) -> int:
        table = self.table
        generation = table.generation
        if generation != self.seen:
            self.seen = generation
            self.words = table.weight_words()
            uids = table.uid_words()
            if uids != self.uids:
                self._remap(uids)
            self.admin = table.read_admin() if table.admin_count() else {}
        return generation

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
            record = self.table.read_member(slot) if uid else None
            if record is not None:
                self.slot_of[Endpoint(record.ip, record.port)] = slot
                if not record.static:
                    self.discovered.add(slot)
        self.uids = uids

    def _build(self, pool: PoolView, generation: int) -> None:
        words, admin, uids = self.words, self.admin, self.uids
        entries = []
        if self._everyone:
            pool.picker.rebuild(words, generation)
            pool.built = generation
            return
        for address, tier in pool.members:
            slot = self.slot_of.get(address)
            if slot is None:
                continue
            weight = words[slot] & WEIGHT_MASK
            if weight and not admin.get((pool.name, uids[slot]), 0) & (POOL_DRAINED |
                                                                      POOL_DISABLED):
                entries.append((tier, slot, weight))
        if pool.discover:
            for slot in self.discovered:
                weight = words[slot] & WEIGHT_MASK
                if weight and not admin.get((pool.name, uids[slot]), 0):
                    entries.append((0, slot, weight))
        pool.picker.load(entries, generation)
        pool.built = generation

    # --- picks

    def choose(self, excluded: set[int] | None = None,
               pool: PoolView | None = None) -> Target | None:
        """A member of `pool` (default: the default pool) drawn by ready-weighted random,
        avoiding the slots in `excluded`."""
        pool = pool or self.default
        generation = self._refresh()
        if pool.built != generation:
            self._build(pool, generation)
        picker = pool.picker
        if excluded:
            slot = picker.pick_excluding(self.random(), excluded)
        else:
            slot = picker.pick(self.random())
        if slot is None:
            return None
        target = self.targets.get(slot)
        if target is None or target.uid != self.uids[slot]:
            target = self._load(slot)
            if target is None:
                # The master freed the slot after this picker was built: pick again without it.
                return self.choose({*(excluded or ()), slot}, pool)
        return target

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
