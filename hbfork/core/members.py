"""Member rules: who a heartbeat belongs to, when a member may be picked, and why not.

Pure: the master owns one Registry, feeds it heartbeats, error reports and the clock (`now`,
monotonic nanoseconds), and copies the members it marks dirty into the shared table.

A member is picked only while all hold: it has been heard from within `max_age`, its ready is
above 0, and it is not drained, disabled or in error. Its weight is its ready, capped by
`max_ready` when one is set.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from hbfork.core.addresses import Endpoint, IPAddress
from hbfork.core.balancing import capacity_of, ramp
from hbfork.core.config import Config
from hbfork.core.errors import HeartbeatError
from hbfork.core.heartbeat import Heartbeat, verify
from hbfork.core.settings import MemberSettings

NS = 1_000_000_000
RAMP_STEP = NS // 2      # how often a ramping member's weight is raised

# Why a member is (not) picked; stable strings shown in status pages and logs.
ELIGIBLE = "eligible"
NEVER_SEEN = "never seen"
STALE = "stale"
READY_ZERO = "ready 0"
IN_ERROR = "in error"
DRAINED = "drained"
DISABLED = "disabled"
GRACE = "startup grace"  # never heard from, but tried while the master has just started
GRACE_WEIGHT = 1  # any heard-from member (ready N) outweighs a merely listed one


@dataclass(frozen=True, slots=True)
class Rules:
    max_age: int            # ns
    forget_after: int       # ns
    retry: int              # ns a member stays in error
    discover: bool
    default_port: int
    max_ready: int          # 0 = no cap
    require_signature: bool
    signature_window: float  # seconds
    capacity: int
    slow_start: int = 0      # ns over which a member that (re)joins ramps up; 0 = off
    max_capacity: int = 10000  # cap on a member's derived capacity (requests in flight)
    startup_grace: int = 0  # ns after start that listed, unheard members are tried

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        hb = config.heartbeat
        return cls(
            max_age=int(hb.max_age * NS), forget_after=int(hb.forget_after * NS),
            retry=int(config.proxy.retry * NS), discover=config.discovering,
            default_port=hb.default_port, max_ready=hb.max_ready,
            require_signature=hb.require_signature, signature_window=hb.signature_window,
            capacity=hb.max_members, slow_start=int(config.balance.slow_start * NS),
            max_capacity=config.balance.max_capacity,
            startup_grace=int((hb.max_age if hb.startup_grace is None else hb.startup_grace)
                              * NS),
        )


@dataclass(slots=True, eq=False)
class Member:
    slot: int
    uid: int
    ip: IPAddress
    port: int
    static: bool
    lbset: int = 0
    name: str = ""
    max_ready: int = 0
    require_signature: bool = False
    ready: int = 0
    busy: int = 0
    first_seen: int = 0      # monotonic ns of the first heartbeat; 0 = never
    last_seen: int = 0
    heartbeats: int = 0
    error_until: int = 0     # monotonic ns; in error while now < error_until
    errors: int = 0
    drained: bool = False
    disabled: bool = False
    configured_disabled: bool = False  # what the config last said (operators may override)
    last_ts: float | None = None
    weight: int = 0          # as published in the table; 0 = not picked
    reason: str = NEVER_SEEN  # why weight is what it is
    usable: bool = False     # may serve its sticky sessions (see usable())
    max_conns: int = 0       # configured capacity; 0 = ready + busy
    capacity: int = 0        # most requests in flight to it at once (published)
    at_report: int = 0       # this front's requests in flight when its last heartbeat came
    up_since: int = 0        # monotonic ns it last became eligible after being out (ramp)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.ip, self.port)

    @property
    def label(self) -> str:
        return self.name or str(self.endpoint)


def evaluate(member: Member, now: int, rules: Rules, grace_until: int = 0) -> tuple[int, str]:
    """(weight, reason): the weight to publish and the reason for it.

    Until `grace_until` a static member not heard from yet is tried with a token weight:
    right after a (re)start no heartbeat has arrived, and refusing every request (503) would
    be worse than trying members that are most likely up; a refused connect puts the member
    in error and the request fails over, as for any member."""
    if member.disabled:
        return 0, DISABLED
    if member.drained:
        return 0, DRAINED
    if not member.first_seen:
        if member.static and now < grace_until:
            return (0, IN_ERROR) if now < member.error_until else (GRACE_WEIGHT, GRACE)
        return 0, NEVER_SEEN
    if now - member.last_seen >= rules.max_age:
        return 0, STALE
    if now < member.error_until:
        return 0, IN_ERROR
    if member.ready <= 0:
        return 0, READY_ZERO
    cap = member.max_ready or rules.max_ready
    weight = min(member.ready, cap) if cap else member.ready
    if rules.slow_start and member.up_since:
        weight = ramp(weight, (now - member.up_since) / NS, rules.slow_start / NS)
    return weight, ELIGIBLE


def usable(member: Member, now: int, rules: Rules) -> bool:
    """May the member serve requests that stick to it? Fresh, not in error, not disabled:
    drained members and members reporting ready 0 still serve their sessions, as Apache's
    drain mode does."""
    return (not member.disabled and bool(member.first_seen)
            and now - member.last_seen < rules.max_age and now >= member.error_until)


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
            member.first_seen = member.first_seen or at
            member.last_seen = at
            member.heartbeats += 1
            if heartbeat.signed and self.keys:
                # Only a verified ts may raise the replay bar: with signing off, an unchecked
                # far-future ts would make every real signed heartbeat a "replay" once it is on.
                member.last_ts = heartbeat.ts
            self._reevaluate(member, now)
            self.dirty.add(member.slot)
        self.next_deadline = min(self.next_deadline or at + self.rules.max_age,
                                 at + self.rules.max_age)
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
                now - member.last_seen < self.rules.max_age and now >= member.error_until:
            member.up_since = now  # (re)joining: slow start ramps from here
        weight, reason = evaluate(member, now, self.rules, self.grace_until)
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
            if now - member.last_seen < self.rules.max_age:
                yield member.last_seen + self.rules.max_age
            if not member.static:
                yield member.last_seen + self.rules.forget_after
        if member.error_until > now:
            yield member.error_until
        ramp_end = member.up_since + self.rules.slow_start
        if self.rules.slow_start and member.reason == ELIGIBLE and ramp_end > now:
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
        for member in list(self.members.values()):
            if member.static and member.endpoint not in wanted:
                # A member never heard from would never be forgotten: remove it now.
                if self.rules.discover and member.first_seen:
                    member.static = False
                else:
                    self._remove(member)
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

