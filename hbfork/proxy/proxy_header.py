"""The PROXY protocol on the wire: reading the header a listener with `proxy_protocol = true`
expects, and writing the one a pool with `proxy_protocol = "v1"`/`"v2"` sends its members.

Reading happens on the raw socket, before TLS and before any session, and never takes a byte
past the header: what follows (a ClientHello, a request, TCP payload) stays in the kernel for
whoever owns the connection next. Each readable event peeks at what has arrived; while the
parser (hbfork.core.proxy_protocol) needs more, those bytes are all header, so they are taken
(level-triggered epoll would otherwise wake again for the same bytes); once it has a header,
exactly its remaining bytes are taken. A connection from a source not allowed to send one, or
whose header is malformed, truncated, or late (`proxy_protocol_timeout`), is closed and counted
(WorkerRecord.count_proxy_header): nothing of it reaches a member.

Writing happens once, as soon as a member connection is established (before TLS to the member,
before any request byte). A fresh connection's socket buffer is empty and a header is at most
232 bytes, so one send() takes it whole; anything less is treated as a failed connect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Protocol

from hbfork.core.addresses import IPNetwork, normalize_ip
from hbfork.core.client_address import Origin, trusted
from hbfork.core.proxy_protocol import (
    V2_HEADER,
    V2_MAX_PAYLOAD,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
    parse,
)
from hbfork.core.ratelimit import LogLimiter
from hbfork.core.tls_settings import ListenSettings
from hbfork.proxy.keepalive import MemberConnection, still_open
from hbfork.proxy.loop import ERROR, READ, Loop
from hbfork.proxy.upstreams import Target
from hbfork.system.logs import log
from hbfork.table.worker_record import WorkerRecord

PEEK_MAX = V2_HEADER + V2_MAX_PAYLOAD   # the longest header we take
_log_limiter = LogLimiter(5.0)

class HasKept(Protocol):
    kept: MemberConnection | None


# Called with the reader once its header is read: the connection goes on (TLS or a session)
OnHeader = Callable[["ProxyHeaderReader"], None]
# Called with a reader that closed without a header: the worker forgets it
OnClosed = Callable[["ProxyHeaderReader"], None]


class ProxyHeaderReader:
    """One accepted connection until its PROXY header is read (held by the worker as a session
    meanwhile: it has `closed`, drain() and close())."""

    __slots__ = ("client_ip", "closed", "fd", "got", "listen", "loop", "on_closed", "on_header",
                 "origin", "record", "sock", "timer")

    def __init__(self, loop: Loop, record: WorkerRecord, sock: socket.socket, client_ip: str,
                 listen: ListenSettings, sources: tuple[IPNetwork, ...],
                 on_header: OnHeader, on_closed: OnClosed | None = None) -> None:
        self.loop = loop
        self.listen = listen
        self.record = record
        self.sock = sock
        self.fd = sock.fileno()
        self.client_ip = client_ip      # the peer's; the header's source once read
        self.origin: Origin | None = None
        self.on_header = on_header
        self.on_closed = on_closed
        self.got = bytearray()          # header bytes taken so far
        self.closed = False
        self.timer = loop.timer(self._on_deadline)
        if not trusted(client_ip, sources):
            self.closed = True          # never registered: nothing to undo but the socket
            self._refuse("untrusted", "a source not in proxy_protocol_from")
            sock.close()
            return
        loop.add(self.fd, READ, self._on_event)
        loop.set_timer(self.timer, loop.now + listen.proxy_protocol_timeout)

    def _on_event(self, mask: int) -> None:
        if mask & ERROR and not mask & READ:
            return self._fail("closed", "the connection failed")
        try:
            data = self.sock.recv(PEEK_MAX - len(self.got), socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            return self._fail("closed", "the connection failed")
        if not data:
            return self._fail("closed", "the connection closed inside the header"
                              if self.got else "the connection closed before the header")
        try:
            header = parse(self.got + data)
        except ProxyProtocolError as err:
            return self._fail("malformed", str(err))
        try:
            if header is None:
                self.got += self.sock.recv(len(data))  # all of it is header (see above)
                return
            need = header.length - len(self.got)
            taken = self.sock.recv(need) if need else b""
        except OSError:
            return self._fail("closed", "the connection failed")
        if len(taken) != need:
            return self._fail("closed", "the connection failed")
        if header.source is None or header.destination is None:
            self.origin = origin_of(self.sock)  # LOCAL or UNKNOWN: the connection's own
            self._count("local")
        else:
            self.origin = Origin(header.source, header.destination, proxied=True)
            self.client_ip = header.source[0]
            self._count("ok")
        self.closed = True
        self.loop.cancel(self.timer)
        self.loop.remove(self.fd)   # the next owner registers it with its own handler
        self.on_header(self)

    def _on_deadline(self, now: float) -> None:
        self._fail("timeout", "no whole header within proxy_protocol_timeout")

    def _fail(self, result: str, why: str) -> None:
        self._refuse(result, why)
        self.close()

    def _refuse(self, result: str, why: str) -> None:
        self._count(result)
        more = _log_limiter.note(result, self.loop.now)
        if more is not None:
            log.warning("PROXY protocol: closed a connection from %s: %s%s", self.client_ip,
                        why, more)

    def _count(self, result: str) -> None:
        self.record.count_proxy_header(result)

    def drain(self) -> None:
        """Graceful stop: a header being read may finish (or time out)."""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.cancel(self.timer)
            self.loop.remove(self.fd)
            self.sock.close()
            if self.on_closed is not None:
                # Out of the worker's connection set (max_connections, graceful stop).
                self.on_closed(self)


def origin_of(sock: socket.socket) -> Origin | None:
    """The connection's own addresses (peer, local; IPv4-mapped ones as IPv4); None if the
    socket cannot say (it is gone)."""
    try:
        peer, local = sock.getpeername(), sock.getsockname()
    except OSError:
        return None
    if not isinstance(peer, tuple) or not isinstance(local, tuple):
        return None  # not an IP socket
    return Origin((_plain(peer[0]), int(peer[1])), (_plain(local[0]), int(local[1])))


def _plain(host: str) -> str:
    return str(normalize_ip(ipaddress.ip_address(host.partition("%")[0])))


def header_for(version: str, origin: Origin | None) -> bytes:
    """The PROXY header (`version` "v1" or "v2") that tells a member about `origin` (None:
    unknown, which v1 says as UNKNOWN and v2 as LOCAL: the member uses the connection's)."""
    if version == "v1":
        return encode_v1(origin.source, origin.destination) if origin is not None \
            else b"PROXY UNKNOWN\r\n"
    return encode_v2(origin.source if origin is not None else None,
                     origin.destination if origin is not None else None)


def introduce(conn: MemberConnection, version: str, origin: Origin | None,
              client: socket.socket) -> bool:
    """HTTP mode: a member connection just established, for a pool whose proxy_protocol is
    `version` ("": none): its header sent, and the connection made private (never pooled, so
    never used for another client); False when it could not be sent."""
    if not version:
        return True
    conn.private = True
    return send_header(conn.sock, version, origin, client)


def keep_private(loop: Loop, conn: MemberConnection | None,
                 kept: MemberConnection | None) -> MemberConnection | None:
    """Keep `conn` (a private connection whose exchange ended well) for its client's next
    request, instead of `kept` (closed); None: keep nothing. While kept, an event on it (the
    member closed it) closes it."""
    if kept is not None and kept is not conn:
        kept.close()
    if conn is None or conn.closed:
        return None
    conn.reused = True   # a reused connection: a request it fails is retried on a fresh one
    loop.handlers[conn.fd] = conn.on_idle_event
    loop.set_mask(conn.fd, READ)
    return conn


def take_private(member: HasKept, target: Target, tls: bool) -> MemberConnection | None:
    """The connection `member` kept for its client, if it goes to `target` (the same member,
    the same TLS-ness) and still looks open; else None (and it is closed)."""
    kept, member.kept = member.kept, None
    if kept is None:
        return None
    if kept.closed or kept.target.slot != target.slot or kept.target.uid != target.uid or \
            (kept.tls is not None) != tls or not still_open(kept.sock):
        kept.close()
        return None
    return kept


def send_header(sock: socket.socket, version: str, origin: Origin | None,
                client: socket.socket) -> bool:
    """Write the PROXY header first on a just-connected member socket; False if it could not
    be (the connection is to be treated as failed). `origin` None: the `client` socket's own
    addresses."""
    data = header_for(version, origin if origin is not None else origin_of(client))
    try:
        return sock.send(data) == len(data)
    except OSError:
        return False
