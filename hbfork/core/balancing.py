"""Choosing among a pool's members with what this front itself has in flight. Pure: the
caller passes the members, a function for their in-flight counts and the random source.

Heartbeats come about once a second; between two, a front that goes only by the reported
`ready` keeps sending to the member that reported the most idle workers even after it has
filled up. So every pick looks at what this front has sent since the report:

    effective(m) = ready(m) - (in_flight_now(m) - in_flight_at_report(m)),  floored at 0

`ready` already counts the requests that were in flight when the member reported (they were
busy workers then; in_flight_at_report is their number, see at_report()), so only the change
since counts; requests that finished since then give
capacity back (capped at ready + in_flight_at_report: what the member has in all). Every pick
also respects the member's capacity, `ready + busy` from its last heartbeat (or a configured
`max_conns`): a member with that many requests of ours in flight is full and is not picked.

    corrected (default)   P(m) proportional to effective(m) x speed(m); when every member with
                          room is at 0, the reported `ready` shares (never refuse while members
                          are up). speed(m) is 1 for members whose recent response times are
                          within 4x the pool's fastest, else 4 x fastest / m's: a member that
                          answers in 200 ms while the others take 2 ms gets its freed slots
                          refilled 25 times more slowly instead of at once (every slot it frees
                          is an effective ready of 1), which kept it full and clients held there
    reported              P(m) proportional to ready(m) (Apache's lbmethod_heartbeat), still
                          within capacity
    p2c                   two members with room drawn at random, the one with more effective
                          ready wins (power of two choices; O(1) per pick, for large pools)

A pick returns a slot, FULL when members are up but none can take a request now (the caller
queues it), or None when no member can serve at all. Corrected picks draw by capacity and
accept with probability effective / capacity (exact: the accepted draw is proportional to
effective), so a pick costs a few in-flight reads, not one per member; after a few rejections
every member is looked at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hbfork.core.balancer import Picker

FULL = -1          # members are up, but every one is at capacity or has nothing to give
TRIES = 8          # rejection-sampling draws before every member is looked at
DRAWS = range(TRIES)  # made once: a range() per pick was ~1,000 instructions of it
WEIGHTINGS = ("corrected", "reported")
OTHERS_REPORTS = 3  # heartbeats over which a small share of other fronts must be seen
REPORT_SKEW = 1     # ... that small: what one read between a request and its refill misses
PICKS = ("weighted", "p2c")


def effective(ready: int, in_flight: int, at_report: int) -> int:
    """The member's idle capacity as this front sees it now (see the module docstring)."""
    value = ready - (in_flight - at_report)
    if value <= 0:
        return 0
    most = ready + at_report
    return value if value < most else most  # (min() costs ~9x this: once per request)


@dataclass
class Members:
    """The members a pick may choose from: the pool's lowest tier that has usable ones."""
    slots: list[int] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)      # reported (capped, ramped) ready
    capacity: list[int] = field(default_factory=list)   # most requests in flight at once
    at_report: list[int] = field(default_factory=list)  # ours in flight when it reported
    speed: list[float] = field(default_factory=list)    # (0, 1]: relative response speed
    by_capacity: Picker = field(default_factory=Picker)
    by_ready: Picker = field(default_factory=Picker)

    def load(self, entries: Sequence[tuple[int, int, int, int, int]], generation: int) -> None:
        """From (tier, slot, ready, capacity, at_report) of every usable member."""
        tiers = [e[0] for e in entries if e[3] > 0]
        best = min(tiers) if tiers else None
        chosen = sorted(e for e in entries if e[0] == best and e[3] > 0)
        self.slots = [e[1] for e in chosen]
        self.ready = [e[2] for e in chosen]
        self.capacity = [e[3] for e in chosen]
        self.at_report = [e[4] for e in chosen]
        self.speed = [1.0] * len(chosen)
        self.by_capacity.load([(0, i, c) for i, c in enumerate(self.capacity) if c], generation)
        self.by_ready.load([(0, i, r) for i, r in enumerate(self.ready) if r], generation)

    def __len__(self) -> int:
        return len(self.slots)


InFlight = Callable[[int], int]   # slot -> requests this front has in flight to it now


def choose(members: Members, weighting: str, pick: str, in_flight: InFlight,
           rand: Callable[[], float], excluded: set[int] | frozenset[int] = frozenset()
           ) -> int | None:
    """A slot, FULL, or None (see the module docstring)."""
    if not members.slots:
        return None
    if pick == "p2c":
        return _p2c(members, weighting, in_flight, rand, excluded)
    if weighting == "reported":
        return _reported(members, in_flight, rand, excluded)
    return _corrected(members, in_flight, rand, excluded)


def _corrected(m: Members, in_flight: InFlight, rand: Callable[[], float],
               excluded: set[int] | frozenset[int]) -> int | None:
    pick, slots, capacity = m.by_capacity.pick, m.slots, m.capacity
    for _ in DRAWS:
        i = pick(rand())
        if i is None:
            break
        slot = slots[i]
        if slot in excluded:
            continue  # a retry: draw again rather than look at everyone
        now = in_flight(slot)
        if now < capacity[i] and \
                rand() * capacity[i] < effective(m.ready[i], now, m.at_report[i]) * m.speed[i]:
            return slot
    return _scan(m, in_flight, rand, excluded, corrected=True)


def _reported(m: Members, in_flight: InFlight, rand: Callable[[], float],
              excluded: set[int] | frozenset[int]) -> int | None:
    pick, slots, capacity = m.by_ready.pick, m.slots, m.capacity
    for _ in DRAWS:
        i = pick(rand())
        if i is None:
            break
        slot = slots[i]
        if slot not in excluded and in_flight(slot) < capacity[i]:
            return slot
    return _scan(m, in_flight, rand, excluded, corrected=False)


def _scan(m: Members, in_flight: InFlight, rand: Callable[[], float],
          excluded: set[int] | frozenset[int], corrected: bool) -> int | None:
    """Every member once: weights of those with room, by effective ready (corrected) with the
    reported shares as the fallback; FULL when none has both room and something to give."""
    weights: list[float] = []
    fallback: list[float] = []
    for i, slot in enumerate(m.slots):
        if slot in excluded:
            weights.append(0)
            fallback.append(0)
            continue
        now = in_flight(slot)
        room = now < m.capacity[i]
        fallback.append(m.ready[i] if room else 0)
        weights.append(effective(m.ready[i], now, m.at_report[i]) * m.speed[i]
                       if room and corrected else fallback[-1])
    if not any(weights):
        weights = fallback
    if not any(weights):
        if all(slot in excluded for slot in m.slots):
            return None
        return FULL
    return m.slots[_draw(weights, rand())]


def _p2c(m: Members, weighting: str, in_flight: InFlight, rand: Callable[[], float],
         excluded: set[int] | frozenset[int]) -> int | None:
    count = len(m.slots)
    if count == 1 or (excluded and len(excluded) * 2 >= count):
        return _scan(m, in_flight, rand, excluded, corrected=weighting == "corrected")
    a = int(rand() * count)
    b = int(rand() * (count - 1))
    b = b + 1 if b >= a else b  # a different member
    if excluded and (m.slots[a] in excluded or m.slots[b] in excluded):
        return _p2c(m, weighting, in_flight, rand, excluded)  # draw again
    best, best_value = None, 0
    for i in (a, b):
        now = in_flight(m.slots[i])
        if now >= m.capacity[i]:
            continue
        value = effective(m.ready[i], now, m.at_report[i]) if weighting == "corrected" \
            else m.ready[i]
        if best is None or value > best_value or (value == best_value and rand() < 0.5):
            best, best_value = i, value
    if best is None or best_value == 0:
        return _scan(m, in_flight, rand, excluded, corrected=weighting == "corrected")
    return m.slots[best]


def _draw(weights: list[float], r: float) -> int:
    target = r * sum(weights)
    running = 0.0
    for i, weight in enumerate(weights):
        running += weight
        if target < running:
            return i
    return max(range(len(weights)), key=weights.__getitem__)  # float rounding at the top


def at_report(flying: int, busy: int, seen: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """This front's share of a member's `busy` workers when its heartbeat came (the
    `at_report` of effective()), from `flying` (ours in flight when the master read them) and
    `seen` (the other fronts' share, busy - ours, in the last reports); returns it and the new
    `seen`. The member counted its busy workers a moment before the master read ours: a
    request of ours that ended in between (its place not yet refilled by a waiter: a worker
    runs its queue once the handler returns, another worker once woken) looks like another
    front's request, and left the member one place short (effective() never gave it back) until
    the next heartbeat, a second later. Traced (issue 28): a heartbeat read our 7 of 8 in
    flight at the 80 ms member, and one of its eight places stood free for 1.0 s while
    requests waited. So an others' share of at most REPORT_SKEW counts only as much as the
    least of the last OTHERS_REPORTS reports said: one read in such a gap no longer costs a
    place where this front was alone. A larger share (fronts that really share the member)
    counts at once, as before; a small real one is seen OTHERS_REPORTS - 1 heartbeats later,
    this front having meanwhile at most REPORT_SKEW requests more there, never beyond the
    member's capacity."""
    others = max(0, busy - flying)
    seen = (*seen[max(0, len(seen) - OTHERS_REPORTS + 1):], others)
    counted = others if others > REPORT_SKEW else min(seen)
    return max(flying, busy - counted), seen


def capacity_of(ready: int, busy: int, max_conns: int, limit: int) -> int:
    """A member's capacity: its configured max_conns, else the workers its heartbeat counts
    (ready + busy), never above `limit` (so a member reporting 10^9 cannot make it unbounded)."""
    value = max_conns if max_conns else ready + busy
    return min(value, limit)


def ramp(weight: int, seconds_up: float, slow_start: float) -> int:
    """Slow start: a member that just came (back) gets its weight linearly from ~0 over
    `slow_start` seconds (never 0 while it has any)."""
    if slow_start <= 0 or seconds_up >= slow_start or weight <= 0:
        return weight
    return max(1, int(weight * max(0.0, seconds_up) / slow_start))


class ServiceTimes:
    """A worker's recent response times per member slot (a moving average), and the speeds
    the corrected pick weighs members by (Members.speed)."""

    __slots__ = ("seconds",)
    WEIGHT = 0.1          # of the newest response in the average
    FLOOR = 0.001         # the smallest speed: a slow member still gets a trickle (and so
                          # a chance to show it is fast again)
    TOLERANCE = 4.0       # members within this factor of the fastest all count as fast:
                          # ready shares stay ready shares among comparable members

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}

    def observe(self, slot: int, seconds: float) -> None:
        known = self.seconds.get(slot)
        self.seconds[slot] = seconds if known is None else \
            known + self.WEIGHT * (seconds - known)

    def forget(self, slot: int) -> None:
        self.seconds.pop(slot, None)

    def speeds(self, slots: list[int]) -> list[float]:
        """Each slot's speed among `slots`: 1 within TOLERANCE of the fastest (and when
        unknown), else TOLERANCE x fastest / its own."""
        known = [self.seconds[s] for s in slots if s in self.seconds]
        if len(known) < 2:
            return [1.0] * len(slots)
        fastest = max(min(known), 1e-6)
        limit = fastest * self.TOLERANCE
        return [max(self.FLOOR, min(1.0, limit / max(self.seconds.get(s, fastest), 1e-6)))
                for s in slots]
