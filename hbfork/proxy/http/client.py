"""The client connection of an HTTP session: its socket (TLS or not), what was read from it and
what waits to be written to it, its half-close, and lingering after the last response.

It reads and writes the client's bytes with the session's back-pressure (a client is read only
while what it sent can be taken) and keeps the connection's own facts; what the bytes mean is
the session's business (hbfork.proxy.http.session). After the last response the connection is
half-closed and what the client still sends is discarded for a moment (LINGER), so unread bytes
do not make the kernel reset the connection and destroy that response in transit.
"""

from __future__ import annotations

import socket

from hbfork.core.client_address import Origin, address_rule
from hbfork.core.http11 import LengthBody, RequestHead
from hbfork.core.http_heads import hsts_line
from hbfork.core.tls_settings import ListenSettings
from hbfork.proxy.http.parts import MemberSide, SessionCore
from hbfork.proxy.http.state import (
    BUFFERING,
    CLOSING,
    FORWARD,
    HEAD,
    HIGH_WATER,
    LINGER,
    LINGER_BYTES,
    LINGER_MAX,
    LINGER_QUIET,
    QUEUED,
    TUNNEL,
)
from hbfork.proxy.loop import ERROR, RDHUP, WRITE
from hbfork.proxy.tls import WOULD_BLOCK, TlsWriter, peek, raw_recv_into

PLAIN = ListenSettings()  # a plain listener's options (tests and direct use)


class ClientConnection:
    __slots__ = ("address_rule", "ctx", "eof", "extra_head", "fd", "forwarded", "hup", "inbuf",
                 "ip", "lean_unsafe", "linger_left", "linger_until", "listen", "member", "origin",
                 "out", "parked", "s", "sock", "tls")

    def __init__(self, session: SessionCore, sock: socket.socket, ip: str,
                 listen: ListenSettings = PLAIN, origin: Origin | None = None) -> None:
        self.s = session
        self.ctx = session.ctx
        self.member: MemberSide  # the session's member leg (it sets it, once made)
        self.sock = sock
        self.fd = sock.fileno()
        self.ip = ip   # the connection's client: the peer, or what its PROXY header said
        self.origin = origin  # the PROXY header's addresses (None: the socket's own)
        # This connection's requests name their client (hbfork.core.client_address) only if
        # it comes from a trusted proxy; lean_unsafe: by a header the fast path cannot see.
        rule = self.address_rule = address_rule(ip, listen.trusted_proxies,
                                                session.ctx.http.client_ip_header)
        self.lean_unsafe = rule is not None and not rule.lean_safe
        self.listen = listen   # the listener it came in on (TLS, HSTS, redirect to https)
        self.tls = TlsWriter() if listen.tls else None  # a TLS client: writes go through it
        self.inbuf = bytearray()  # read, not yet taken by the session
        self.out = bytearray()    # waiting to be written to the client
        self.eof = False      # the client sends nothing more (the bytes before its FIN read)
        self.hup = False      # it half-closed, but bytes before the FIN are still unread
        self.parked = False   # it sent what we cannot take yet: watch for RDHUP only
        self.linger_until = 0.0
        self.linger_left = LINGER_BYTES
        port = listen.address.port if listen.address is not None else 0
        # the X-Forwarded-For/-Proto/-Port lines for this client (the fast path's)
        self.forwarded = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n%s" % (
            ip.encode(), b"https" if self.tls is not None else b"http",
            b"X-Forwarded-Port: %d\r\n" % port if port else b"")
        # lines every response gets on this listener (HSTS)
        self.extra_head = hsts_line(listen.hsts, listen.hsts_subdomains) + b"\r\n" \
            if listen.hsts else b""

    def client_of(self, request: RequestHead) -> str:
        """The client of `request`: the connection's, or the one its trusted proxy names."""
        rule = self.address_rule
        if rule is None:
            return self.ip
        name = rule.header
        return rule.client_of(self.ip, [v for _, lower, v in request.headers if lower == name])

    def on_event(self, mask: int) -> None:
        """The client socket's events (the general path)."""
        s = self.s
        if s.state == LINGER:
            return self._linger()
        if s.state == QUEUED and mask & (RDHUP | ERROR):
            return s.close()  # gone before a member had room: it leaves the queue
        if mask & WRITE and self.out:  # (room for the response spool's bytes: s.advance feeds)
            if not self.flush():
                return
        if mask & ~WRITE:
            if self.wants_read():
                if not self.read():
                    return
            elif mask & ERROR:
                return s.close()  # reset by the client: nothing can reach it any more
            else:
                self.parked = True  # bytes or a FIN we cannot take yet
                if mask & RDHUP and not self._half_closed():
                    return s.close()
        s.advance()

    def wants_read(self) -> bool:
        s = self.s
        state = s.state
        if self.eof or state == CLOSING:
            return False
        if state in (HEAD, LINGER, BUFFERING):
            return True
        member = self.member
        if state == TUNNEL:
            return len(member.out) < HIGH_WATER
        ex = s.ex
        if ex.request is None or ex.request_done or member.conn is None or state != FORWARD:
            return False
        relay = member.body_relay
        if relay is not None and relay.waiting():
            return False  # the pipe holds bytes the member has not taken yet
        if member.body_splices():
            # Let what is queued for the member go first, then splice the rest: reading on
            # into the buffers meanwhile would keep the queue from ever emptying, and the
            # whole body would be copied.
            return not member.out and not self.inbuf
        return member.takes_body()

    def read(self) -> bool:
        """Read what the client sent; False if the session ended."""
        s = self.s
        member, ex, ctx = self.member, s.ex, s.ctx
        if s.state == FORWARD and not ex.request_done and not self.inbuf and \
                not member.out and member.body_splices():
            # body_splices() is True only for a LengthBody
            return member.relay_body_bulk(ex.body)  # type: ignore[arg-type]
        buffer = ctx.buffer
        if s.state == BUFFERING and (room := ctx.http.request_buffering - len(self.inbuf)) > 0:
            # No more than request buffering still needs: what follows of a large body is
            # spliced once a member is chosen, not copied through the buffers (a read of up
            # to 256 KiB here cost 1 MiB uploads +25 % worker CPU).
            buffer = buffer[:room]
        try:
            n = self.sock.recv_into(buffer)
        except WOULD_BLOCK:  # BlockingIOError, or TLS waiting for a whole record
            return True
        except OSError:
            s.close()
            return False
        if n == 0:
            self.eof = True
            return True
        ctx.count_bytes(True, n)
        if s.state == HEAD:
            if not self.inbuf:
                s.head_started = ctx.loop.now  # see HttpSession.parse_head
        elif s.state != FORWARD or ex.response is not None or not ex.request_done:
            s.set_deadline(ctx.http.client_timeout)
        if s.state == FORWARD and type(ex.body) is LengthBody and not ex.request_done \
                and member.conn is not None and not self.inbuf and not member.out:
            member.relay_request_bytes(n)
            if s.closed:
                return False
        else:
            self.inbuf += buffer[:n]
        if self.tls is not None and self.sock.pending():  # type: ignore[attr-defined]
            return self.read()  # decrypted bytes epoll cannot see: take them now
        return True

    def _half_closed(self) -> bool:
        """RDHUP while the client is not being read. Its FIN ends the stream only if no bytes
        precede it: pipelined requests or body bytes still queued are read in their turn.
        False: the connection failed."""
        try:
            pending = peek(self.sock)
        except BlockingIOError:
            pending = b"?"
        except OSError:
            return False
        if pending:
            self.hup = True  # stop watching; the EOF is read after the bytes
        else:
            self.eof = True
        return True

    # --- writing

    def send_now(self, data: bytes | memoryview) -> int:
        """Write `data` now: the bytes taken, or -1 if the session ended."""
        try:
            sent = self.sock.send(data) if self.tls is None else self.tls.send(self.sock, data)
        except BlockingIOError:
            return 0
        except OSError:
            self.s.close()
            return -1
        self.ctx.count_bytes(False, sent)
        return sent

    def flush(self) -> bool:
        """Write what is queued for the client; False if the session ended."""
        try:
            if self.tls is None:
                sent = self.sock.send(self.out)
            else:
                sent = self.tls.send(self.sock, self.out)
        except BlockingIOError:
            return True
        except OSError:
            self.s.close()
            return False
        del self.out[:sent]
        self.s.ctx.count_bytes(False, sent)
        return True

    # --- the end

    def start_linger(self) -> None:
        """Everything is flushed: half-close, then discard what the client still sends until
        it closes too or goes quiet. Closing with its bytes unread would make the kernel send
        a reset, and a reset can destroy our last response before the client reads it."""
        s = self.s
        if self.eof:
            return s.close()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return s.close()
        s.state = LINGER
        self.inbuf.clear()
        self.linger_until = s.ctx.loop.now + LINGER_MAX
        s.set_deadline(LINGER_QUIET)

    def _linger(self) -> None:
        s = self.s
        try:
            n = raw_recv_into(self.sock, s.ctx.buffer)  # discarded: TLS or not
        except BlockingIOError:
            return
        except OSError:
            n = 0
        self.linger_left -= n
        left = self.linger_until - s.ctx.loop.now
        if n == 0 or self.linger_left <= 0 or left <= 0:
            return s.close()
        s.set_deadline(min(LINGER_QUIET, left))
