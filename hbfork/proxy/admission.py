"""Admitting an accepted connection: per-client connection limits, a PROXY header read first
where the listener wants one, a TLS handshake where it talks TLS, then the mode's session
(HTTP or TCP). Every accepted socket ends up owned by exactly one session, or closed.

Split from proxy.worker, whose loop, record and session set it shares.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from hbfork.core.client_address import Origin
from hbfork.core.config import Config
from hbfork.core.tls_settings import ListenSettings
from hbfork.proxy.client_limits import ClientLimits
from hbfork.proxy.context import Session, SessionContext
from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.loop import Loop
from hbfork.proxy.proxy_header import ProxyHeaderReader
from hbfork.proxy.tls import Handshake, wrap
from hbfork.system import logs
from hbfork.system.tls import TlsContexts
from hbfork.table.worker_record import WorkerRecord

log = logs.log

SessionFactory = Callable[[SessionContext, socket.socket, str, ListenSettings, Origin | None],
                          Session]


class Admission:
    """Turns accepted connections into sessions of the worker's `sessions` set."""

    def __init__(self, loop: Loop, record: WorkerRecord, config: Config,
                 tls: TlsContexts | None, context: SessionContext, new_session: SessionFactory,
                 sessions: set[Session], client_limits: ClientLimits | None,
                 back_off: Callable[[OSError], None]) -> None:
        self.loop = loop
        self.record = record
        self.config = config
        self.listens = config.listeners
        self.tls = tls
        self.context = context
        self.new_session = new_session
        self.sessions = sessions
        self.client_limits = client_limits
        self.back_off = back_off

    def open_session(self, client: socket.socket, client_ip: str, index: int) -> None:
        listen = self.listens[index]
        limits = self.client_limits
        # Behind a PROXY header the peer is the balancer: the client is counted once the
        # header has said who it is (proxy_header_read).
        counted = limits.admit(client_ip) if limits is not None and not listen.proxy_protocol \
            else 0
        if counted < 0:  # that client has its connections_per_client open already
            assert limits is not None
            return limits.refuse(client, self.new_session is HttpSession and not listen.tls)
        try:
            client.setblocking(False)
            # Responses end in small writes (in TCP mode: whatever pieces the member sent);
            # Nagle plus the client's delayed ACK would hold each such tail for 40 ms.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if listen.proxy_protocol:  # its PROXY header first, before TLS
                session: Session = ProxyHeaderReader(
                    self.loop, self.record, client, client_ip, listen,
                    listen.proxy_sources(self.config.proxy.trusted_proxies),
                    self.proxy_header_read, self.unfinished_closed)
            else:
                session = self.start_session(client, client_ip, listen, None)
        except Exception as err:
            # Never leave an accepted connection open and unowned.
            log.exception("cannot start a session for a new connection; closing it")
            self.loop.remove(client.fileno())
            client.close()
            if isinstance(err, OSError) and err.errno is not None and \
                    err.errno in (errno.EMFILE, errno.ENFILE):
                self.back_off(err)
            if counted:
                assert limits is not None
                limits.table.close_one(counted)
            return
        if not session.closed:
            self.sessions.add(session)
            self.record.set_connections(len(self.sessions))
        if counted:
            assert limits is not None
            limits.hold(session, counted, isinstance(session, Handshake))

    def start_session(self, client: socket.socket, client_ip: str, listen: ListenSettings,
                       origin: Origin | None) -> Session:
        if listen.tls and self.tls is not None and self.tls.default is not None:
            return Handshake(self.loop, self.record, wrap(self.tls.default, client), client_ip,
                             listen, self.config.tls.handshake_timeout, self.handshake_done,
                             origin, self.unfinished_closed)
        return self.new_session(self.context, client, client_ip, listen, origin)

    def unfinished_closed(self, opening: Handshake | ProxyHeaderReader) -> None:
        """A connection closed before it became a session (a failed or timed-out TLS
        handshake or PROXY header, or a stop): out of the worker's set like any session."""
        if self.client_limits is not None and isinstance(opening, Handshake):
            self.client_limits.moved(opening, None)
        self.context.session_closed(opening)

    def proxy_header_read(self, reader: ProxyHeaderReader) -> None:
        """A PROXY header was read: the connection goes on with the address it gave (the
        one per-client limits count)."""
        self.sessions.discard(reader)
        limits = self.client_limits
        counted = limits.admit(reader.client_ip) if limits is not None else 0
        if counted < 0:
            assert limits is not None
            self.record.set_connections(len(self.sessions))
            return limits.refuse(reader.sock, self.new_session is HttpSession
                                 and not reader.listen.tls)
        try:
            session = self.start_session(reader.sock, reader.client_ip, reader.listen,
                                          reader.origin)
        except Exception:
            log.exception("cannot start a session after a PROXY header; closing it")
            self.loop.remove(reader.fd)
            reader.sock.close()
            if counted:
                assert limits is not None
                limits.table.close_one(counted)
            return
        if not session.closed:
            self.sessions.add(session)
        self.record.set_connections(len(self.sessions))
        if counted:
            assert limits is not None
            limits.hold(session, counted, isinstance(session, Handshake))

    def handshake_done(self, handshake: Handshake) -> None:
        """A TLS handshake finished: the connection becomes a session like any other."""
        self.sessions.discard(handshake)
        sock = handshake.sock
        session: Session | None = None
        try:
            session = self.new_session(self.context, sock, handshake.client_ip,
                                        handshake.listen, handshake.origin)
        except Exception:
            log.exception("cannot start a session for a TLS connection; closing it")
            self.loop.remove(sock.fileno())
            sock.close()
            return
        finally:
            if self.client_limits is not None:
                self.client_limits.moved(handshake, session)
        if not session.closed:
            self.sessions.add(session)
        self.record.set_connections(len(self.sessions))

    # --- the SessionContext
