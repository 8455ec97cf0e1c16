"""A request that waits at the front (hbfork.proxy.queue) because every member of its pool is
full: how it waits, tries again, times out, or leaves when its client goes away."""

from __future__ import annotations

from hbfork.proxy.http.state import FORWARD, QUEUED, RETRY_AFTER, ExchangeState
from hbfork.proxy.upstreams import PoolView


class Waiting(ExchangeState):
    __slots__ = ()

    def _wait(self, pool: PoolView) -> bool:
        """Every member is full: wait in the queue. False when it cannot wait (queueing off,
        or the queue full): then it was answered 503."""
        if self.queued_at:  # trying again from the queue, and still no room
            self.state = QUEUED
            return True
        if not self.ctx.enqueue(pool, self):
            why = "every member is full" if pool.queue_timeout <= 0 else "the queue is full"
            self._fail(503, why, RETRY_AFTER)
            return False
        self.state = QUEUED
        self._set_deadline(pool.queue_timeout)
        return True

    def try_dispatch(self) -> bool:
        """From the queue: try to send the request again; True when it no longer waits."""
        if self.closed or self.state != QUEUED:
            return True
        self.state = FORWARD  # between members; _dispatch decides what is next
        self._dispatch()
        if self.state == QUEUED:
            return False
        self.queued_at = 0.0
        if not self.closed:
            self._advance()
        return True

    @property
    def pinned(self) -> bool:
        """It waits for its session's own member (others may have room for other requests)."""
        return self.sticky_route is not None

    def _queue_timed_out(self) -> None:
        self.ctx.leave_queue(self.pool, self, "timeout")
        self.queued_at = 0.0
        self._fail(503, "no member had room within queue_timeout", RETRY_AFTER)

    def _client_left_queue(self) -> None:
        self.ctx.leave_queue(self.pool, self, "gone")
        self.queued_at = 0.0
        self.close()
