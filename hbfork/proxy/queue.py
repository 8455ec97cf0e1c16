"""The front queue: requests (TCP mode: connections) that wait for a member to have room.

When every member of a pool that is up is full (its capacity all in flight, or nothing to give
by its heartbeats), a request waits here instead of getting a 503, in arrival order, for up to
the pool's `queue_timeout`; at most `queue_max` per pool wait across the front's workers. A
request that finished, or a poll every QUEUE_POLL seconds while anything waits (a heartbeat
with room, another worker's finished request), lets the waiting ones try again, oldest first.
A waiter whose client went away leaves at once.

Each worker keeps its own waiters (they are its connections); the counts are in the shared
table so `queue_max` and the status page see the whole front. Arrival order holds across
workers too (the decisions: hbfork.core.queue_order): each worker publishes when its oldest
waiter arrived. When one of a worker's requests ends (soon()), the place it made goes to the
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

from collections.abc import Callable, Iterable
from typing import Protocol

from hbfork.core.queue_order import (
    HAND_OVER,
    head_word,
    is_leftover,
    place_goes,
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
    queued_at: float
    closed: bool

    @property
    def pinned(self) -> bool:
        """It waits for one member (its sticky session's), not any."""
        ...

    def try_dispatch(self) -> bool:
        """Try again; True when it no longer waits (sent to a member, or answered)."""
        ...


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
        self.waiting: dict[PoolView, dict[Waiter, None]] = {}  # insertion-ordered sets
        self.timer = loop.timer(self._on_timer)
        self.first = False  # our oldest waiter is older than other workers': poll faster
        # per pool: (the other worker's head word we leave places to, since when)
        self.owed: dict[PoolView, tuple[int, float]] = {}
        self.due = False    # a dispatch is to run once the current handler returns

    def __len__(self) -> int:
        return sum(len(w) for w in self.waiting.values())

    def add(self, pool: PoolView, waiter: Waiter, records: list[int]) -> bool:
        """Queue `waiter`; False when the pool's queue is full (counted) or queueing is off."""
        if pool.queue_timeout <= 0:
            return False
        if self.depth(pool, records) >= pool.queue_max:
            self._count(pool, PC_QUEUE_FULL)
            return False
        waiting = self.waiting.setdefault(pool, {})
        waiting[waiter] = None
        waiter.queued_at = self.loop.now
        self._count(pool, PC_QUEUED)
        if len(waiting) == 1 or not self.record.queue_head(pool):
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
        waiting = self.waiting.get(pool)
        if waiting is None or waiter not in waiting:
            return False
        del waiting[waiter]
        self._count(pool, PC_QUEUED, -1)
        self._publish(pool)
        return True

    def dispatch(self) -> None:
        """Let the waiting try again, oldest first (called when a request finished, when
        another worker left us a place, and by the poll timer). A waiter younger than another
        worker's oldest (by more than YIELD_MARGIN) lets the place go by: it is that worker's,
        which soon() woke when the place was made."""
        self.first = False
        for pool, waiting in list(self.waiting.items()):
            older = self._oldest_elsewhere(pool)[0]
            owed = self.owed.get(pool)
            if owed is not None and owed[0] != older:
                del self.owed[pool]  # that waiter was served (or left): its grace is over
            elif unanswered(owed, older, self.loop.now, HANDOVER_GRACE):
                older = 0  # its worker takes no place: ours are served, none idles
            for waiter in list(waiting)[:SCAN_LIMIT]:
                if waiter.closed:
                    self._remove(pool, waiter)
                    continue
                queued_at = waiter.queued_at
                if not waiter.pinned and yields(head_word(queued_at), older, YIELD_MARGIN):
                    continue  # another worker's waiter came first: the place is its
                if not waiter.try_dispatch():
                    if waiter.pinned:
                        continue  # it waits for its own member; others may have room
                    break  # no room for the oldest: none for the younger ones either
                if self._remove(pool, waiter):
                    self._waited(pool, self.loop.now - queued_at)
            if not waiting:
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

    # --- arrival order across the front's workers

    def _publish(self, pool: PoolView) -> None:
        """Say when this worker's oldest waiter for `pool` that any member may take arrived
        (a pinned one waits for its own member: others must not hold back for it)."""
        word = 0
        for waiter in self.waiting.get(pool, ()):
            if not waiter.pinned:
                word = head_word(waiter.queued_at)
                break
        self.record.set_queue_head(pool, word)

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
