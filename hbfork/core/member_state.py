"""A member's state and the rules that judge it: when it may be picked, and why not. Pure.

A member is picked only while all hold: it has been heard from within `max_age`, its ready is
above 0, and it is not drained, disabled, in error, failing its active checks or ejected. Its
weight is its ready, capped by `max_ready` when one is set, and ramped up for `slow_start`
after it (re)joins.
"""

from __future__ import annotations

from dataclasses import dataclass

from hbfork.core.addresses import Endpoint, IPAddress
from hbfork.core.balancing import ramp
from hbfork.core.config import Config
from hbfork.core.hcheck import NO_SUMMARY, Summary
from hbfork.core.outlier import OutlierSettings

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
EJECTED = "ejected"      # its answers failed (hbfork.core.outlier): out for a while
CHECK_FAILED = "check failed"  # it fails its active checks (hbfork.core.hcheck)
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
    outlier: OutlierSettings = OutlierSettings()
    require_port_match: bool = False

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
            outlier=config.outlier,
            require_port_match=hb.require_port_match,
        )

    def age_limit(self, member: Member) -> int:
        """ns after its last heartbeat that `member` goes stale: max_age, or about three of
        its own beats when it beats slower than Apache's once a second (Tomcat's
        HeartbeatListener: every 10 s), capped at forget_after: one late datagram must not
        make it stale and move its sticky sessions."""
        own = 3 * member.interval
        if own <= self.max_age:
            return self.max_age
        return max(self.max_age, min(own, self.forget_after))

    def ramp_length(self, member: Member) -> int:
        """ns over which `member` ramps up now: after an ejection at least the outlier
        slow_start, else [balance] slow_start."""
        if member.from_ejection:
            return max(self.slow_start, int(self.outlier.slow_start * NS))
        return self.slow_start


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
    others_seen: tuple[int, ...] = ()  # other fronts' busy workers there, last reports
    up_since: int = 0        # monotonic ns it last became eligible after being out (ramp)
    ejected_until: int = 0   # monotonic ns; out for failing answers while now < this
    ejections: int = 0       # recent ejections (each makes the next one longer; decays)
    eject_cause: int = 0     # hbfork.core.outlier.CAUSES index of the last ejection
    ejected_total: int = 0
    from_ejection: bool = False  # its current up period began when an ejection ended
    reported: int = 0        # the weight its heartbeat gives it (for the panic rule)
    interval: int = 0        # ns between its heartbeats, as learned (0: not known yet)
    check: Summary = NO_SUMMARY  # its active checks (the master's hbfork.master.checks)

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
            if member.check.failing:
                return 0, CHECK_FAILED
            return (0, IN_ERROR) if now < member.error_until else (GRACE_WEIGHT, GRACE)
        return 0, NEVER_SEEN
    if now - member.last_seen >= rules.age_limit(member):
        return 0, STALE
    if now < member.error_until:
        return 0, IN_ERROR
    if member.check.failing:
        return 0, CHECK_FAILED
    if now < member.ejected_until:
        return 0, EJECTED
    if member.ready <= 0:
        return 0, READY_ZERO
    weight = reported_weight(member, rules)
    length = rules.ramp_length(member)
    if length and member.up_since:
        weight = ramp(weight, (now - member.up_since) / NS, length / NS)
    return weight, ELIGIBLE


def learn_interval(interval: int, gap: int) -> int:
    """The member's beat interval after a heartbeat `gap` ns after the previous one: a moving
    average in which one gap counts a quarter, and a gap (missed beats) counts as at most
    twice the interval known so far."""
    if gap <= 0:
        return interval
    if not interval:
        return gap
    return (3 * interval + min(gap, 2 * interval)) // 4


def reported_weight(member: Member, rules: Rules) -> int:
    """The weight its heartbeat gives it (ready, capped), whatever else holds it out."""
    cap = member.max_ready or rules.max_ready
    return max(0, min(member.ready, cap) if cap else member.ready)


def usable(member: Member, now: int, rules: Rules) -> bool:
    """May the member serve requests that stick to it? Fresh, not in error, ejected or
    failing its checks, not disabled: drained members and members reporting ready 0 still
    serve their sessions, as Apache's drain mode does."""
    return (not member.disabled and bool(member.first_seen)
            and now - member.last_seen < rules.age_limit(member) and now >= member.error_until
            and now >= member.ejected_until and not member.check.failing)
