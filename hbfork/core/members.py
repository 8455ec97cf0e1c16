"""The member registry: who a heartbeat belongs to, errors and ejections, expiry, reload.

Pure: the master owns one Registry, feeds it heartbeats, error reports, ejection requests and
the clock (`now`, monotonic nanoseconds), and copies the members it marks dirty into the
shared table. When a member may be picked is hbfork.core.member_state's.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from hbfork.core.addresses import Endpoint, IPAddress
from hbfork.core.balancing import capacity_of
from hbfork.core.config import Config
from hbfork.core.errors import HeartbeatError
from hbfork.core.hcheck import Summary
from hbfork.core.heartbeat import Heartbeat, verify
from hbfork.core.member_state import (  # re-exported: the names every reader of members uses
    CHECK_FAILED,
    DISABLED,
    DRAINED,
    EJECTED,
    ELIGIBLE,
    GRACE,
    GRACE_WEIGHT,
    IN_ERROR,
    NEVER_SEEN,
    NS,
    RAMP_STEP,
    READY_ZERO,
    STALE,
    Member,
    Rules,
    evaluate,
    learn_interval,
    reported_weight,
    usable,
)
from hbfork.core.outlier import decayed, ejection_seconds, may_eject
from hbfork.core.pool_settings import PoolSettings
from hbfork.core.settings import MemberSettings

__all__ = ["CHECK_FAILED", "DISABLED", "DRAINED", "EJECTED", "ELIGIBLE", "GRACE", "GRACE_WEIGHT",
           "IN_ERROR", "NEVER_SEEN", "NS", "RAMP_STEP", "READY_ZERO", "STALE", "Change", "Ejection",
           "Member", "Registry", "Rules", "evaluate", "reported_weight", "usable"]


@dataclass(slots=True)
class Ejection:
    """What eject() did, for the master's log."""
    member: Member
    cause: int
    seconds: float        # how long it is out (0 when refused)
    refused: bool = False  # the pool's max_ejected_share was reached: it stays in


@dataclass(slots=True)
class Change:
    """A member whose pick state changed: logged by the master."""
    member: Member
    before: str
    after: str


@dataclass
class Registry:
    rules: Rules
    keys: tuple[bytes, ...] = ()
    members: dict[int, Member] = field(default_factory=dict)       # slot -> member
    by_ip: dict[IPAddress, list[Member]] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)                   # slots to rewrite
    changes: list[Change] = field(default_factory=list)
    next_deadline: int = 0
    grace_until: int = 0  # monotonic ns; see evaluate()
    notes: list[str] = field(default_factory=list)  # for the log, said once (take_notes)
    noted: set[tuple[IPAddress, int]] = field(default_factory=set)
    _next_uid: int = 1
    _free: list[int] = field(default_factory=list)  # heap of free slots, lowest first

    def __post_init__(self) -> None:
        self._free = list(range(self.rules.capacity))

    @classmethod
    def from_config(cls, config: Config, keys: tuple[bytes, ...] = ()) -> Registry:
        registry = cls(Rules.from_config(config), keys)
        registry.set_static(config.static_members, now=0)
        return registry

    def start_grace(self, now: int) -> None:
        """The master has just started: begin the startup grace (see evaluate)."""
        self.grace_until = now + self.rules.startup_grace if self.rules.startup_grace else 0
        self.next_deadline = 0  # re-evaluate everyone at the next expire()

    # --- queries

    def __iter__(self) -> Iterator[Member]:
        return iter(sorted(self.members.values(), key=lambda m: m.slot))

    def find(self, endpoint: Endpoint) -> Member | None:
        for member in self.by_ip.get(endpoint.ip, ()):
            if member.port == endpoint.port:
                return member
        return None

    def take_dirty(self) -> list[tuple[int, Member | None]]:
        """Slots to rewrite in the table (None: the slot is now free)."""
        out = [(slot, self.members.get(slot)) for slot in sorted(self.dirty)]
        self.dirty.clear()
        return out

    def take_notes(self) -> list[str]:
        out, self.notes = self.notes, []
        return out

    def take_changes(self) -> list[Change]:
        out, self.changes = self.changes, []
        return out

    # --- heartbeats

    def apply(self, source: IPAddress, heartbeat: Heartbeat, now: int,
              wall: float, seen: int | None = None) -> list[Member]:
        """Record a heartbeat from `source`; returns the members it updated.

        `seen` is when the heartbeat was really received, for heartbeats relayed through
        another monitor's storage file (default: now); older news than a member already has
        is ignored. Raises HeartbeatError with reason unknown_source, unknown_port,
        table_full or a signature reason; the registry is unchanged then."""
        at = now if seen is None else min(seen, now)
        targets = self._targets(source, heartbeat)
        self._check_signature(targets, heartbeat, wall)
        if not targets:
            targets = [self._discover(source, heartbeat.port or self.rules.default_port, now)]
        elif seen is not None:
            targets = [m for m in targets if at > m.last_seen]
        for member in targets:
            member.ready, member.busy = heartbeat.ready, heartbeat.busy
            member.capacity = capacity_of(heartbeat.ready, heartbeat.busy, member.max_conns,
                                          self.rules.max_capacity)
            if member.first_seen and at > member.last_seen:
                member.interval = learn_interval(member.interval, at - member.last_seen)
            member.first_seen = member.first_seen or at
            member.last_seen = at
            member.heartbeats += 1
            if heartbeat.signed and self.keys:
                # Only a verified ts may raise the replay bar: with signing off, an unchecked
                # far-future ts would make every real signed heartbeat a "replay" once it is on.
                member.last_ts = heartbeat.ts
            self._reevaluate(member, now)
            self.dirty.add(member.slot)
        limit = max(self.rules.age_limit(m) for m in targets)
        self.next_deadline = min(self.next_deadline or at + limit, at + limit)
        return targets

    def _targets(self, source: IPAddress, heartbeat: Heartbeat) -> list[Member]:
        """Members a heartbeat updates; [] means "discover a new one"."""
        known = self.by_ip.get(source, [])
        if heartbeat.port is None:
            if known or self.rules.discover:
                return list(known)
            raise HeartbeatError("unknown_source", f"{source} is not a member")
        for member in known:
            if member.port == heartbeat.port:
                return [member]
        if self.rules.discover:
            return []
        if known:
            ports = ", ".join(str(m.port) for m in known)
            if not self.rules.require_port_match:
                # Apache matches by IP alone: a Tomcat with an AJP and an HTTP connector beats
                # port=8009 by default. Said once per IP and port.
                if (source, heartbeat.port) not in self.noted:
                    self.noted.add((source, heartbeat.port))
                    self.notes.append(f"heartbeats from {source} say port={heartbeat.port}, "
                                      f"which no member of it has (port {ports}): matched "
                                      f"by IP alone, as Apache does ([heartbeat] "
                                      f"require_port_match = true refuses them)")
                return list(known)
            raise HeartbeatError("unknown_port", f"{source} sent port={heartbeat.port}, "
                                                 f"but its members use port {ports}")
        raise HeartbeatError("unknown_source", f"{source} is not a member")

    def _check_signature(self, targets: list[Member], heartbeat: Heartbeat, wall: float) -> None:
        if not self.keys:
            return  # signing is off: a signature, if any, is just an unknown field
        required = self.rules.require_signature or any(m.require_signature for m in targets)
        if not heartbeat.signed:
            if required:
                raise HeartbeatError("unsigned", "unsigned heartbeat where a signature is required")
            return
        last = max((m.last_ts for m in targets if m.last_ts is not None), default=None)
        verify(heartbeat, self.keys, wall, self.rules.signature_window, last)

    def _discover(self, ip: IPAddress, port: int, now: int) -> Member:
        if len(self.members) >= self.rules.capacity:
            raise HeartbeatError("table_full", f"{ip} port {port}: all {self.rules.capacity} "
                                               f"slots are taken (raise max_members)")
        return self._add(ip, port, static=False)

    def _add(self, ip: IPAddress, port: int, static: bool) -> Member:
        slot = heapq.heappop(self._free)
        member = Member(slot=slot, uid=self._next_uid, ip=ip, port=port, static=static)
        self._next_uid += 1
        self.members[slot] = member
        self.by_ip.setdefault(ip, []).append(member)
        self.dirty.add(slot)
        return member

    def _remove(self, member: Member) -> None:
        del self.members[member.slot]
        heapq.heappush(self._free, member.slot)
        peers = self.by_ip[member.ip]
        peers.remove(member)
        if not peers:
            del self.by_ip[member.ip]
        self.dirty.add(member.slot)
        if member.weight:
            self.changes.append(Change(member, member.reason, "forgotten"))

    def _reevaluate(self, member: Member, now: int) -> None:
        if member.reason not in (ELIGIBLE, READY_ZERO) and not member.disabled and \
                not member.drained and member.first_seen and \
                now - member.last_seen < self.rules.age_limit(member) and \
                now >= member.error_until \
                and now >= member.ejected_until and not member.check.failing:
            member.up_since = now  # (re)joining: slow start ramps from here
            member.from_ejection = member.reason in (EJECTED, CHECK_FAILED)
        weight, reason = evaluate(member, now, self.rules, self.grace_until)
        reported = reported_weight(member, self.rules)
        if reported != member.reported:
            member.reported = reported
            self.dirty.add(member.slot)
        sticky = reason == GRACE or usable(member, now, self.rules)
        if reason == GRACE:
            # Tried before its first heartbeat: it has no reported capacity yet, so none is
            # enforced (its configured max_conns, else the cap on anyone's).
            member.capacity = member.max_conns or self.rules.max_capacity
        if reason != member.reason:
            self.changes.append(Change(member, member.reason, reason))
        if weight != member.weight or reason != member.reason or sticky != member.usable:
            member.weight, member.reason, member.usable = weight, reason, sticky
            self.dirty.add(member.slot)

    # --- passive health and operator actions

    def mark_error(self, slot: int, uid: int, now: int, retry: int | None = None) -> Member | None:
        """A worker could not connect to the member in `slot`: keep it out for `retry` ns
        (default: the rules'; a pool may have its own)."""
        member = self.members.get(slot)
        if member is None or member.uid != uid or now < member.error_until:
            return None  # forgotten since, or already in error (several workers report it)
        member.error_until = now + (self.rules.retry if retry is None else retry)
        member.errors += 1
        self._reevaluate(member, now)
        self.dirty.add(slot)
        self.next_deadline = min(self.next_deadline or member.error_until, member.error_until)
        return member

    def eject(self, slot: int, uid: int, cause: int, now: int,
              pools: Iterable[Sequence[Member]] = ()) -> Ejection | None:
        """A worker saw the member in `slot` fail (cause: hbfork.core.outlier.CAUSES): take it
        out for the whole front, unless its pools (`pools`: the members of each pool it is
        in) have as many members ejected already as [outlier] max_ejected_share allows.
        None: nothing to do (forgotten, or out already: several workers report it)."""
        member = self.members.get(slot)
        settings = self.rules.outlier
        if member is None or member.uid != uid or member.reason != ELIGIBLE or \
                not settings.enabled:
            return None
        for peers in pools:
            out = sum(1 for m in peers if m is not member and now < m.ejected_until)
            if not may_eject(out, len(peers), settings.max_ejected_share):
                return Ejection(member, cause, 0.0, refused=True)
        if member.ejected_until:
            member.ejections = decayed(member.ejections, (now - member.ejected_until) / NS,
                                       settings.eject_time)
        member.ejections += 1
        seconds = ejection_seconds(settings, member.ejections)
        member.ejected_until = now + int(seconds * NS)
        member.eject_cause = cause
        member.ejected_total += 1
        self._reevaluate(member, now)
        self.dirty.add(slot)
        self.next_deadline = min(self.next_deadline or member.ejected_until,
                                 member.ejected_until)
        return Ejection(member, cause, seconds)

    def set_check(self, slot: int, uid: int, summary: Summary, now: int) -> Member | None:
        """What the member's active checks say now (hbfork.master.checks); a failing check
        holds it out whatever its heartbeat says. None: it is gone."""
        member = self.members.get(slot)
        if member is None or member.uid != uid:
            return None
        if summary != member.check:
            member.check = summary
            self._reevaluate(member, now)
            self.dirty.add(slot)
        return member

    def pool_groups(self, member: Member,
                    pools: Sequence[PoolSettings]) -> list[list[Member]]:
        """The members of each pool `member` is in (a listed address, or a discovered member
        in a pool that takes discovered ones): what max_ejected_share is counted over."""
        def belongs(m: Member, pool: PoolSettings, listed: set[Endpoint]) -> bool:
            return m.endpoint in listed or (pool.discover and not m.static)

        groups = []
        for pool in pools:
            listed = {m.address for m in pool.members}
            if belongs(member, pool, listed):
                groups.append([m for m in self.members.values() if belongs(m, pool, listed)])
        return groups or [list(self.members.values())]

    def set_admin(self, member: Member, *, drained: bool | None = None,
                  disabled: bool | None = None, now: int) -> None:
        if drained is not None:
            member.drained = drained
        if disabled is not None:
            member.disabled = disabled
        self._reevaluate(member, now)
        self.dirty.add(member.slot)

    def adopt(self, endpoint: Endpoint, ready: int, busy: int, first_seen: int, last_seen: int,
              error_until: int, drained: bool, disabled: bool, eligible: bool,
              now: int) -> Member | None:
        """Take a member's state from the master this one replaces (a binary upgrade: both
        read the same monotonic clock). Newer news than the copy is kept; a member the config
        no longer has, and does not discover, is left out. An eligible member stays eligible
        without a new slow start."""
        member = self.find(endpoint)
        if member is None:
            if not self.rules.discover or not first_seen or len(self.members) >= \
                    self.rules.capacity:
                return None
            member = self._add(endpoint.ip, endpoint.port, static=False)
        if last_seen > member.last_seen:
            member.ready, member.busy = ready, busy
            member.capacity = capacity_of(ready, busy, member.max_conns, self.rules.max_capacity)
            member.first_seen = member.first_seen or first_seen
            member.last_seen = last_seen
        member.error_until = max(member.error_until, error_until)
        member.drained, member.disabled = drained, disabled
        if eligible:
            member.reason = ELIGIBLE  # so _reevaluate does not start a ramp
        self._reevaluate(member, now)
        self.dirty.add(member.slot)
        self.next_deadline = 0  # re-evaluate everyone at the next expire()
        return member

    # --- time

    def expire(self, now: int) -> None:
        """Apply everything time does: staleness, end of error, forgetting. Cheap when early."""
        if now < self.next_deadline:
            return
        deadline = now + self.rules.forget_after
        for member in list(self.members.values()):
            if not member.static and member.first_seen and \
                    now - member.last_seen >= self.rules.forget_after:
                self._remove(member)
                continue
            self._reevaluate(member, now)
            deadline = min(deadline, *self._deadlines(member, now))
        self.next_deadline = deadline

    def _deadlines(self, member: Member, now: int) -> Iterable[int]:
        if member.first_seen:
            limit = self.rules.age_limit(member)
            if now - member.last_seen < limit:
                yield member.last_seen + limit
            if not member.static:
                yield member.last_seen + self.rules.forget_after
        if member.error_until > now:
            yield member.error_until
        if member.ejected_until > now:
            yield member.ejected_until
        length = self.rules.ramp_length(member)
        ramp_end = member.up_since + length
        if length and member.reason == ELIGIBLE and ramp_end > now:
            yield min(ramp_end, now + RAMP_STEP)  # the weight grows in steps while it ramps
        if not member.first_seen and now < self.grace_until:
            yield self.grace_until
        yield now + self.rules.forget_after

    # --- reload

    def set_static(self, static: Sequence[MemberSettings], now: int) -> None:
        """Make the static members those of `static`, keeping the state of every member that
        stays (matched by IP and port). Members no longer listed become discovered ones when
        discovery is on (and are forgotten in time), else they are removed."""
        wanted = {m.address: m for m in static}
        for known in list(self.members.values()):
            if known.static and known.endpoint not in wanted:
                # A member never heard from would never be forgotten: remove it now.
                if self.rules.discover and known.first_seen:
                    known.static = False
                else:
                    self._remove(known)
        for settings in static:
            member = self.find(settings.address)
            if member is None:
                if len(self.members) >= self.rules.capacity:
                    self._evict_one()
                member = self._add(settings.address.ip, settings.address.port, static=True)
                member.disabled = settings.disabled
            elif settings.disabled != member.configured_disabled:
                member.disabled = settings.disabled  # the file changed: it wins over `ctl`
            member.configured_disabled = settings.disabled
            member.static = True
            member.lbset, member.name = settings.lbset, settings.name
            member.max_ready, member.require_signature = (settings.max_ready,
                                                          settings.require_signature)
            member.max_conns = settings.max_conns
            member.capacity = capacity_of(member.ready, member.busy, member.max_conns,
                                          self.rules.max_capacity)
            self._reevaluate(member, now)
            self.dirty.add(member.slot)

    def reconfigure(self, rules: Rules, static: Sequence[MemberSettings],
                    keys: tuple[bytes, ...], now: int) -> None:
        self.rules = replace(rules, capacity=self.rules.capacity)  # the table cannot grow
        self.keys = keys
        self.set_static(static, now)
        if not self.rules.discover:
            for member in [m for m in self.members.values() if not m.static]:
                self._remove(member)  # discovery turned off: only listed members remain
        self.next_deadline = 0  # re-evaluate everyone under the new rules
        self.expire(now)

    def _evict_one(self) -> None:
        discovered = [m for m in self.members.values() if not m.static]
        if not discovered:
            raise HeartbeatError("table_full", "more static members than table slots")
        self._remove(min(discovered, key=lambda m: m.last_seen))

