"""What a session may ask of the process that runs it: the interface between sessions and the
worker.

Sessions (HTTP, TCP, status) never import the worker. They get a SessionContext: the event loop
(register, modify and unregister sockets; timers; the loop's clock), a scratch buffer, the
settings they need, the member picker, the keep-alive pool, a way to dial a member, and the
events the worker counts or reports to the master. The worker implements it; unit tests pass a
fake one with socket pairs instead of members.
"""

from __future__ import annotations

import socket
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Protocol

from hbfork.core.http11 import Limits
from hbfork.core.lean import LeanCache
from hbfork.core.settings import HttpSettings
from hbfork.proxy.loop import Loop

if TYPE_CHECKING:
    from hbfork.core.reopen import Reopening
    from hbfork.proxy.acquiring import Acquisition
    from hbfork.proxy.client_limits import ClientLimits
    from hbfork.proxy.http.router import Decision, Router
    from hbfork.proxy.keepalive import ConnectionPool
    from hbfork.proxy.queue import Waiter
    from hbfork.proxy.upstreams import PoolView, Target


class Picker(Protocol):
    """Member selection and the per-member in-flight accounting that goes with it."""

    pools: dict[str, PoolView]
    default: PoolView
    reopening: Reopening  # members re-dialled one probe at a time

    def acquire(self, pool: PoolView, now: float, excluded: AbstractSet[int] | None = None,
                sticky_route: str | None = None, queued: bool = False,
                failover: bool = True, returning: bool = True) -> Acquisition: ...
    def take(self, pool: PoolView, now: float, returning: bool = True) -> Target | None: ...
    def has_other(self, pool: PoolView, tried: AbstractSet[int]) -> bool:
        """A member of `pool` not in `tried` (slots) could take a request."""
        ...
    def route_of(self, pool: PoolView, target: Target) -> str: ...
    def started(self, target: Target) -> None: ...
    def finished(self, target: Target, status: int) -> None: ...
    def observe(self, target: Target, outcome: int, seconds: float = 0.0) -> None: ...


class Session(Protocol):
    """What the worker asks of every session it holds."""

    closed: bool

    def drain(self) -> None: ...
    def close(self) -> None: ...


class Exchange(Protocol):
    """One HTTP request/response as the worker accounts for it."""

    exchange_started: float
    decision: Decision | None    # where it was routed (None: it never was)
    sticky_outcome: int          # 0, or whether it reached its session's member (1) or not (2)

    def log_fields(self, status: int, target: Target | None, now: float) -> dict[str, object]:
        ...


class SessionContext(Protocol):
    loop: Loop
    buffer: memoryview       # scratch space for recv_into; its contents never outlive a call
    http: HttpSettings
    limits: Limits
    lean: LeanCache          # the fast path's parses of the heads it has seen
    router: Router           # HTTP mode: which pool and path each request goes to
    conn_pool: ConnectionPool
    draining: bool           # the worker is shutting down gracefully
    client_limits: ClientLimits | None  # [limits] (None: off)

    # Read-only (a protocol's settable attribute is invariant): the worker's is an Upstreams.
    @property
    def upstreams(self) -> Picker: ...

    def connect(self, target: Target) -> tuple[socket.socket, int]:
        """Start a non-blocking connect: (socket, 0 or EINPROGRESS or an errno). Raises
        OSError when the proxy itself is out of resources (fds, memory)."""
        ...

    def member_failed(self, target: Target, reason: str, retry_ms: int | None = None) -> None:
        """A connect to `target` failed: count it and have the member put in error (for the
        pool's own retry, when it has one)."""
        ...

    def report_beat(self, ip: str, body: bytes) -> bool:
        """Hand a heartbeat POSTed by `ip` to the master; False if it cannot take it now."""
        ...

    def resource_error(self, err: OSError) -> None: ...
    def count_no_member(self, pool: PoolView | None = None) -> None: ...
    def count_retry(self) -> None: ...
    def count_fast_path(self) -> None: ...
    def count_bytes(self, from_client: bool, n: int) -> None: ...
    def count_upstream_timeout(self) -> None: ...
    def count_client_error(self) -> None: ...
    def count_slow(self, kind: str) -> None: ...  # hbfork.core.slow_clients.SLOW_KINDS

    def request_done(self, exchange: Exchange, status: int, target: Target | None) -> None:
        """One HTTP request ended (status 0: the client left before any response)."""
        ...

    def session_closed(self, session: Session) -> None: ...

    def enqueue(self, pool: PoolView, waiter: Waiter) -> bool:
        """Wait for room in `pool` (hbfork.proxy.queue); False when it cannot."""
        ...

    def leave_queue(self, pool: PoolView, waiter: Waiter, reason: str) -> None: ...
