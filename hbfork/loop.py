"""A small epoll loop for workers: fd handlers, interest masks, and lazy deadlines.

Handlers are callables `handler(events)` stored per fd. Masks are changed only when they differ
from what epoll already has, so a connection toggling interest costs no syscall when nothing
changes. Deadlines are kept in a heap with lazy invalidation: an object exposes `deadline`
(monotonic seconds or None) and `on_deadline(now)`; moving a deadline later costs nothing, the
heap entry is re-pushed when it comes due.
"""

from __future__ import annotations

import heapq
import itertools
import select
import time
from collections.abc import Callable
from typing import Protocol

from hbfork.logs import log

READ = select.EPOLLIN | select.EPOLLRDHUP
WRITE = select.EPOLLOUT
ERROR = select.EPOLLERR | select.EPOLLHUP
HANGUP = select.EPOLLHUP
RDHUP = select.EPOLLRDHUP  # alone: told when the peer half-closes, without reading


class Timed(Protocol):
    deadline: float | None

    def on_deadline(self, now: float) -> None: ...


class Loop:
    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.masks: dict[int, int] = {}
        self._heap: list[tuple[float, int, Timed]] = []
        self._order = itertools.count()
        self.now = time.monotonic()

    def add(self, fd: int, mask: int, handler: Callable[[int], None]) -> None:
        self.epoll.register(fd, mask)
        self.handlers[fd] = handler
        self.masks[fd] = mask

    def set_mask(self, fd: int, mask: int) -> None:
        """Change the interest of a registered fd (a no-op for one that was removed)."""
        current = self.masks.get(fd)
        if current is not None and current != mask:
            self.epoll.modify(fd, mask)
            self.masks[fd] = mask

    def remove(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            del self.masks[fd]
            try:
                self.epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # already closed: the kernel dropped it from the set

    def set_deadline(self, obj: Timed, when: float | None) -> None:
        """Set `obj.deadline`; only an earlier deadline needs a new heap entry."""
        previous = obj.deadline
        obj.deadline = when
        if when is not None and (previous is None or when < previous):
            heapq.heappush(self._heap, (when, next(self._order), obj))

    def next_timeout(self, cap: float) -> float:
        if not self._heap:
            return cap
        return max(0.0, min(cap, self._heap[0][0] - time.monotonic()))

    def run_once(self, cap: float) -> None:
        events = self.epoll.poll(self.next_timeout(cap), 512)
        self.now = time.monotonic()
        handlers = self.handlers
        for fd, mask in events:
            handler = handlers.get(fd)
            if handler is not None:  # an earlier handler in this batch may have closed it
                try:
                    handler(mask)
                except Exception:
                    self._contain(handler)
        self._run_deadlines()

    @staticmethod
    def _contain(callback: Callable[..., object]) -> None:
        """A bug in one connection's code must cost that connection, not the worker and
        every connection it holds: log it and close the object the callback belongs to."""
        log.exception("internal error in %r; closing it", callback)
        owner = getattr(callback, "__self__", None)
        close = getattr(owner, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("and closing it failed too")

    def _run_deadlines(self) -> None:
        now = self.now = time.monotonic()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, obj = heapq.heappop(heap)
            current = obj.deadline
            if current is None:
                continue
            if current > when:
                heapq.heappush(heap, (current, next(self._order), obj))
            elif current == when:
                obj.deadline = None
                try:
                    obj.on_deadline(now)
                except Exception:
                    self._contain(obj.on_deadline)

    def close(self) -> None:
        self.epoll.close()
