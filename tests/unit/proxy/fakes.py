"""A fake SessionContext: a real event loop, members that are socket pairs, and a record of
everything a session reports. Sessions run against it exactly as in a worker, without one."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hbfork.core.addresses import Endpoint, parse_endpoint
from hbfork.core.config import Config, loads
from hbfork.core.http11 import Limits
from hbfork.core.lean import LeanCache
from hbfork.core.queue_order import queue_offset
from hbfork.core.reopen import Reopening
from hbfork.proxy.http.router import Router
from hbfork.proxy.keepalive import ConnectionPool
from hbfork.proxy.loop import Loop
from hbfork.proxy.upstreams import FULL, ORDER_AFTER, STICKY_DOWN, Acquiring, PoolView, Target


@dataclass
class FakeMember:
    """A member: each connect makes a socket pair; the test speaks for the member on `peers`.
    `down`: its heartbeats say it cannot serve its sticky sessions."""
    target: Target
    refuse: bool = False
    down: bool = False
    full: bool = False   # all its capacity is in flight
    peers: list[socket.socket] = field(default_factory=list)

    @property
    def address(self) -> Endpoint:
        return parse_endpoint(self.target.address)

    def accept(self) -> socket.socket:
        """The member end of the newest connection."""
        return self.peers[-1]


class FakePicker(Acquiring):
    """Picks the first member of the pool not excluded (deterministic, for tests); acquire()
    is Upstreams' own, over these primitives."""

    def __init__(self, members: list[FakeMember], config: Config) -> None:
        self.members = members
        self.pools = {p.name: PoolView(i, p, config.http, config.balance)
                      for i, p in enumerate(config.pools)}
        self.default = self.pools.get("default", next(iter(self.pools.values())))
        self.in_flight: dict[int, int] = {}
        self.finished_statuses: list[tuple[int, int]] = []
        self.outcomes: list[tuple[int, int]] = []  # (slot, hbfork.core.outlier outcome)
        self.queue: list[object] = []  # the context's queue (FakeContext sets it)
        self.reopening = Reopening()

    def _in(self, pool: PoolView) -> list[FakeMember]:
        listed = {address for address, _ in pool.members}
        return [m for m in self.members if m.address in listed]

    def choose(self, excluded: set[int] | None = None,
               pool: PoolView | None = None) -> Target | int | None:
        candidates = [m for m in self._in(pool or self.default)
                      if m.target.slot not in (excluded or ()) and not m.down]
        # Upstreams' rule: members with a probe in flight only when no other can serve
        candidates.sort(key=lambda m: m.target.slot in self.reopening.avoid)
        for member in candidates:
            if not member.full:
                self.started(member.target)  # as Upstreams.choose, it reserves
                return member.target
        return FULL if candidates else None

    def has_other(self, pool: PoolView, tried: set[int]) -> bool:
        return any(m.target.slot not in tried and not m.down for m in self._in(pool))

    def queue_ahead(self, pool: PoolView, rank: float) -> bool:
        """Others wait in the front queue for any member (the context's queue), ranked
        ORDER_AFTER or more ahead of `rank` (a waiter ranks by when it was queued, plus its
        offset: hbfork.core.queue_order)."""
        offset = pool.queue_fresh_offset
        return any(not getattr(w, "pinned", False) and
                   w.queued_at + queue_offset(getattr(w, "returning", True), offset)
                   <= rank - ORDER_AFTER for w in self.queue)

    def reserve(self, target: Target) -> bool:
        if next(m for m in self.members if m.target is target).full:
            return False
        self.started(target)
        return True

    def sticky(self, pool: PoolView, route: str) -> Target | str | None:
        address = pool.routes.get(route)
        if address is None:
            return None
        member = next(m for m in self.members if m.address == address)
        return STICKY_DOWN if member.down else member.target

    def route_of(self, pool: PoolView, target: Target) -> str:
        return next((r for r, a in pool.routes.items() if a == parse_endpoint(target.address)),
                    "")

    def started(self, target: Target) -> None:
        self.in_flight[target.slot] = self.in_flight.get(target.slot, 0) + 1

    def finished(self, target: Target, status: int) -> None:
        self.in_flight[target.slot] -= 1
        self.finished_statuses.append((target.slot, status))

    def observe(self, target: Target, outcome: int, seconds: float = 0.0) -> None:
        self.outcomes.append((target.slot, outcome))


def member(slot: int, refuse: bool = False) -> FakeMember:
    target = Target(slot, uid=slot, family=socket.AF_INET, sockaddr=(f"192.0.2.{slot}", 8080),
                    label=f"m{slot}", counters=0)
    return FakeMember(target, refuse)


def config_for(members: list[FakeMember], http: dict[str, object], extra: str) -> Config:
    """A config with the members as the pool "default" (unless `extra` declares pools)."""
    text = "".join(f'[[member]]\naddress = "{m.target.address}"\n' for m in members) \
        if "[[pool]]" not in extra else ""
    if not members and not extra:
        text = "[heartbeat]\ndiscover = true\n"
    text += "[http]\n" + "".join(f"{k} = {v!r}\n" for k, v in http.items()) + extra
    if "[request_id]" not in extra:  # byte-exact tests: no ID unless a test asks for one
        text += "\n[request_id]\nheader = ''\n"
    return loads(text.replace("'", '"').replace("True", "true").replace("False", "false"))


class FakeContext:
    # [http] settings every context starts with (a test module runs under both paths by
    # setting fast_path here; see both_http_paths)
    defaults: dict[str, object] = {}

    def __init__(self, members: list[FakeMember], extra: str = "", **http: object) -> None:
        self.config = config_for(members, {**FakeContext.defaults, **http}, extra)
        self.loop = Loop()
        self.buffer = memoryview(bytearray(64 * 1024))
        self.http = self.config.http
        self.limits = Limits(self.http.max_request_line, self.http.max_header_size,
                             self.http.max_body_size)
        self.lean = LeanCache(self.http.max_request_line)
        self.members = {m.target.slot: m for m in members}
        self.upstreams = FakePicker(members, self.config)
        self.router = Router(self.config, self.upstreams)  # type: ignore[arg-type]
        self.conn_pool = ConnectionPool(self.loop, self.http.pool_size,
                                        self.http.pool_idle_timeout)
        self.draining = False
        self.client_limits = None
        self.connects: list[int] = []         # slots dialed, in order
        self.failed: list[tuple[int, str]] = []
        self.counts: dict[str, int] = {}
        self.done: list[tuple[int, int | None]] = []  # (status, slot) per finished request
        self.closed_sessions: list[object] = []
        self.outcomes: list[int] = []  # sticky outcome per finished request
        self.request_ids: list[bytes] = []  # request ID per finished request
        self.queue: list[object] = []   # waiters, oldest first
        self.upstreams.queue = self.queue
        self.left: list[str] = []       # why waiters left the queue without a member
        self.beats: list[tuple[str, bytes]] = []  # heartbeats POSTed, as handed to the master
        self.master_full = False        # report_beat fails (the master is behind)

    # --- the SessionContext

    def connect(self, target: Target) -> tuple[socket.socket, int]:
        self.connects.append(target.slot)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        member = self.members[target.slot]
        if member.refuse:
            theirs.close()
            return ours, errno.ECONNREFUSED
        member.peers.append(theirs)
        return ours, 0

    def member_failed(self, target: Target, reason: str, retry_ms: int | None = None) -> None:
        self.failed.append((target.slot, reason))

    def report_beat(self, ip: str, body: bytes) -> bool:
        if self.master_full:
            return False
        self.beats.append((ip, body))
        return True

    def resource_error(self, err: OSError) -> None:
        self._count("resource_error")

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def count_no_member(self, pool: object = None) -> None:
        self._count("no_member")

    def count_retry(self) -> None:
        self._count("retry")

    def count_fast_path(self) -> None:
        self._count("fast_path")

    def count_bytes(self, from_client: bool, n: int) -> None:
        self._count("bytes_in" if from_client else "bytes_out", n)

    def count_upstream_timeout(self) -> None:
        self._count("upstream_timeout")

    def count_client_error(self) -> None:
        self._count("client_error")

    def count_slow(self, kind: str) -> None:
        self._count(kind)

    def request_done(self, exchange: object, status: int, target: Target | None) -> None:
        self.done.append((status, target.slot if target else None))
        self.outcomes.append(getattr(exchange, "sticky_outcome", 0))
        self.request_ids.append(getattr(exchange, "request_id", b""))

    def session_closed(self, session: object) -> None:
        self.closed_sessions.append(session)

    def enqueue(self, pool: PoolView, waiter: object) -> bool:
        if pool.queue_timeout <= 0 or len(self.queue) >= pool.queue_max:
            return False
        self.queue.append(waiter)
        waiter.queued_at = self.loop.now or 1.0  # type: ignore[attr-defined]
        return True

    def leave_queue(self, pool: PoolView, waiter: object, reason: str) -> None:
        if waiter in self.queue:
            self.queue.remove(waiter)
            self.left.append(reason)

    def dispatch_queue(self) -> None:
        """What the worker's FrontQueue does when room may have appeared."""
        for waiter in list(self.queue):
            if waiter.try_dispatch():  # type: ignore[attr-defined]
                self.queue.remove(waiter)

    # --- driving it

    def run_until(self, condition: Callable[[], object], timeout: float = 5.0,
                  serve: Callable[[], None] | None = None) -> None:
        """Run the loop (and `serve`, the test's member side) until `condition` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the session")
            self.loop.run_once(0.01)
            if serve is not None:
                serve()


def read_available(sock: socket.socket) -> bytes:
    """Whatever `sock` has to read now, without waiting (b"" when nothing)."""
    sock.setblocking(False)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


class Reader:
    """Accumulates what a socket receives, for polling conditions."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = b""

    def poll(self) -> bytes:
        self.data += read_available(self.sock)
        return self.data
