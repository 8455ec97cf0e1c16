"""Per-client limits in a worker: connections at accept, requests on both HTTP paths.

The rules are hbfork.core.client_limits'; the shared counts hbfork.table.client_table's. A
worker builds one ClientLimits when [limits] turns a limit on; its hooks are small:

- Admission.open_session asks `admit(ip)` for each accepted connection: refused ones get a
  429 (HTTP, plain listeners) or are closed (TCP mode, TLS listeners: nothing can be said
  before the handshake), and are never sessions; admitted ones are `hold`-ed until
  session_closed `drop`s them.
- Each HTTP session gets a ClientRate (`rate_for`), which both paths ask before a request
  goes on (`check(head)`): 0, or the Retry-After seconds of a 429. The fast path asks it once
  per request with the head it read; when it then hands the request over to the general
  path, the verdict goes along (`handed_over`), so no request is charged twice.

The address a request is counted under comes from `client_address(session)`, the one place to
point at the real client (X-Forwarded-For from trusted proxies, PROXY protocol) once the
session knows it; today it is the peer's address.
"""

from __future__ import annotations

import socket
import time
from typing import Protocol

from hbfork.core.addresses import parse_ip
from hbfork.core.client_limits import (
    Bucket,
    LimitSettings,
    header_value,
    is_exempt,
    retry_after,
)
from hbfork.core.http_heads import error_response
from hbfork.table.client_table import ClientTable, key_hash
from hbfork.table.layout import WK_LIMIT_EVICTIONS, WK_LIMITED_CONNECTIONS, WK_LIMITED_REQUESTS


class Session(Protocol):
    """A connection the worker holds (hbfork.proxy.context.Session, as far as we need it)."""
    @property
    def closed(self) -> bool: ...


class _Request(Protocol):
    @property
    def client_ip(self) -> str: ...


class SessionCore(Protocol):
    """An HTTP session (hbfork.proxy.http.parts.SessionCore, as far as we need it)."""
    @property
    def ex(self) -> _Request: ...


REFUSED = error_response(429, "too many connections from this client",
                         extra=(("Retry-After", "1"),))  # Connection: close
_FRESH, _CHARGED = 0, -1  # ClientRate.verdict besides a pending Retry-After
_EXEMPT_CACHE = 4096
_VALUE_CACHE = 65536  # header values whose key and slot a worker remembers


def client_address(session: SessionCore) -> str:
    """The address per-client limits count the session's current request under."""
    return session.ex.client_ip


class ClientLimits:
    """A worker's side of the per-client limits (see the module docstring)."""

    def __init__(self, settings: LimitSettings, table: ClientTable, words: memoryview,
                 tcp: bool = False, index: int = 0) -> None:
        self.table = table
        self.tcp = tcp  # TCP mode: requests_per_second counts new connections
        self.words = words  # the worker's record (u64 words): its counters are ours to bump
        self.connection_limit = settings.connections_per_client
        self.bucket = Bucket.of(settings.requests_per_second, settings.burst) \
            if settings.requests_per_second else None
        self.header = settings.header
        self.exempt_networks = settings.exempt
        self._exempt: dict[str, bool] = {}
        self.values: dict[bytes, tuple[int, int]] = {}  # header value -> its key and slot
        # Admitted connections: their table keys and places in our mirror (-1: not listed)
        self.held: dict[Session, tuple[int, int]] = {}
        self.handshakes: dict[Session, tuple[int, int]] = {}  # the same, handshaking
        self.mirror = table.mirror  # our part: the master uncounts it if we are killed
        self.mirror_at = table.mirror_of(index)
        self._fresh = self.mirror_at + 1      # the next never-used place
        self._free: list[int] = []            # places used and given back

    def exempt(self, ip: str) -> bool:
        if not self.exempt_networks:
            return False
        known = self._exempt.get(ip)
        if known is None:
            try:
                known = is_exempt(parse_ip(ip), self.exempt_networks)
            except ValueError:
                known = False  # "-": a Unix socket peer is limited as one client
            if len(self._exempt) >= _EXEMPT_CACHE:
                self._exempt.clear()
            self._exempt[ip] = known
        return known

    # --- connections

    def admit(self, ip: str) -> int:
        """A connection from `ip` was accepted: its table key (0: not counted), or -1 when
        the client has connections_per_client open already (or, in TCP mode, opens them
        faster than requests_per_second)."""
        tcp_rate = self.bucket if self.tcp else None
        if not (self.connection_limit or tcp_rate) or self.exempt(ip):
            return 0
        key = key_hash(ip)
        now = time.monotonic_ns()
        if tcp_rate is not None:
            _, wait, evicted = self.table.charge(key, now, tcp_rate)
            if evicted:
                self.words[WK_LIMIT_EVICTIONS] += 1
            if wait:
                self.words[WK_LIMITED_REQUESTS] += 1
                return -1
            if not self.connection_limit:
                return 0
        admitted, evicted = self.table.open(key, now, self.connection_limit)
        if evicted:
            self.words[WK_LIMIT_EVICTIONS] += 1
        if not admitted:
            self.words[WK_LIMITED_CONNECTIONS] += 1
            return -1
        return key

    def refuse(self, client: socket.socket, answer: bool) -> None:
        """Close a refused connection, first with a 429 when `answer` (plain HTTP)."""
        if answer:
            try:
                client.setblocking(False)
                client.send(REFUSED)
            except OSError:
                pass  # gone already, or a full buffer at once: the close says enough
        client.close()

    def hold(self, session: Session, key: int, handshake: bool = False) -> None:
        """Count `key` as open until `session` closes (a handshake: until it becomes a
        session, or fails)."""
        if session.closed and not handshake:
            self.table.close_one(key)  # closed before it was held: session_closed came first
            return
        entry = key, self._list(key)
        if handshake:
            self.handshakes[session] = entry  # a failed one is released by sweep()
        else:
            self.held[session] = entry

    def moved(self, handshake: Session, session: Session | None) -> None:
        """A TLS handshake became `session` (None: it could not)."""
        entry = self.handshakes.pop(handshake, None)
        if entry is not None and session is not None and not session.closed:
            self.held[session] = entry
        elif entry is not None:
            self._release(entry)

    def drop(self, session: Session) -> None:
        entry = self.held.pop(session, None)
        if entry is not None:
            self._release(entry)

    def release_all(self) -> None:
        """The worker leaves: every connection it still counts is uncounted."""
        for entry in [*self.held.values(), *self.handshakes.values()]:
            self._release(entry)
        self.held.clear()
        self.handshakes.clear()

    def _list(self, key: int) -> int:
        """Note `key` in our mirror: its place (-1: the mirror is full)."""
        if self._free:
            place = self._free.pop()
        elif self._fresh <= self.mirror_at + self.table.held:
            place = self._fresh
            self._fresh += 1
        else:
            return -1
        self.mirror[place] = key
        self.mirror[self.mirror_at] += 1
        return place

    def _release(self, entry: tuple[int, int]) -> None:
        key, place = entry
        self.table.close_one(key)
        if place >= 0:
            self.mirror[place] = 0
            self.mirror[self.mirror_at] -= 1
            self._free.append(place)

    def sweep(self) -> None:
        """Release handshakes that failed (they close without telling the worker)."""
        for handshake in [h for h in self.handshakes if h.closed]:
            self.moved(handshake, None)

    # --- requests

    def rate_for(self, session: SessionCore) -> ClientRate | None:
        """The request limiter of an HTTP session (None when no rate is set)."""
        return ClientRate(self, session, self.bucket) if self.bucket is not None else None


class ClientRate:
    """One HTTP session's request limiter: the client's key and slot, kept between requests."""

    __slots__ = ("address", "bucket", "exempt", "key", "limits", "session", "slot", "verdict")

    def __init__(self, limits: ClientLimits, session: SessionCore, bucket: Bucket) -> None:
        self.limits = limits
        self.session = session
        self.bucket = bucket
        self.address = ""
        self.key = 0
        self.exempt = False
        self.slot = -1
        self.verdict = _FRESH

    def check(self, head: bytes) -> int:
        """Charge one request (its head): 0 when it may go on, else Retry-After seconds."""
        verdict = self.verdict
        if verdict != _FRESH:  # the fast path judged this request, then handed it over
            self.verdict = _FRESH
            return verdict if verdict > 0 else 0
        limits = self.limits
        address = client_address(self.session)
        if address != self.address:
            self.address, self.key, self.slot = address, key_hash(address), -1
            self.exempt = limits.exempt(address)
        if self.exempt:
            return 0
        if limits.header is not None and \
                (value := header_value(head, limits.header)) is not None:
            # Keyed by hash(b"\0" + value): never an address's hash input (a str, no NUL).
            known = limits.values.get(value)
            key, hint = known if known is not None else (key_hash(b"\0" + value), -1)
            slot, wait, evicted = limits.table.charge(key, time.monotonic_ns(), self.bucket,
                                                      hint)
            if slot != hint:
                if len(limits.values) >= _VALUE_CACHE:
                    limits.values.clear()
                limits.values[value] = key, slot
        else:
            slot, wait, evicted = limits.table.charge(self.key, time.monotonic_ns(),
                                                      self.bucket, self.slot)
            self.slot = slot
        if evicted:
            limits.words[WK_LIMIT_EVICTIONS] += 1
        if wait:
            limits.words[WK_LIMITED_REQUESTS] += 1
            return retry_after(wait)
        return 0

    def handed_over(self, wait: int) -> None:
        """The fast path checked this request (`wait`: its result) and gives it to the general
        path, whose check must then not charge it again."""
        self.verdict = wait if wait > 0 else _CHARGED
