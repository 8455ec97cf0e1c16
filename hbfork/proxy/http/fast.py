"""The fast path of an HTTP session: the common exchange, straight through.

Most requests a front sees are the same shape: a whole GET head in one read, no body, a member
connection idle in the keep-alive pool, and a response whose head and Content-Length body come
in one read. For those, the general state machine (hbfork.proxy.http.session) costs most of
the worker's CPU in bookkeeping: a field list built and re-joined per head, buffers appended
and cut, and a dozen steps per event. Here such an exchange is two straight-line handlers, one
per event: the request is read into the worker's buffer, parsed lean (hbfork.core.lean),
routed, picked and sent; the response is read, parsed lean, and sent to the client with its
body in one send().

Every check fails over to the general path, never to an error: the bytes read so far are handed
to it exactly as if it had read them, and it finishes the exchange from whatever state the
fast path left, which is always one of its own (HEAD, FORWARD with the request sent). So every
hard case (pipelining, bodies, chunked, Expect, upgrades, half-closes, retries, queueing, a
fresh connect, TLS to members, sticky sessions) keeps exactly the general path's behaviour.
"""

from __future__ import annotations

import time

from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import IDEMPOTENT, LengthBody
from hbfork.core.lean import replace_host, without_hop_fields
from hbfork.proxy.http.state import FORWARD, HEAD, MAX_RESPONSE_HEAD, ExchangeState
from hbfork.proxy.loop import READ, WRITE
from hbfork.proxy.tls import WOULD_BLOCK
from hbfork.proxy.upstreams import Acquired

KEEP_END, CLOSE_END = b"\r\n", b"Connection: close\r\n\r\n"


class FastPath(ExchangeState):
    __slots__ = ()

    # --- the request

    def _fast_request(self) -> None:
        """The client is readable, no request is in progress and nothing is buffered."""
        ctx = self.ctx
        view = ctx.buffer
        try:
            n = self.client.recv_into(view)
        except WOULD_BLOCK:
            return
        except OSError:
            return self.close()
        if n == 0:
            self.client_eof = True
            return self._advance()
        ctx.count_bytes(True, n)
        # One whole head and nothing after it (no body, no pipelined request).
        if view.obj.find(b"\r\n\r\n", 0, n) != n - 4 or n > ctx.limits.max_header_size + 4 or \
                (self.tls is not None and self.client.pending()):
            return self._read_slowly(n)
        head = bytes(view[:n])
        lean = ctx.lean.request(head)
        if lean is None:
            return self._read_slowly(n)
        request, forward = lean
        method, target, host = request.method, request.target, request.host
        try:
            decision = ctx.router.decide_for(host, target)
        except ProtocolError:
            return self._read_slowly(n)  # the general path answers it
        pool = decision.pool
        if pool is None or not decision.fast or pool.tls_context is not None:
            return self._read_slowly(n)
        route = ctx.router.sticky_route_lean(decision, head, target) if pool.sticky else None
        got = ctx.upstreams.acquire(pool, ctx.loop.now, None, route, False, False)
        if type(got) is not Acquired:
            return self._read_slowly(n)  # waiting, failover or 503: the general path's
        found = got.target
        self.sticky_route, self.sticky_outcome = route, got.sticky
        # From here the request is counted in flight to `found`; it is this session's.
        self.exchange_started = time.monotonic()
        self.lean_head = head
        self.request = request
        self.keep_alive = request.keep_alive
        self.request_done = True
        self.decision = decision
        self.tried.add(found.slot)
        self.target = self.inflight_target = found
        conn = ctx.conn_pool.checkout(found, verify=method not in IDEMPOTENT)
        if conn is None:
            self._connect(found)  # dialing is the general path's (it parses the head whole)
            return self._advance()
        if decision.target:
            forward = method + b" " + decision.target + forward[len(method) + 1 + len(target):]
        if not decision.preserve_host:
            forward = replace_host(forward, conn.target.address.encode())
        if ctx.http.forwarded_headers:
            forward += self.forwarded + (b"X-Forwarded-Host: " + host + b"\r\n\r\n" if host
                                         else b"\r\n")
        else:
            forward += b"\r\n"
        self.conn = conn
        self.state = FORWARD
        loop = ctx.loop
        loop.handlers[conn.fd] = self.member_handler
        self.member_started = loop.now
        loop.set_timer(self.timer, loop.now + pool.response_timeout)
        try:
            sent = conn.sock.send(forward)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.upstream_out += forward
            self._member_write_failed()  # a retry on a fresh connection, or a 502
            return self._advance()
        if sent < len(forward):
            self.upstream_out += memoryview(forward)[sent:]
            loop.set_mask(conn.fd, READ | WRITE)

    def _read_slowly(self, n: int) -> None:
        """Hand the `n` bytes just read to the general path, as if it had read them."""
        self.head_started = self.ctx.loop.now
        self.inbuf += self.ctx.buffer[:n]
        if self.tls is not None and self.client.pending() and not self._read_client():
            return
        self._advance()

    # --- the response

    def _fast_response(self) -> None:
        """The member is readable; a lean request was sent whole and nothing of the response
        has arrived yet."""
        conn = self.conn
        assert conn is not None
        ctx = self.ctx
        view = ctx.buffer
        try:
            n = conn.sock.recv_into(view)
        except WOULD_BLOCK:
            return
        except OSError:
            n = 0
        if n == 0:
            self._member_closed()
            if not self.closed:
                self._advance()
            return
        end = view.obj.find(b"\r\n\r\n", 0, min(n, MAX_RESPONSE_HEAD))
        if end < 0:
            return self._member_read_slowly(n)
        body_at = end + 4
        head = bytes(view[:body_at])
        decision = self.decision
        assert decision is not None
        lean = ctx.lean.response(head, decision.reverse is not None)
        if lean is None:
            return self._member_read_slowly(n)
        response, verbatim = lean
        if response.status in decision.pool.retry_statuses:  # type: ignore[union-attr]
            return self._member_read_slowly(n)  # maybe retried: the general path decides
        length = response.content_length
        assert length is not None
        have = n - body_at
        if have > length:
            return self._member_read_slowly(n)  # bytes after the response: not ours to judge
        ctx.count_fast_path()
        keep_alive = (self.keep_alive and not self.client_eof and not ctx.draining
                      and not self.drain_requested)
        self.keep_alive = keep_alive
        self.response = response
        self.status = response.status
        self.sent_to_client = True
        self.bytes_to_client = have
        extra = self.extra_head
        if verbatim and keep_alive and not extra:
            out: bytes | memoryview = view[:n]  # forwarded exactly as received
        else:
            out = without_hop_fields(head) + extra + (KEEP_END if keep_alive else CLOSE_END) \
                + view[body_at:n]
        try:
            sent = self.client.send(out) if self.tls is None else self.tls.send(self.client, out)
        except BlockingIOError:
            sent = 0
        except OSError:
            return self.close()
        ctx.count_bytes(False, sent)
        if sent < len(out):
            self.client_out += out[sent:]  # the buffer is reused: what waits is copied
        if have < length:
            self.response_body = LengthBody(length - have)
            self._set_deadline(ctx.http.client_timeout)
            return self._advance()
        self._finish_exchange()
        if self.state != HEAD or self.client_out or self.inbuf:
            return self._advance()
        ctx.loop.set_mask(self.client_fd, READ)

    def _member_read_slowly(self, n: int) -> None:
        """Hand the `n` response bytes just read to the general path."""
        self.upbuf += self.ctx.buffer[:n]
        self._set_deadline(self.pool.response_timeout)
        self._advance()
