"""The front queue: requests (TCP mode: connections) that wait for a member to have room.

When every member of a pool that is up is full (its capacity all in flight, or nothing to give
by its heartbeats), a request waits here instead of getting a 503, in rank order, for up to
the pool's `queue_timeout` from its arrival; at most `queue_max` per pool wait across the
front's workers. A waiter's rank is its arrival plus its offset (hbfork.core.queue_order): 0
for a request on a connection whose last exchange went well, the pool's `queue_fresh_offset`
on a new connection or one whose last response lagged (HAProxy's set-priority-offset). A
request that finished, or a poll every QUEUE_POLL seconds while anything waits (a heartbeat
with room, another worker's finished request), lets the waiting ones try again, lowest rank
("oldest") first. A waiter whose client went away leaves at once.

A pool's waiters in a worker are a Line: one insertion-ordered set per offset (each in rank
order, since its waiters joined in arrival order), merged only when two offsets wait at once,
so a queue of one kind of waiter (the common case; TCP mode, where every connection ranks by
its arrival; `queue_fresh_offset = 0`) costs what a plain FIFO does.

Each worker keeps its own waiters (they are its connections); the counts are in the shared
table so `queue_max` and the status page see the whole front. Rank order holds across
workers too (the decisions: hbfork.core.queue_order): each worker publishes the rank of its
first waiter. When one of a worker's requests ends (soon()), the place it made goes to the
front's oldest waiter: its own, served as soon as the handler that made the place returns, or
another worker's (older by more than YIELD_MARGIN), which is woken at once through its eventfd
(made by the master before forking, one per worker record) while this worker's younger
waiters let the place go by. PC_QUEUE_HANDOFFS counts the places so left (the status page:
"handed_over"). Only a freed place wakes another worker: a poll of a worker whose waiters are
younger finds no place of its own to give (the worker with the oldest waiter polls itself,
every QUEUE_POLL_FIRST, for room that heartbeats give).

Issue 28's tails (700-850 ms at 8-10x HAProxy's p99 in some closed-loop runs): a worker left
the room to another's older waiter without waking it, with a yield margin of 100 ms, so each
waiter of the worker with fewer finishing requests waited ~100 ms more than it had to, one
behind the other (traced: its oldest waiter reached 105-109 ms, the other worker's 10-20 ms);
and before the margin, room went mostly to the worker whose request had just finished.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from itertools import islice
from operator import attrgetter
from typing import Protocol

from hbfork.core.queue_order import (
    HAND_OVER,
    is_leftover,
    place_goes,
    queue_offset,
    rank_word,
    unanswered,
    yields,
)
from hbfork.proxy.loop import Loop
from hbfork.proxy.upstreams import PoolView
from hbfork.table.layout import (
    PC_QUEUE_FULL,
    PC_QUEUE_GONE,
    PC_QUEUE_HANDOFFS,
    PC_QUEUE_HEAD,
    PC_QUEUE_TIMEOUT,
    PC_QUEUED,
    pool_counters_at,
)
from hbfork.table.worker_area import WorkerArea
from hbfork.table.worker_record import WorkerRecord

QUEUE_POLL = 0.005   # seconds between tries while anything waits
QUEUE_POLL_FIRST = 0.001  # ... while other workers leave us their room (a missed wake-up)
# How much older another worker's waiter must be to go first. Small: the other worker is woken
# at once, so leaving it the room costs a wake-up, not an idle poll interval. Not 0: two
# waiters that arrived within a millisecond in two workers would hand the room back and forth.
YIELD_MARGIN = 0.002
# How long places left to another worker's waiter may go untaken (its head word unmoved)
# before this worker serves its own waiters with the places it frees: the owner is not
# running (traced on a loaded machine: places left to a starved worker idled 10-20 ms).
HANDOVER_GRACE = 0.005
SCAN_LIMIT = 256     # waiters tried per pool per round (bounds the work of one round)
REASONS = {"timeout": PC_QUEUE_TIMEOUT, "full": PC_QUEUE_FULL, "gone": PC_QUEUE_GONE}


class Waiter(Protocol):
    queued_at: float  # set by the queue: when it joined (its queue_timeout counts from then)
    queue_rank: int   # set by the queue: its rank, as a head word (queue_order.rank_word)
    closed: bool

    @property
    def returning(self) -> bool:
        """Ranked by its arrival: its connection's last exchange went well (HTTP), or it is
        a TCP connection (all alike: FIFO). Else it ranks the pool's queue_fresh_offset
        later."""
        ...

    @property
    def pinned(self) -> bool:
        """It waits for one member (its sticky session's), not any."""
        ...

    def try_dispatch(self) -> bool:
        """Try again; True when it no longer waits (sent to a member, or answered)."""
        ...


_RANK = attrgetter("queue_rank")


class Line:
    """One pool's waiters in this worker, lowest rank first: by offset, runs of waiters in
    arrival order (insertion-ordered dicts used as sets), which are in rank order too."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs: dict[float, dict[Waiter, None]] = {}  # by offset; no empty run

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs.values())

    def __bool__(self) -> bool:
        return bool(self.runs)

    def join(self, waiter: Waiter, offset: float) -> None:
        run = self.runs.get(offset)
        if run is None:
            run = self.runs[offset] = {}
        run[waiter] = None

    def leave(self, waiter: Waiter) -> bool:
        """Take `waiter` out; False when it was not in the line."""
        for offset, run in self.runs.items():
            if waiter in run:
                del run[waiter]
                if not run:
                    del self.runs[offset]
                return True
        return False

    def first(self, n: int) -> Iterable[Waiter]:
        """The first `n` waiters, lowest rank first, from copies of the runs (they may leave
        meanwhile); merged as they are taken (a dispatch mostly stops at the first)."""
        runs = self.runs
        if len(runs) == 1:  # one kind of waiter: its run is the order (a FIFO's cost)
            for run in runs.values():
                return list(run)[:n]
        return islice(heapq.merge(*[list(run) for run in runs.values()], key=_RANK), n)

    def head(self) -> int:
        """The rank word of its first waiter that any member may take (0: none)."""
        best = 0
        for run in self.runs.values():
            for waiter in run:
                if not waiter.pinned:
                    if not best or waiter.queue_rank < best:
                        best = waiter.queue_rank
                    break
        return best


class FrontQueue:
    def __init__(self, loop: Loop, area: WorkerArea, record: WorkerRecord,
                 records: Callable[[], list[int]] = list,
                 wake: Callable[[int], None] | None = None,
                 pools: Iterable[PoolView] = ()) -> None:
        """`record` is this worker's record in the table's worker `area`; `records` gives
        the word offsets of every live worker's record (its own included); `wake(index)`
        wakes the worker of record `index` (its dispatch() runs at once); `pools`: the
        pools whose waiters in other workers a room made here may be owed to."""
        self.loop = loop
        self.wake = wake
        self.area = area
        self.record = record
        self.records = records
        # (pool, the word of its queue head in any record) for the pools that queue
        self.queueing = [(pool, pool_counters_at(area.capacity, pool.index) + PC_QUEUE_HEAD)
                         for pool in pools if pool.queue_timeout > 0]
        self.waiting: dict[PoolView, Line] = {}  # no empty line
        self.timer = loop.timer(self._on_timer)
        self.first = False  # our oldest waiter is older than other workers': poll faster
        # per pool: (the other worker's head word we leave places to, since when)
        self.owed: dict[PoolView, tuple[int, float]] = {}
        self.due = False    # a dispatch is to run once the current handler returns

    def __len__(self) -> int:
        return sum(len(w) for w in self.waiting.values())

    def add(self, pool: PoolView, waiter: Waiter, records: list[int]) -> bool:
        """Queue `waiter`, ranked by its arrival (now) plus its offset; False when the pool's
        queue is full (counted) or queueing is off."""
        if pool.queue_timeout <= 0:
            return False
        if self.depth(pool, records) >= pool.queue_max:
            self._count(pool, PC_QUEUE_FULL)
            return False
        line = self.waiting.get(pool)
        if line is None:
            line = self.waiting[pool] = Line()
        now = self.loop.now
        offset = queue_offset(waiter.returning, pool.queue_fresh_offset)
        waiter.queued_at = now
        rank = waiter.queue_rank = rank_word(now, offset)
        line.join(waiter, offset)
        self._count(pool, PC_QUEUED)
        head = self.record.queue_head(pool)
        if not head or rank < head:  # the first of this worker's line now (or none was)
            self._publish(pool)
        self._arm()
        return True

    def depth(self, pool: PoolView, records: list[int]) -> int:
        """Requests of `pool` waiting in every worker of the front."""
        return self.area.queued(pool, records)

    def leave(self, pool: PoolView, waiter: Waiter, reason: str) -> None:
        """`waiter` stops waiting without a member: "timeout", "gone" (its client left)."""
        if self._remove(pool, waiter):
            self._count(pool, REASONS[reason])

    def _remove(self, pool: PoolView, waiter: Waiter) -> bool:
        line = self.waiting.get(pool)
        if line is None or not line.leave(waiter):
            return False
        self._count(pool, PC_QUEUED, -1)
        self._publish(pool)
        return True

    def dispatch(self) -> None:
        """Let the waiting try again, lowest rank first (called when a request finished, when
        another worker left us a place, and by the poll timer). A waiter ranked after another
        worker's first (by more than YIELD_MARGIN) lets the place go by: it is that worker's,
        which soon() woke when the place was made."""
        self.first = False
        for pool, line in list(self.waiting.items()):
            older = self._oldest_elsewhere(pool)[0]
            owed = self.owed.get(pool)
            if owed is not None and owed[0] != older:
                del self.owed[pool]  # that waiter was served (or left): its grace is over
            elif unanswered(owed, older, self.loop.now, HANDOVER_GRACE):
                older = 0  # its worker takes no place: ours are served, none idles
            for waiter in line.first(SCAN_LIMIT):
                if waiter.closed:
                    self._remove(pool, waiter)
                    continue
                queued_at = waiter.queued_at
                if not waiter.pinned and yields(waiter.queue_rank, older, YIELD_MARGIN):
                    continue  # another worker's waiter ranks first: the place is its
                if not waiter.try_dispatch():
                    if waiter.pinned:
                        continue  # it waits for its own member; others may have room
                    break  # no room for the first: none for the later ones either
                if self._remove(pool, waiter):
                    self._waited(pool, self.loop.now - queued_at)
            if not line:
                del self.waiting[pool]
        self._arm()

    def soon(self) -> None:
        """A request of this worker finished, so a member may have room now. Our waiters try
        as soon as the handler that ended it returns (not from inside the session that made
        the room, nor after the rest of the loop's batch of events: the room would idle);
        when another worker's waiter came first (by more than YIELD_MARGIN), that worker is
        woken now, before this worker's client can send its next request: the room is its."""
        if self.waiting and not self.due:
            self.due = True
            self.loop.after(self._due_now)
        if self.wake is None:
            return
        words, own, records = self.area.words, self.record.base, self.records()
        for pool, at in self.queueing:
            for base in records:
                if base != own and words[base + at]:
                    break
            else:
                continue  # nobody else waits for this pool (the common case: two reads)
            older, owner = self._oldest_elsewhere(pool)
            head = self.record.queue_head(pool)
            if owner < 0 or place_goes(head, older, YIELD_MARGIN) != HAND_OVER:
                continue
            owed = self.owed.get(pool)
            if owed is None or owed[0] != older:
                self.owed[pool] = (older, self.loop.now)   # a new head to leave places to
            elif head and unanswered(owed, older, self.loop.now, HANDOVER_GRACE):
                continue  # its worker took none of them: our own waiter takes this one
            self._hand_over(pool, owner)

    def _hand_over(self, pool: PoolView, owner: int) -> None:
        """Wake the worker of record `owner`, whose waiter the room just made is owed to."""
        assert self.wake is not None
        self.wake(owner)
        self._count(pool, PC_QUEUE_HANDOFFS)

    def _on_timer(self, now: float) -> None:
        self.dispatch()

    def _due_now(self) -> None:
        self.due = False
        self.dispatch()

    def _arm(self) -> None:
        if any(self.waiting.values()):
            when = self.loop.now + (QUEUE_POLL_FIRST if self.first else QUEUE_POLL)
            for pool, (_, since) in self.owed.items():
                ends = since + HANDOVER_GRACE
                if ends >= self.loop.now and pool in self.waiting:
                    when = min(when, ends + 0.0005)  # look again when a hand-over's grace ends
            self.loop.set_timer(self.timer, when)

    # --- rank order across the front's workers

    def _publish(self, pool: PoolView) -> None:
        """Say the rank of this worker's first waiter for `pool` that any member may take
        (a pinned one waits for its own member: others must not hold back for it)."""
        line = self.waiting.get(pool)
        self.record.set_queue_head(pool, line.head() if line is not None else 0)

    def _oldest_elsewhere(self, pool: PoolView) -> tuple[int, int]:
        """The head word of the oldest waiter for `pool` in another worker of this generation
        and that worker's record index; (0, -1) when there is none. A leftover word (a worker
        that stopped without clearing it) is ignored. Notes when ours is older still (this
        worker then polls faster: the others leave the room to it)."""
        oldest, owner = self.area.oldest_waiter(pool, self.records(), self.record.generation,
                                                self.record.base)
        if not oldest or is_leftover(oldest, self.loop.now, pool.queue_timeout):
            return 0, -1
        own = self.record.queue_head(pool)
        if own and yields(oldest, own, YIELD_MARGIN):
            self.first = True
        return oldest, owner

    def _count(self, pool: PoolView, counter: int, n: int = 1) -> None:
        self.record.count_pool(pool, counter, n)

    def _waited(self, pool: PoolView, seconds: float) -> None:
        self.record.observe_queue_wait(pool, seconds)
