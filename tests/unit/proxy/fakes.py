"""A fake SessionContext: a real event loop, members that are socket pairs, and a record of
everything a session reports. Sessions run against it exactly as in a worker, without one."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hbfork.core.http11 import Limits
from hbfork.core.settings import HttpSettings
from hbfork.proxy.keepalive import ConnectionPool
from hbfork.proxy.loop import Loop
from hbfork.proxy.upstreams import Target


@dataclass
class FakeMember:
    """A member: each connect makes a socket pair; the test speaks for the member on `peers`."""
    target: Target
    refuse: bool = False
    peers: list[socket.socket] = field(default_factory=list)

    def accept(self) -> socket.socket:
        """The member end of the newest connection."""
        return self.peers[-1]


class FakePicker:
    def __init__(self, members: list[FakeMember]) -> None:
        self.members = members
        self.in_flight: dict[int, int] = {}
        self.finished_statuses: list[tuple[int, int]] = []

    def choose(self, excluded: set[int] | None = None) -> Target | None:
        for member in self.members:
            if member.target.slot not in (excluded or ()):
                return member.target
        return None

    def started(self, target: Target) -> None:
        self.in_flight[target.slot] = self.in_flight.get(target.slot, 0) + 1

    def finished(self, target: Target, status: int) -> None:
        self.in_flight[target.slot] -= 1
        self.finished_statuses.append((target.slot, status))


def member(slot: int, refuse: bool = False) -> FakeMember:
    target = Target(slot, uid=slot, family=socket.AF_INET, sockaddr=(f"192.0.2.{slot}", 8080),
                    label=f"m{slot}", counters=0)
    return FakeMember(target, refuse)


class FakeContext:
    def __init__(self, members: list[FakeMember], **http: object) -> None:
        self.loop = Loop()
        self.buffer = memoryview(bytearray(64 * 1024))
        self.http = HttpSettings(**http)  # type: ignore[arg-type]
        self.limits = Limits(self.http.max_request_line, self.http.max_header_size,
                             self.http.max_body_size)
        self.members = {m.target.slot: m for m in members}
        self.upstreams = FakePicker(members)
        self.conn_pool = ConnectionPool(self.loop, self.http.pool_size,
                                        self.http.pool_idle_timeout)
        self.draining = False
        self.connects: list[int] = []         # slots dialed, in order
        self.failed: list[tuple[int, str]] = []
        self.counts: dict[str, int] = {}
        self.done: list[tuple[int, int | None]] = []  # (status, slot) per finished request
        self.closed_sessions: list[object] = []

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

    def member_failed(self, target: Target, reason: str) -> None:
        self.failed.append((target.slot, reason))

    def resource_error(self, err: OSError) -> None:
        self._count("resource_error")

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def count_no_member(self) -> None:
        self._count("no_member")

    def count_retry(self) -> None:
        self._count("retry")

    def count_bytes(self, from_client: bool, n: int) -> None:
        self._count("bytes_in" if from_client else "bytes_out", n)

    def count_upstream_timeout(self) -> None:
        self._count("upstream_timeout")

    def count_client_error(self) -> None:
        self._count("client_error")

    def request_done(self, exchange: object, status: int, target: Target | None) -> None:
        self.done.append((status, target.slot if target else None))

    def session_closed(self, session: object) -> None:
        self.closed_sessions.append(session)

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
