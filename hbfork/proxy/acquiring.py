"""acquire(): the one place where a request or a TCP connection gets its member, and what
it answers (Acquired, Wait, Unavailable). Written over the picker's primitives (choose,
reserve, sticky, queue_ahead), which hbfork.proxy.upstreams.Upstreams implements over the
shared table and tests implement over fakes."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import final

from hbfork.core.failures import NO_MEMBER, RETRIES_SPENT, SESSION_DOWN, TRIED_ALL
from hbfork.core.queue_order import queue_offset
from hbfork.proxy.targets import STICKY_HIT, STICKY_LOST, Acquired, PoolView, Target


@final
class Wait:
    """Members are up but none has room now: the request waits in the front queue.
    `pinned`: it waits for its session's own member, not for any."""
    __slots__ = ("pinned", "sticky")

    def __init__(self, pinned: bool, sticky: int = 0) -> None:
        self.pinned, self.sticky = pinned, sticky


@final
class Unavailable:
    """No member can take the request (`reason`: NO_MEMBER, TRIED_ALL, RETRIES_SPENT or
    SESSION_DOWN)."""
    __slots__ = ("reason", "sticky")

    def __init__(self, reason: str, sticky: int = 0) -> None:
        self.reason, self.sticky = reason, sticky


Acquisition = Acquired | Wait | Unavailable


class Acquiring:
    """acquire(), over the picker's primitives (choose, reserve, sticky, queue_ahead): the one
    place where a request or a TCP connection gets its member."""

    __slots__ = ()

    def acquire(self, pool: PoolView, now: float, excluded: AbstractSet[int] | None = None,
                sticky_route: str | None = None, queued: bool = False,
                failover: bool = True, returning: bool = True) -> Acquisition:
        """A member of `pool` for a request that tried the slots in `excluded` already
        (`queued`: it comes from the front queue; `now`: the loop's clock). A sticky session's
        member is taken when it can serve (a busy one is waited for); when it cannot, the
        request goes to another member unless the pool has nofailover (or `failover` is
        False: the caller has its own way to fail over). A request that has not
        tried yet goes behind the front queue's waiters that rank well ahead of it (it ranks
        by its arrival, now, when `returning`, else the pool's queue_fresh_offset later:
        hbfork.core.queue_order)."""
        if excluded and len(excluded) > pool.retries:
            return Unavailable(RETRIES_SPENT)
        outcome = 0
        if sticky_route is not None:
            found = self.sticky(pool, sticky_route)
            if isinstance(found, Target) and (not excluded or found.slot not in excluded):
                if not self.reserve(found):
                    return Wait(True)  # busy: wait for it, not for another
                return found.acquired[STICKY_HIT]
            if found is not None:  # its member is down, or refused this very request
                outcome = STICKY_LOST
                if pool.settings.nofailover or not failover:
                    return Unavailable(SESSION_DOWN, outcome)
        if not queued and not excluded and \
                self.queue_ahead(pool, now + queue_offset(returning, pool.queue_fresh_offset)):
            return Wait(False, outcome)  # others wait already: behind them, in rank order
        target = self.choose(excluded, pool)
        if type(target) is Target:
            return target.acquired[outcome]
        if target is None:
            return Unavailable(TRIED_ALL if excluded else NO_MEMBER, outcome)
        return Wait(False, outcome)  # FULL

    def take(self, pool: PoolView, now: float, returning: bool = True) -> Target | None:
        """acquire(pool, now)'s member for a first try, no sticky route (None: not Acquired)."""
        if not returning:  # queue_offset(), written out: the fast path's
            now += pool.queue_fresh_offset
        target = None if self.queue_ahead(pool, now) else self.choose(None, pool)
        return target if type(target) is Target else None

    # the primitives (Upstreams' own; a test's picker has its own)
    def sticky(self, pool: PoolView, route: str) -> Target | str | None:
        raise NotImplementedError

    def reserve(self, target: Target) -> bool:
        raise NotImplementedError

    def queue_ahead(self, pool: PoolView, rank: float) -> bool:
        raise NotImplementedError

    def choose(self, excluded: AbstractSet[int] | None = None,
               pool: PoolView | None = None) -> Target | int | None:
        raise NotImplementedError

    def has_other(self, pool: PoolView, tried: AbstractSet[int]) -> bool:
        raise NotImplementedError
