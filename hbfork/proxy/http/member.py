"""The member side of an HTTP session: dialing (with failover), sending the request head and
body, reading the response bytes, and what to do when the member closes or resets.

A refused or timed-out connect marks the member in error and the request goes to another
member, up to `retries`. A pooled connection the member closed before answering is retried once
on a fresh connection, if the request is idempotent and has no body (the keep-alive race).
Other failures before a response head go to the outlier detector, and to another member when
the pool retries them (`retry_on`) and the request is safe to replay (hbfork.core.retry).
"""

from __future__ import annotations

import errno
import socket
import ssl

from hbfork.core import http11, http_heads
from hbfork.core.chunked import Rechunker
from hbfork.core.errors import ProtocolError
from hbfork.core.failures import gateway_status
from hbfork.core.http11 import LengthBody, UntilClose
from hbfork.core.outlier import FAILED_STATUS, GATEWAY, OK
from hbfork.core.retry import EMPTY, MALFORMED, RESET, may_retry, race_goes_elsewhere, replayable
from hbfork.core.spool import RELAY
from hbfork.proxy.http.gateway_log import gateway_failed
from hbfork.proxy.http.parts import MemberSide, SessionCore
from hbfork.proxy.http.slow import read_size
from hbfork.proxy.http.spool import spool_read, spool_takes
from hbfork.proxy.http.state import CLOSING, CONNECT, FORWARD, HIGH_WATER, TUNNEL
from hbfork.proxy.keepalive import MemberConnection
from hbfork.proxy.loop import READ, WRITE
from hbfork.proxy.proxy_header import introduce, keep_private
from hbfork.proxy.relay import SPLICE_AFTER, Direction, splice_available
from hbfork.proxy.tls import WOULD_BLOCK
from hbfork.proxy.upstreams import Target

# Bodies whose bytes can go from the worker's buffer straight to the other side: their
# framing needs no parsing that could fail (chunked bodies take the queued path).
DIRECT_BODIES = (LengthBody, UntilClose, Rechunker)  # relayed from the read buffer
# A request body of known length with at least SPLICE_AFTER bytes still to come goes from the
# client's socket to the member's through a kernel pipe (splice(2)), never through Python
# buffers: uploads took twice the CPU per MiB of downloads when copied (scripts/bench,
# 1 MiB POSTs). Plain connections only: over TLS, splice would move ciphertext.
SPLICE_BODIES = splice_available()


class MemberLeg:
    __slots__ = ("body_relay", "client", "conn", "ctx", "inbuf", "inflight", "kept", "out", "s",
                 "spare")

    def __init__(self, session: SessionCore) -> None:
        self.s = session
        self.ctx = session.ctx  # and the client, one attribute away (they never change)
        self.client = session.client
        self.conn: MemberConnection | None = None
        self.out = bytearray()     # waiting to be written to the member
        self.inbuf = bytearray()   # read from the member, not yet relayed
        self.body_relay: Direction | None = None  # a large request body spliced (after its head)
        self.inflight: Target | None = None  # the member counted as having this request
        self.spare: MemberSide | None = None  # the session's AJP leg, kept between requests
        # A member connection that told its member this client (a PROXY header), kept between
        # this client's requests: never pooled, never another client's (proxy.proxy_header).
        self.kept: MemberConnection | None = None

    # --- dialing

    def connect(self, target: Target) -> None:
        s = self.s
        try:
            sock, err = self.ctx.connect(target)
        except OSError as error:  # out of fds or memory: our problem, not the member's
            self.ctx.resource_error(error)
            return s.fail(503, "the proxy is out of resources", (("Retry-After", "1"),))
        self.conn = conn = MemberConnection(sock, target, self.ctx.conn_pool)
        conn.probe = self.ctx.upstreams.reopening.dialled(target.slot, self.ctx.loop.now)
        s.state = CONNECT
        self.ctx.loop.add(conn.fd, WRITE, self.on_event)
        if err not in (0, errno.EINPROGRESS):
            return self.connect_failed(err)
        s.set_deadline(s.pool.connect_timeout)

    def _handshake(self, conn: MemberConnection) -> None:
        """TLS to the member: one step of the handshake (connect_timeout covers it all)."""
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)  # start_tls wrapped it
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self.ctx.loop.set_mask(conn.fd, READ)
            return
        except ssl.SSLWantWriteError:
            self.ctx.loop.set_mask(conn.fd, WRITE)
            return
        except (ssl.SSLError, OSError) as err:
            reason = getattr(err, "reason", None) or type(err).__name__
            return self.connect_failed(0, f"TLS: {reason}")
        conn.handshaking = False
        self.attached(conn)

    def connect_failed(self, err: int, reason: str = "") -> None:
        s, conn = self.s, self.conn
        assert conn is not None
        self.ctx.member_failed(conn.target, reason or errno.errorcode.get(err, str(err)),
                            s.pool.retry_ms)
        self.done(0)  # it took nothing: no longer in flight there
        conn.close()
        self.conn = None
        s.state = FORWARD  # between members; dispatch() decides what is next
        s.dispatch()

    def attached(self, conn: MemberConnection) -> None:
        """`conn` is connected: send the request head (and the body bytes already here)."""
        s = self.s
        ctx, ex, client = self.ctx, s.ex, self.client
        if ex.lean_head is not None:  # a fast-path request: the head is rebuilt in full
            ex.request = http11.parse_request_head(ex.lean_head, ctx.limits)
            ex.lean_head = None
        request, decision = ex.request, ex.decision
        assert request is not None and decision is not None
        self.conn = conn
        s.state = FORWARD
        ctx.loop.handlers[conn.fd] = self.on_event
        ex.member_started = ctx.loop.now
        listen = client.listen
        if ctx.router.edge.active:  # header rules, the request ID (hbfork.proxy.http.headers)
            request = ctx.router.edge.request_for_member(ex, listen.address, request, client.ip)
        self.out += http_heads.request_head_for_member(
            request, client.ip, ctx.http.forwarded_headers,
            b"https" if client.tls is not None else b"http", conn.target.address.encode(),
            decision.target or None, not decision.preserve_host,
            listen.address.port if listen.address is not None else 0)
        if request.expect_continue and not ex.request_done and not client.inbuf:
            # We answer the expectation ourselves (and do not forward it), now that a member
            # is ready to take the body: members that ignore Expect would make the client wait.
            client.out += http_heads.CONTINUE
        # Until the body is all here we wait on the client, not the member.
        s.set_deadline(s.pool.response_timeout if ex.request_done else ctx.http.client_timeout)

    # --- the request body

    def body_splices(self) -> bool:
        """The rest of this request body goes through a kernel pipe (see SPLICE_BODIES)."""
        body, conn, relay = self.s.ex.body, self.conn, self.body_relay
        return (type(body) is LengthBody and body.remaining >= SPLICE_AFTER and SPLICE_BODIES
                and self.client.tls is None and conn is not None and conn.tls is None
                and (relay is None or relay.splice))

    def takes_body(self) -> bool:
        """More of the request body may be read from the client now."""
        return len(self.out) < HIGH_WATER

    def relay_request_bytes(self, n: int) -> None:
        """Request body bytes just read into the worker's buffer go straight to the member,
        nothing being queued before them (no copy into the buffers)."""
        conn, body = self.conn, self.s.ex.body
        assert conn is not None and type(body) is LengthBody  # the caller's test (client.py)
        view = self.ctx.buffer
        taken = body.scan(view, 0, n)
        if taken:
            out = view[:taken]
            try:
                sent = conn.sock.send(out) if conn.tls is None else conn.tls.send(conn.sock, out)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.out += out
                return self.write_failed()
            if sent < taken:
                self.out += out[sent:]
        if taken < n:
            self.client.inbuf += view[taken:n]  # the next (pipelined) request

    def relay_body_bulk(self, body: LengthBody) -> bool:
        """Read the next part of a large request body (at most what is left of it) and move
        it to the member through the pipe; False if the session ended. The client is not read
        again until the member has taken all of it (see HttpSession)."""
        s = self.s
        relay = self.body_relay
        if relay is None:
            relay = self.body_relay = Direction()
            relay.bulk = True  # splice from the first read: we know how much is coming
        conn = self.conn
        assert conn is not None
        try:
            n = relay.read(self.client.sock, conn.sock, self.ctx.buffer, body.remaining)
        except OSError:  # either socket: a reset client gets nothing anyway
            self.write_failed()
            return not s.closed
        if n == 0:
            self.client.eof = True  # inside the body: forward_request_body says 400
        elif n > 0:
            body.remaining -= n
            self.ctx.count_bytes(True, n)
            s.set_deadline(self.ctx.http.client_timeout)
        return True

    def forward_request_body(self) -> None:
        s = self.s
        ex, inbuf = s.ex, self.client.inbuf
        body = ex.body
        if ex.request_done or body is None or self.conn is None:
            return
        if inbuf and len(self.out) < HIGH_WATER:
            if type(body) is Rechunker:
                taken = body.relay(inbuf, len(inbuf), self.out)  # re-framed (core.chunked)
            else:
                taken = body.scan(inbuf, 0, len(inbuf))
                self.out += inbuf if taken == len(inbuf) else inbuf[:taken]  # (all: no copy)
            del inbuf[:taken]
        if body.done:
            ex.request_done = True
            s.set_deadline(s.pool.response_timeout)
        elif self.client.eof:
            raise ProtocolError(400, "connection closed inside a request body")

    # --- events

    def on_event(self, mask: int) -> None:
        """The member socket's events (the general path)."""
        conn, s = self.conn, self.s
        if conn is None:
            return
        if s.state == CONNECT:
            if conn.handshaking:
                self._handshake(conn)
            elif err := conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.connect_failed(err)
            elif not introduce(conn, s.pool.settings.proxy_protocol, self.client.origin,
                               self.client.sock):
                self.connect_failed(0, "PROXY header not sent")
            elif s.pool.tls_context is not None:
                conn.start_tls(s.pool.tls_context, s.pool.server_name or conn.target.sockaddr[0])
                self._handshake(conn)
            else:
                self.attached(conn)
        else:
            if mask & WRITE and self.out:
                self.flush()
            elif mask & WRITE and self.body_relay is not None and self.body_relay.waiting():
                try:
                    self.body_relay.flush(conn.sock)
                except OSError:
                    self.write_failed()
            if mask & ~WRITE and self.conn is conn and self.wants_read():
                self._read()
        if not s.closed:
            s.advance()

    def wants_read(self) -> bool:
        s = self.s
        if self.conn is None or s.state not in (FORWARD, TUNNEL):
            return False
        if s.ex.spool is None and len(self.client.out) < HIGH_WATER:
            return True
        takes = spool_takes(s)  # the response spool (hbfork.proxy.http.spool)
        return len(self.client.out) < HIGH_WATER if takes == RELAY else takes > 0

    def _read(self) -> None:
        s, conn = self.s, self.conn
        assert conn is not None
        buffer = self.ctx.buffer
        out = self.client.out
        if (s.ex.spool is not None or len(out) >= HIGH_WATER) and spool_read(s):
            return  # read into the response spool (hbfork.proxy.http.spool)
        try:
            room = HIGH_WATER - len(out)  # a slow reader holds ~HIGH_WATER at most (no max())
            n = conn.sock.recv_into(buffer, read_size(
                s.ex, self.client.sock, len(out), room if room > 4096 else 4096, len(buffer)))
        except WOULD_BLOCK:
            return
        except OSError:
            n = 0
        if n == 0:
            return self.closed()
        ex = s.ex
        if type(ex.response_body) in DIRECT_BODIES and s.state == FORWARD and \
                not self.inbuf and not self.client.out:
            s.relay.relay_response_bytes(n)
            if s.closed or self.conn is None:
                return
        else:
            self.inbuf += buffer[:n]
        if conn.tls is not None and conn.sock.pending():  # type: ignore[attr-defined]
            return self._read()  # decrypted bytes epoll cannot see
        s.set_deadline(self.ctx.http.client_timeout if s.ex.response is not None else
                       s.pool.response_timeout)

    def closed(self) -> None:
        """EOF (or an error) from the member."""
        s = self.s
        ex = s.ex
        if s.state == TUNNEL:
            self.client.out += self.inbuf
            self.inbuf.clear()
            self.release(reusable=False)
            s.state = CLOSING
            return
        if isinstance(ex.response_body, UntilClose):
            ex.response_body.done = True  # finished once its bytes have gone to the client
            return
        if ex.response is None and not self.inbuf and self._may_retry_fresh():
            # The keep-alive race: the member closed an idle connection as we reused it.
            return self._retry_fresh()
        if ex.response is None:
            if self.inbuf:
                return self.gateway_failure(MALFORMED,
                                            "the member closed the connection mid-answer")
            return self.gateway_failure(EMPTY,
                                        "the member closed the connection without answering")
        s.close()  # the head went out already: closing is the only signal left

    def flush(self) -> None:
        """Write what is queued for the member; a failure is handled (retry, 502 or close)."""
        conn = self.conn
        assert conn is not None
        try:
            if conn.tls is None:
                sent = conn.sock.send(self.out)
            else:
                sent = conn.tls.send(conn.sock, self.out)
        except BlockingIOError:
            return
        except OSError:
            return self.write_failed()
        del self.out[:sent]

    # --- failures

    def _may_retry_fresh(self) -> bool:
        """A request may be sent again only if nothing of it can have had an effect: it came on
        a reused connection, is idempotent, has no body, and was not retried already."""
        ex, conn = self.s.ex, self.conn
        request = ex.request
        return (conn is not None and conn.reused and request is not None
                and request.idempotent and not request.has_body and ex.response is None
                and not ex.fresh_retry)

    def _retry_fresh(self) -> None:
        """Send the request again: to another member when one can take it, else on a fresh
        connection to the same one (hbfork.core.retry.race_goes_elsewhere)."""
        conn, s = self.conn, self.s
        assert conn is not None
        ex = s.ex
        self.conn = None
        conn.close()  # the request stays counted in flight to the same member
        self.ctx.conn_pool.member_closed(conn.target.slot)
        self.out.clear()
        self.inbuf.clear()
        ex.fresh_retry = True
        if race_goes_elsewhere(ex.sticky_route is not None,
                               self.ctx.upstreams.has_other(s.pool, ex.tried),
                               len(ex.tried), s.pool.retries):
            ex.last_failure = (502, "the member closed the connection without answering")
            self.release(reusable=False)
            s.state = FORWARD  # between members; dispatch() decides what is next
            return s.dispatch()
        self.connect(conn.target)

    def write_failed(self) -> None:
        """The member reset the connection while we were sending the request."""
        if self._may_retry_fresh():
            return self._retry_fresh()
        if self.s.ex.response is None:
            self.gateway_failure(RESET, "the member reset the connection")
        else:
            self.s.close()

    def gateway_failure(self, kind: str, detail: str) -> None:
        """The member gave no usable answer (`kind`: hbfork.core.retry's): the detector hears
        of it, and the request goes to another member if the pool retries `kind` and the
        request is safe to replay; else the client gets the status for it (502, 504)."""
        status = gateway_status(kind)
        target = self.inflight
        retried = self.may_retry_elsewhere(kind)
        if target is not None:
            self.ctx.upstreams.observe(target, GATEWAY)
            gateway_failed(target, status, detail, retried, self.ctx.loop.now)
        if retried:
            return self.retry_elsewhere(status, detail)
        self.s.fail(status, detail)

    def may_retry_elsewhere(self, failure: str | int) -> bool:
        s = self.s
        request = s.ex.request
        return request is not None and may_retry(
            failure, s.pool.retry_on, replayable(request.idempotent, request.has_body),
            s.ex.sent_to_client, len(s.ex.tried), s.pool.retries)

    def retry_elsewhere(self, status: int, detail: str) -> None:
        """Send the request to another member (the pick avoids those tried); if none can
        take it, the client gets what this failure deserved."""
        s = self.s
        ex = s.ex
        ex.last_failure = (status, detail)
        self.release(reusable=False)
        self.out.clear()
        self.inbuf.clear()
        ex.response = ex.response_body = None
        ex.status = 0
        ex.fresh_retry = False
        s.state = FORWARD  # between members; dispatch() decides what is next
        s.dispatch()

    # --- the end

    def release(self, reusable: bool) -> None:
        """The exchange is over for this member connection: to the keep-alive pool, or
        closed."""
        if self.inflight is not None:
            self.done(0)
        relay = self.body_relay
        if relay is not None:  # a pipe per upload, not per connection (idle ones hold none)
            self.body_relay = None
            reusable = reusable and not relay.waiting()  # request bytes never sent: broken
            relay.close()
        if self.kept is not None and self.s.closed:
            self.kept = keep_private(self.ctx.loop, None, self.kept)  # the client left
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        if self.inbuf:
            # Bytes the member sent after its response (it must not): they belong to the
            # connection, which is closed (not reusable), never to the next exchange.
            self.inbuf.clear()
        if reusable and conn.private:
            self.kept = keep_private(self.ctx.loop, conn, self.kept)
        elif reusable:
            self.ctx.conn_pool.checkin(conn)
        else:
            conn.close()

    def done(self, status: int) -> None:
        """End the member's in-flight count for this request (status 0: no response); the
        status the member answered goes to the outlier detector."""
        target = self.inflight
        if target is not None:
            self.inflight = None
            upstreams = self.ctx.upstreams
            if self.conn is not None and self.conn.probe:  # before a waiter is let in
                self.conn.probe = False
                upstreams.reopening.over(target.slot, status > 0)
            upstreams.finished(target, status)
            if status:
                ex = self.s.ex
                # Sound: a request in flight to a member was dispatched to a pool (a decision
                # with a pool); no check on this per-request path (the fast path's too).
                failed = ex.decision.pool.fail_statuses  # type: ignore[union-attr]
                took = self.ctx.loop.now - ex.member_started if ex.member_started else 0.0
                upstreams.observe(target, FAILED_STATUS if status in failed else OK, took)
