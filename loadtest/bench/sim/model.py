"""scripts/simulate: the model. A discrete-event simulation of many fronts sharing one
heartbeat group over many members, where every pick is made by hbfork's own balancing code
(hbfork.core.balancing.choose over a Members built by Members.load, as a worker builds it).

Members: `workers` servers each, FIFO backlog beyond them (a request that finds every worker
busy waits at the member: an "overload event"), exponential service times with the member's
own mean. Every member multicasts a heartbeat once a second at its own phase with its true
ready (idle workers) and busy; every front receives it at the same instant.

A front is one hbfork instance (its workers share their in-flight counts, so one picker
stands for them): it keeps its own in-flight count per member, and, as hbfork's master does,
records on each heartbeat the member's ready, its capacity (ready + busy, capped as
hbfork.core.balancing.capacity_of caps it) and this front's in-flight count at that moment;
the worker sees those only when the table's generation moves: at once when a member's ready
goes to or from 0, otherwise at most every BUMP_INTERVAL (hbfork.master.monitor). A pick that
finds every member full (FULL) waits in the front's FIFO queue, tried again when one of this
front's requests finishes and every QUEUE_POLL (hbfork.proxy.queue) while anything waits, and
answered 503 after the queue timeout.

    reported   weighting = "reported", pick = "weighted"  (Apache's shares, within capacity)
    corrected  weighting = "corrected", pick = "weighted" (hbfork's default)
    p2c        weighting = "corrected", pick = "p2c"
    apache     Apache's lbmethod_heartbeat: P proportional to the reported ready, no capacity
               cap, no queue (503 when every member last reported ready = 0)

Arrivals: one Poisson stream at `load` x total capacity, each request to a front drawn
uniformly. Every random stream is seeded from the run's seed, and each method sees the same
members and the same arrivals (common random numbers), so the methods differ only by their
picks.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hbfork.core.balancing import FULL, Members, capacity_of, choose
from hbfork.master.monitor import BUMP_INTERVAL
from hbfork.proxy.queue import QUEUE_POLL
from loadtest.bench.stats import pct

METHODS: dict[str, tuple[str, str]] = {"reported": ("reported", "weighted"),
                                       "corrected": ("corrected", "weighted"),
                                       "p2c": ("corrected", "p2c"),
                                       "apache": ("reported", "weighted")}
MAX_CAPACITY = 10_000        # [balance] max_capacity's default
HEARTBEAT_PERIOD = 1.0
WORKER_CHOICES = ((2, 0.25), (4, 0.35), (8, 0.25), (16, 0.15))
SPEED_CHOICES = ((1.0, 0.6), (2.0, 0.25), (5.0, 0.15))   # service time multipliers
BASE_SERVICE = 0.3           # seconds: the mean service time of the fastest members

ARRIVAL, DONE, BEAT, POLL = 0, 1, 2, 3


@dataclass(frozen=True)
class Spec:
    members: int
    fronts: int
    load: float            # offered rate / total capacity
    method: str
    seconds: float         # measured
    warmup: float
    seed: int
    queue_timeout: float = 5.0


def make_members(count: int, seed: int) -> tuple[list[int], list[float], list[float]]:
    """(workers, mean service seconds, heartbeat phase) per member: heterogeneous capacity."""
    rng = random.Random(seed)
    workers = rng.choices([w for w, _ in WORKER_CHOICES], [p for _, p in WORKER_CHOICES],
                          k=count)
    speeds = rng.choices([s for s, _ in SPEED_CHOICES], [p for _, p in SPEED_CHOICES], k=count)
    service = [BASE_SERVICE * s for s in speeds]
    phase = [rng.random() * HEARTBEAT_PERIOD for _ in range(count)]
    return workers, service, phase


@dataclass
class Front:
    inflight: list[int]
    ready: list[int]          # as last reported (what the next build will use)
    capacity: list[int]
    at_report: list[int]
    rng: random.Random
    members: Members = field(default_factory=Members)
    dirty: bool = True
    visible_at: float = 0.0   # when the pending changes reach the picks (generation bump)
    last_bump: float = -1.0
    queue: deque[int] = field(default_factory=deque)
    poll_armed: bool = False
    builds: int = 0


class Simulation:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.workers, self.service, self.phase = make_members(spec.members, spec.seed)
        n = spec.members
        self.capacity_rps = sum(w / s for w, s in zip(self.workers, self.service, strict=True))
        self.rate = spec.load * self.capacity_rps
        self.weighting, self.pick = METHODS[spec.method]
        self.apache = spec.method == "apache"
        self.arrivals = random.Random(spec.seed * 7919 + 1)
        self.services = random.Random(spec.seed * 7919 + 2)
        self.fronts = [Front([0] * n, [0] * n, [0] * n, [0] * n,
                             random.Random(spec.seed * 7919 + 100 + f))
                       for f in range(spec.fronts)]
        self.busy = [0] * n
        self.backlog: list[deque[int]] = [deque() for _ in range(n)]
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        # per request
        self.arrived: list[float] = []
        self.started: list[float] = []
        self.front_of: list[int] = []
        self.member_of: list[int] = []
        self.done: list[float] = []
        self.overloaded: list[bool] = []   # it found every worker of its member busy
        self.queued: list[bool] = []       # it waited in a front queue
        self.rejected: list[bool] = []     # 503 (queue timeout, or Apache's no ready)

    def push(self, t: float, kind: int, a: int = 0, b: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    # --- the run

    def run(self) -> dict[str, Any]:
        end = self.spec.warmup + self.spec.seconds
        for j, phase in enumerate(self.phase):
            self._beat(j, 0.0, initial=True)    # every front has heard every member once
            self.push(phase, BEAT, j)
        self.push(self.arrivals.expovariate(self.rate), ARRIVAL)
        heap = self.heap
        while heap:
            t, _, kind, a, b = heapq.heappop(heap)
            if kind == ARRIVAL:
                if t >= end:
                    continue   # no more arrivals; the rest drains
                self._arrive(t)
                self.push(t + self.arrivals.expovariate(self.rate), ARRIVAL)
            elif kind == DONE:
                self._done(t, a, b)
            elif kind == BEAT:
                if t < end + self.spec.queue_timeout + 60:
                    self._beat(a, t)
                    self.push(t + HEARTBEAT_PERIOD, BEAT, a)
            else:
                self._poll(t, a)
        return self.summary()

    def _arrive(self, t: float) -> None:
        f = self.arrivals.randrange(self.spec.fronts)
        rid = len(self.arrived)
        self.arrived.append(t)
        self.started.append(math.nan)
        self.done.append(math.nan)
        self.front_of.append(f)
        self.member_of.append(-1)
        self.overloaded.append(False)
        self.queued.append(False)
        self.rejected.append(False)
        front = self.fronts[f]
        if not self._try(front, f, rid, t):
            if self.apache:
                self._reject(rid, t)
            else:
                self.queued[rid] = True
                front.queue.append(rid)
                self._arm(front, f, t)

    def _try(self, front: Front, f: int, rid: int, t: float) -> bool:
        """A pick for `rid` at front `f`: sent (True) or no member has room (False)."""
        if front.dirty and t >= front.visible_at:
            self._build(front, t)
        slot = choose(front.members, self.weighting, self.pick, front.inflight.__getitem__,
                      front.rng.random)
        if slot is None or slot == FULL:
            return False
        front.inflight[slot] += 1
        self.member_of[rid] = slot
        if self.busy[slot] < self.workers[slot]:
            self._start(slot, rid, t)
        else:
            self.overloaded[rid] = True
            self.backlog[slot].append(rid)
        return True

    def _build(self, front: Front, t: float) -> None:
        """What a worker does when the generation moved: Members.load from the table."""
        capacity = front.capacity
        if self.apache:   # no capacity cap: a member is "full" only by its reported ready
            capacity = [MAX_CAPACITY] * len(capacity)
        front.members.load([(0, j, r, c, a) for j, (r, c, a) in
                            enumerate(zip(front.ready, capacity, front.at_report, strict=True))],
                           front.builds)
        front.builds += 1
        front.dirty = False
        front.last_bump = front.visible_at   # the master bumped then; this pick saw it

    def _start(self, slot: int, rid: int, t: float) -> None:
        self.busy[slot] += 1
        self.started[rid] = t
        self.push(t + self.services.expovariate(1 / self.service[slot]), DONE, slot, rid)

    def _done(self, t: float, slot: int, rid: int) -> None:
        self.done[rid] = t
        front = self.fronts[self.front_of[rid]]
        front.inflight[slot] -= 1
        self.busy[slot] -= 1
        if self.backlog[slot]:
            self._start(slot, self.backlog[slot].popleft(), t)
        if front.queue:
            self._drain(front, self.front_of[rid], t)

    def _drain(self, front: Front, f: int, t: float) -> None:
        """The front's waiters, oldest first, until one finds no room (as FrontQueue does)."""
        limit = t - self.spec.queue_timeout
        queue = front.queue
        while queue:
            rid = queue[0]
            if self.arrived[rid] <= limit:
                queue.popleft()
                self._reject(rid, self.arrived[rid] + self.spec.queue_timeout)
                continue
            if not self._try(front, f, rid, t):
                break
            queue.popleft()
        if queue:
            self._arm(front, f, t)

    def _arm(self, front: Front, f: int, t: float) -> None:
        if not front.poll_armed:
            front.poll_armed = True
            self.push(t + QUEUE_POLL, POLL, f)

    def _poll(self, t: float, f: int) -> None:
        front = self.fronts[f]
        front.poll_armed = False
        if front.queue:
            self._drain(front, f, t)

    def _reject(self, rid: int, t: float) -> None:
        self.rejected[rid] = True
        self.done[rid] = t

    def _beat(self, j: int, t: float, initial: bool = False) -> None:
        """Member j's heartbeat reaches every front: ready, capacity, in flight now."""
        busy = self.busy[j]
        ready = self.workers[j] - busy
        capacity = capacity_of(ready, busy, 0, MAX_CAPACITY)
        for front in self.fronts:
            urgent = (front.ready[j] == 0) != (ready == 0)
            front.ready[j] = ready
            front.capacity[j] = capacity
            front.at_report[j] = front.inflight[j]
            if initial:
                continue
            if urgent:
                front.visible_at = t if not front.dirty else min(front.visible_at, t)
            elif not front.dirty:
                front.visible_at = max(t, front.last_bump + BUMP_INTERVAL)
            front.dirty = True

    # --- figures

    def summary(self) -> dict[str, Any]:
        spec = self.spec
        lo, hi = spec.warmup, spec.warmup + spec.seconds
        ids = [i for i, t in enumerate(self.arrived) if lo <= t < hi]
        waits, responses = [], []
        overloaded = queued = rejected = 0
        for i in ids:
            if self.rejected[i]:
                rejected += 1
                continue
            waits.append(self.started[i] - self.arrived[i])
            responses.append(self.done[i] - self.arrived[i])
            overloaded += self.overloaded[i]
            queued += self.queued[i]
        waits.sort()
        responses.sort()
        n = len(ids) or 1
        served = len(waits) or 1
        return {"members": spec.members, "fronts": spec.fronts, "load": spec.load,
                "method": spec.method, "seed": spec.seed, "seconds": spec.seconds,
                "warmup": spec.warmup, "capacity_rps": self.capacity_rps, "rate": self.rate,
                "requests": len(ids),
                "wait_mean_ms": 1e3 * sum(waits) / served,
                "wait_p50_ms": 1e3 * pct(waits, 50), "wait_p99_ms": 1e3 * pct(waits, 99),
                "wait_p999_ms": 1e3 * pct(waits, 99.9),
                "waited_fraction": sum(1 for w in waits if w > 0) / served,
                "response_p50_ms": 1e3 * pct(responses, 50),
                "response_p99_ms": 1e3 * pct(responses, 99),
                "overload_events": overloaded, "overload_fraction": overloaded / n,
                "front_queued": queued, "rejected": rejected, "rejected_fraction": rejected / n,
                "wait_cdf": _cdf(waits)}


def _cdf(waits: list[float], points: int = 200) -> list[tuple[float, float]]:
    """(wait ms, fraction of requests that waited at most that), on a log grid, for plots."""
    if not waits:
        return []
    out = []
    grid = [0.1 * (1e5 / 0.1) ** (k / (points - 1)) for k in range(points)]   # 0.1 ms..100 s
    from bisect import bisect_right

    for ms in grid:
        out.append((round(ms, 3), bisect_right(waits, ms / 1e3) / len(waits)))
    return out


def simulate(spec: Spec) -> dict[str, Any]:
    return Simulation(spec).run()
