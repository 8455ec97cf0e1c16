"""The member side of an HTTP session: dialing (with failover), sending the request head and
body, reading the response bytes, and what to do when the member closes or resets.

A refused or timed-out connect marks the member in error and the request goes to another
member, up to `retries`. A pooled connection the member closed before answering is retried once
on a fresh connection, if the request is idempotent and has no body (the keep-alive race).
"""

from __future__ import annotations

import errno
import socket
import ssl

from hbfork.core import http11, http_heads
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import LengthBody, UntilClose
from hbfork.core.outlier import FAILED_STATUS, GATEWAY, OK
from hbfork.core.retry import EMPTY, MALFORMED, RESET, may_retry, replayable
from hbfork.proxy.http.state import (
    CLOSING,
    CONNECT,
    FORWARD,
    HIGH_WATER,
    TUNNEL,
    ExchangeState,
)
from hbfork.proxy.keepalive import MemberConnection
from hbfork.proxy.loop import EPOLLIN, READ, WRITE
from hbfork.proxy.relay import Direction
from hbfork.proxy.tls import WOULD_BLOCK
from hbfork.proxy.upstreams import Target

# Bodies whose bytes can go from the worker's buffer straight to the other side: their
# framing needs no parsing that could fail (chunked bodies take the queued path).
DIRECT_BODIES = (LengthBody, UntilClose)


class MemberSide(ExchangeState):
    __slots__ = ()

    def _connect(self, target: Target) -> None:
        try:
            sock, err = self.ctx.connect(target)
        except OSError as error:  # out of fds or memory: our problem, not the member's
            self.ctx.resource_error(error)
            return self._fail(503, "the proxy is out of resources", (("Retry-After", "1"),))
        self.conn = MemberConnection(sock, target, self.ctx.conn_pool)
        self.state = CONNECT
        self.ctx.loop.add(self.conn.fd, WRITE, self._on_member)
        if err not in (0, errno.EINPROGRESS):
            return self._connect_failed(err)
        self._set_deadline(self.pool.connect_timeout)

    def _member_handshake(self, conn: MemberConnection) -> None:
        """TLS to the member: one step of the handshake (connect_timeout covers it all)."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.ctx.loop.set_mask(conn.fd, READ)
            return
        except ssl.SSLWantWriteError:
            self.ctx.loop.set_mask(conn.fd, WRITE)
            return
        except (ssl.SSLError, OSError) as err:
            reason = getattr(err, "reason", None) or type(err).__name__
            return self._connect_failed(0, f"TLS: {reason}")
        conn.handshaking = False
        self._attached(conn)

    def _connect_failed(self, err: int, reason: str = "") -> None:
        assert self.conn is not None
        self.ctx.member_failed(self.conn.target, reason or errno.errorcode.get(err, str(err)),
                              self.pool.retry_ms)
        self._member_done(0)  # it took nothing: no longer in flight there
        self.conn.close()
        self.conn = None
        self.state = FORWARD  # between members; _dispatch decides what is next
        self._dispatch()

    def _attached(self, conn: MemberConnection) -> None:
        """`conn` is connected: send the request head (and the body bytes already here)."""
        ctx = self.ctx
        if self.lean_head is not None:  # a fast-path request: the head is rebuilt in full
            self.request = http11.parse_request_head(self.lean_head, ctx.limits)
            self.lean_head = None
        assert self.request is not None
        self.conn = conn
        self.state = FORWARD
        ctx.loop.handlers[conn.fd] = self._on_member
        self.member_started = ctx.loop.now
        decision = self.decision
        assert decision is not None
        self.upstream_out += http_heads.request_head_for_member(
            self.request, self.client_ip, ctx.http.forwarded_headers,
            b"https" if self.tls is not None else b"http", _authority(conn.target),
            decision.target or None, not decision.preserve_host, self.listen.address.port
            if self.listen.address is not None else 0)
        if self.request.expect_continue and not self.request_done and not self.inbuf:
            # We answer the expectation ourselves (and do not forward it), now that a member
            # is ready to take the body: members that ignore Expect would make the client wait.
            self._to_client(http_heads.CONTINUE)
        # Until the body is all here we wait on the client, not the member.
        self._set_deadline(self.pool.response_timeout if self.request_done
                           else ctx.http.client_timeout)

    def _relay_request_bytes(self, n: int) -> None:
        """Request body bytes just read into the worker's buffer go straight to the member,
        nothing being queued before them (no copy into inbuf and upstream_out)."""
        conn, body = self.conn, self.body
        assert conn is not None and body is not None
        view = self.ctx.buffer
        taken = body.scan(view, 0, n)
        if taken:
            out = view[:taken]
            try:
                sent = conn.sock.send(out) if conn.tls is None else conn.tls.send(conn.sock, out)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.upstream_out += out
                return self._member_write_failed()
            if sent < taken:
                self.upstream_out += out[sent:]
        if taken < n:
            self.inbuf += view[taken:n]  # the next (pipelined) request

    def _relay_body_bulk(self, body: LengthBody) -> bool:
        """Read the next part of a large request body (at most what is left of it) and move
        it to the member through the session's pipe; False if the session ended. The client
        is not read again until the member has taken all of it (see _wants_client_read)."""
        relay = self.body_relay
        if relay is None:
            relay = self.body_relay = Direction()
            relay.bulk = True  # splice from the first read: we know how much is coming
        conn = self.conn
        assert conn is not None
        try:
            n = relay.read(self.client, conn.sock, self.ctx.buffer, body.remaining)
        except OSError:  # either socket: a reset client gets nothing anyway
            self._member_write_failed()
            return not self.closed
        if n == 0:
            self.client_eof = True  # inside the body: _forward_request_body says 400
        elif n > 0:
            body.remaining -= n
            self.ctx.count_bytes(True, n)
            self._set_deadline(self.ctx.http.client_timeout)
        return True

    def _flush_body_relay(self, relay: Direction) -> None:
        assert self.conn is not None
        try:
            relay.flush(self.conn.sock)
        except OSError:
            self._member_write_failed()

    def _forward_request_body(self) -> None:
        if self.request_done or self.body is None or self.conn is None:
            return
        if self.inbuf and len(self.upstream_out) < HIGH_WATER:
            taken = self.body.scan(self.inbuf, 0, len(self.inbuf))
            self.upstream_out += self.inbuf[:taken]
            del self.inbuf[:taken]
        if self.body.done:
            self.request_done = True
            self._set_deadline(self.pool.response_timeout)
        elif self.client_eof:
            raise ProtocolError(400, "connection closed inside a request body")

    def _on_member(self, mask: int) -> None:
        conn = self.conn
        if conn is None:
            return
        if mask == EPOLLIN and self.lean_head is not None and self.state == FORWARD and \
                self.response is None and not self.upbuf and not self.upstream_out and \
                not self.client_out and self.request.method != b"HEAD":  # type: ignore[union-attr]
            return self._fast_response()
        if self.state == CONNECT:
            if conn.handshaking:
                self._member_handshake(conn)
            elif err := conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._connect_failed(err)
            elif self.pool.tls_context is not None:
                conn.start_tls(self.pool.tls_context,
                               self.pool.server_name or conn.target.sockaddr[0])
                self._member_handshake(conn)
            else:
                self._attached(conn)
        else:
            if mask & WRITE and self.upstream_out:
                self._flush_member()
            elif mask & WRITE and self.body_relay is not None and self.body_relay.waiting():
                self._flush_body_relay(self.body_relay)
            if mask & ~WRITE and self.conn is conn and self._wants_member_read():
                self._read_member()
        if not self.closed:
            self._advance()

    def _wants_member_read(self) -> bool:
        if self.conn is None or self.state not in (FORWARD, TUNNEL):
            return False
        return len(self.client_out) < HIGH_WATER

    def _read_member(self) -> None:
        assert self.conn is not None
        buffer = self.ctx.buffer
        try:
            n = self.conn.sock.recv_into(buffer)
        except WOULD_BLOCK:
            return
        except OSError:
            n = 0
        if n == 0:
            return self._member_closed()
        if type(self.response_body) in DIRECT_BODIES and self.state == FORWARD and \
                not self.upbuf and not self.client_out:
            self._relay_response_bytes(n)
            if self.closed or self.conn is None:
                return
        else:
            self.upbuf += buffer[:n]
        if self.conn.tls is not None and self.conn.sock.pending():
            return self._read_member()  # decrypted bytes epoll cannot see
        self._set_deadline(self.ctx.http.client_timeout
                           if self.response is not None else
                           self.pool.response_timeout)

    def _member_closed(self) -> None:
        """EOF (or an error) from the member."""
        conn = self.conn
        assert conn is not None
        if self.state == TUNNEL:
            self.client_out += self.upbuf
            self.upbuf.clear()
            self._release_member(reusable=False)
            self.state = CLOSING
            return
        if isinstance(self.response_body, UntilClose):
            self.response_body.done = True  # finished once upbuf has gone to the client
            return
        if self.response is None and not self.upbuf and self._may_retry_fresh():
            # The keep-alive race: the member closed an idle connection as we reused it.
            return self._retry_fresh()
        if self.response is None:
            if self.upbuf:
                return self._gateway_failure(MALFORMED, 502,
                                             "the member closed the connection mid-answer")
            return self._gateway_failure(EMPTY, 502,
                                         "the member closed the connection without answering")
        self.close()  # the head went out already: closing is the only signal left

    def _may_retry_fresh(self) -> bool:
        """A request may be sent again only if nothing of it can have had an effect: it came on
        a reused connection, is idempotent, has no body, and was not retried already."""
        request, conn = self.request, self.conn
        return (conn is not None and conn.reused and request is not None
                and request.idempotent and not request.has_body and self.response is None
                and not self.fresh_retry)

    def _retry_fresh(self) -> None:
        conn = self.conn
        assert conn is not None
        target = conn.target
        self.conn = None
        conn.close()  # the request stays counted in flight to the same member
        self.upstream_out.clear()
        self.upbuf.clear()
        self.fresh_retry = True
        self._connect(target)

    def _flush_member(self) -> None:
        """Write what is queued for the member; a failure is handled (retry, 502 or close)."""
        conn = self.conn
        assert conn is not None
        try:
            if conn.tls is None:
                sent = conn.sock.send(self.upstream_out)
            else:
                sent = conn.tls.send(conn.sock, self.upstream_out)
        except BlockingIOError:
            return
        except OSError:
            return self._member_write_failed()
        del self.upstream_out[:sent]

    def _member_write_failed(self) -> None:
        """The member reset the connection while we were sending the request."""
        if self._may_retry_fresh():
            return self._retry_fresh()
        if self.response is None:
            self._gateway_failure(RESET, 502, "the member reset the connection")
        else:
            self.close()

    def _gateway_failure(self, kind: str, status: int, detail: str) -> None:
        """The member gave no usable answer (`kind`: hbfork.core.retry's): the detector hears
        of it, and the request goes to another member if the pool retries `kind` and the
        request is safe to replay; else the client gets `status`."""
        target = self.inflight_target
        if target is not None:
            self.ctx.upstreams.observe(target, GATEWAY)
        if self._may_retry_elsewhere(kind):
            return self._retry_elsewhere(status, detail)
        self._fail(status, detail)

    def _may_retry_elsewhere(self, failure: str | int) -> bool:
        request = self.request
        return request is not None and may_retry(
            failure, self.pool.retry_on, replayable(request.idempotent, request.has_body),
            self.sent_to_client, len(self.tried), self.pool.retries)

    def _retry_elsewhere(self, status: int, detail: str) -> None:
        """Send the request to another member (the pick avoids those tried); if none can
        take it, the client gets what this failure deserved."""
        self.last_failure = (status, detail)
        self._release_member(reusable=False)
        self.upstream_out.clear()
        self.upbuf.clear()
        self.response = self.response_body = None
        self.status = 0
        self.fresh_retry = False
        self.state = FORWARD  # between members; _dispatch decides what is next
        self._dispatch()

    def _release_member(self, reusable: bool) -> None:
        self._member_done(0)
        relay = self.body_relay
        if relay is not None:  # a pipe per upload, not per connection (idle ones hold none)
            self.body_relay = None
            reusable = reusable and not relay.waiting()  # request bytes never sent: broken
            relay.close()
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        if self.upbuf:
            # Bytes the member sent after its response (it must not): they belong to the
            # connection, which is closed (not reusable), never to the next exchange.
            self.upbuf.clear()
        if reusable:
            self.ctx.conn_pool.checkin(conn)
        else:
            conn.close()

    def _member_done(self, status: int) -> None:
        """End the member's in-flight count for this request (status 0: no response); the
        status the member answered goes to the outlier detector."""
        target = self.inflight_target
        if target is not None:
            self.inflight_target = None
            upstreams = self.ctx.upstreams
            upstreams.finished(target, status)
            if status:
                upstreams.observe(target, FAILED_STATUS if status in
                                  self.decision.pool.fail_statuses else OK)  # type: ignore


def _authority(target: Target) -> bytes:
    """host:port of a member, for the Host header of a request that came without one."""
    return target.address.encode()
