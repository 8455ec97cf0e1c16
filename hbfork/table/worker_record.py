"""One worker's record in the table: every read and write of its words goes through here.

A worker is the only writer of its own record (the master: before the fork, and when it folds
an exited worker's record into the retired one, hbfork.table.worker_area). The layout is in
hbfork.table.layout (WK_*, MC_*, PC_*, RC_*).

The per-request and per-read methods (count_bytes, count_request, ...) are on the hot path:
each is one call and a few index operations on `words`, a u64 memoryview of the record. The
worker binds the session-facing ones straight onto itself, so that a session's
`ctx.count_bytes(...)` costs no more than it did when the worker indexed the record itself.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import NamedTuple, Protocol

from hbfork.table.layout import (
    LATENCY_BUCKETS,
    MAX_POOLS,
    MAX_ROUTES,
    MEMBER_COUNTERS,
    PC_DEQUEUED,
    PC_NO_MEMBER,
    PC_QUEUE_HEAD,
    PC_STATUS_CLASS,
    PC_STICKY,
    PC_STICKY_LOST,
    POOL_COUNTERS,
    PROXY_RESULTS,
    RC_ERRORS,
    RC_REQUESTS,
    ROUTE_COUNTERS,
    SLOW_KINDS,
    STATE_BOOTING,
    STICKY_HIT,
    TLS_RESULTS,
    WK_ACCEPTED,
    WK_BYTES_IN,
    WK_BYTES_OUT,
    WK_CLIENT_ERRORS,
    WK_CONNECT_FAILURES,
    WK_CONNECTIONS,
    WK_FAST_PATH,
    WK_GENERATION,
    WK_MEMBERS,
    WK_NO_MEMBER,
    WK_NUMBER,
    WK_PID,
    WK_PROXY,
    WK_QUEUE_COUNT,
    WK_QUEUE_HISTOGRAM,
    WK_QUEUE_SUM,
    WK_REQUESTS,
    WK_RETRIES,
    WK_SCOPE_GENERATION,
    WK_SLOW,
    WK_STATE,
    WK_STATUS_CLASS,
    WK_TICK_NS,
    WK_TLS,
    WK_UPSTREAM_TIMEOUTS,
    members_end,
)


class Indexed(Protocol):
    """A pool or a route: its place in its generation's config is its counters' place."""

    @property
    def index(self) -> int: ...


class Identity(NamedTuple):
    pid: int
    number: int
    generation: int
    state: int
    tick_ns: int


class WorkerRecord:
    """The words of worker record `index`, at word offset `base` of the table's words
    (index == the table's worker_capacity: the retired record, totals of exited workers)."""

    __slots__ = ("_pools", "_routes", "base", "index", "words")

    def __init__(self, words: memoryview, index: int, base: int, capacity: int) -> None:
        self.words = words  # u64; the record's only view (released by release())
        self.index = index
        self.base = base
        self._pools = members_end(capacity)
        self._routes = self._pools + MAX_POOLS * POOL_COUNTERS

    def release(self) -> None:
        self.words.release()

    # --- lifetime and state (the master before the fork; the worker after)

    def free(self) -> None:
        """Zero every word: the record is free (STATE_FREE) and its counters start over."""
        self.words[:] = memoryview(bytes(len(self.words) * 8)).cast("Q")

    def claim(self, number: int, generation: int) -> None:
        """The master is about to fork worker `number` of `generation` into this record."""
        self.free()
        words = self.words
        words[WK_NUMBER], words[WK_GENERATION] = number, generation
        words[WK_STATE] = STATE_BOOTING

    def set_pid(self, pid: int) -> None:
        self.words[WK_PID] = pid

    @property
    def state(self) -> int:
        return self.words[WK_STATE]

    def set_state(self, state: int) -> None:
        self.words[WK_STATE] = state

    @property
    def generation(self) -> int:
        """The config generation whose pool and route indexes this record's counters use."""
        return self.words[WK_GENERATION]

    def identity(self) -> Identity:
        words = self.words
        return Identity(words[WK_PID], words[WK_NUMBER], words[WK_GENERATION], words[WK_STATE],
                        words[WK_TICK_NS])

    def tick(self, now_ns: int) -> None:
        """The worker's loop is alive (time.monotonic_ns()); the master's watchdog reads it."""
        self.words[WK_TICK_NS] = now_ns

    # --- the worker's counters (hot: keep each a few index operations)

    def count_accepted(self) -> None:
        self.words[WK_ACCEPTED] += 1

    def set_connections(self, n: int) -> None:
        self.words[WK_CONNECTIONS] = n

    def count_connect_failure(self) -> None:
        self.words[WK_CONNECT_FAILURES] += 1

    def count_no_member(self, pool: Indexed | None = None) -> None:
        words = self.words
        words[WK_NO_MEMBER] += 1
        if pool is not None:
            words[self._pools + pool.index * POOL_COUNTERS + PC_NO_MEMBER] += 1

    def count_retry(self) -> None:
        self.words[WK_RETRIES] += 1

    def count_fast_path(self) -> None:
        self.words[WK_FAST_PATH] += 1

    def count_bytes(self, from_client: bool, n: int) -> None:
        self.words[WK_BYTES_IN if from_client else WK_BYTES_OUT] += n

    def count_upstream_timeout(self) -> None:
        self.words[WK_UPSTREAM_TIMEOUTS] += 1

    def count_client_error(self) -> None:
        self.words[WK_CLIENT_ERRORS] += 1

    def count_slow(self, kind: str) -> None:
        """A slow client was cut off (`kind`: one of SLOW_KINDS)."""
        self.words[WK_SLOW + SLOW_KINDS.index(kind)] += 1

    def count_tls(self, result: str) -> None:
        """One TLS handshake ended with `result` (one of TLS_RESULTS)."""
        self.words[WK_TLS + TLS_RESULTS.index(result)] += 1

    def count_proxy_header(self, result: str) -> None:
        """One PROXY protocol header read ended with `result` (one of PROXY_RESULTS)."""
        self.words[WK_PROXY + PROXY_RESULTS.index(result)] += 1

    def count_request(self, status: int, pool: Indexed | None = None,
                      route: Indexed | None = None, sticky: int = 0) -> None:
        """One HTTP request ended (status 0: no response), routed to `pool` by `route`;
        sticky: 0 (no session), STICKY_HIT (it reached its session's member) or else lost."""
        words = self.words
        words[WK_REQUESTS] += 1
        answered = 100 <= status < 600
        if answered:
            words[WK_STATUS_CLASS + status // 100 - 1] += 1
        if pool is not None:
            at = self._pools + pool.index * POOL_COUNTERS
            if answered:
                words[at + PC_STATUS_CLASS + status // 100 - 1] += 1
            if sticky:
                words[at + (PC_STICKY if sticky == STICKY_HIT else PC_STICKY_LOST)] += 1
        if route is not None and route.index < MAX_ROUTES:
            at = self._routes + route.index * ROUTE_COUNTERS
            words[at + RC_REQUESTS] += 1
            if status >= 500:
                words[at + RC_ERRORS] += 1

    # --- the front queue's words (per pool)

    def count_pool(self, pool: Indexed, counter: int, n: int = 1) -> None:
        """Add `n` to pool counter `counter` (PC_*; PC_QUEUED is a gauge: n may be -1)."""
        self.words[self._pools + pool.index * POOL_COUNTERS + counter] += n

    def observe_queue_wait(self, pool: Indexed, seconds: float) -> None:
        """A request of `pool` waited `seconds` in the front queue, then went to a member."""
        words = self.words
        # The first bucket whose bound is >= seconds (the last index is +Inf).
        words[WK_QUEUE_HISTOGRAM + bisect_left(LATENCY_BUCKETS, seconds)] += 1
        words[WK_QUEUE_SUM] += int(seconds * 1e6)
        words[WK_QUEUE_COUNT] += 1
        words[self._pools + pool.index * POOL_COUNTERS + PC_DEQUEUED] += 1

    def queue_head(self, pool: Indexed) -> int:
        """The rank of this worker's first waiter for `pool` (its arrival plus its offset,
        monotonic µs + 1; 0: none)."""
        return self.words[self._pools + pool.index * POOL_COUNTERS + PC_QUEUE_HEAD]

    def set_queue_head(self, pool: Indexed, word: int) -> None:
        self.words[self._pools + pool.index * POOL_COUNTERS + PC_QUEUE_HEAD] = word

    # --- copies for readers (status pages)

    def fixed_words(self) -> list[int]:
        """The WK_* words (everything before the per-member counters)."""
        return self.words[:WK_MEMBERS].tolist()

    def member_words(self, slot: int) -> list[int]:
        """The MEMBER_COUNTERS words (MC_*) this record keeps for member slot `slot`."""
        at = WK_MEMBERS + slot * MEMBER_COUNTERS
        return self.words[at:at + MEMBER_COUNTERS].tolist()

    def scoped_words(self) -> tuple[int, list[int]]:
        """The pool counters (MAX_POOLS x POOL_COUNTERS), then the route counters, and the
        config generation whose pools and routes they count (the retired record keeps its
        own: WK_SCOPE_GENERATION)."""
        words = self.words
        generation = words[WK_SCOPE_GENERATION] or words[WK_GENERATION]
        return generation, words[self._pools:self._routes + MAX_ROUTES * ROUTE_COUNTERS].tolist()
