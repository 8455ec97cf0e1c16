"""The fast path of an HTTP session: the common exchange, straight through.

Most requests a front sees are the same shape: a whole GET head in one read, no body, a member
connection idle in the keep-alive pool, and a response whose head and Content-Length body come
in one read. For those, the general state machine (hbfork.proxy.http.session) costs most of
the worker's CPU in bookkeeping: a field list built and re-joined per head, buffers appended
and cut, and a dozen steps per event. Here such an exchange is two straight-line handlers, one
per event: the request is read into the worker's buffer, parsed lean (hbfork.core.lean),
routed, given a member and sent; the response is read, parsed lean, and sent to the client
with its body in one send(). What a routing decision means here (pool, header rules, request
IDs, target and Host, timeouts) is worked out once per listener and Decision
(hbfork.proxy.http.fast_plan), and the session's last head, parse and routing are reused
when the next request repeats them, so per request the path compares rather than looks up.

The FastPath's handlers are the ones the loop calls for the session's sockets; each begins
with its entry test (on_client, on_member) and otherwise passes the event to the general
path. Every later check ends in an explicit hand-over (_hand_over_request,
_hand_over_response), never in an error: the bytes read so far are given to the general path
exactly as if it had read them, and it finishes the exchange from whatever state the fast path
left, which is always one of its own (HEAD, FORWARD with the request sent). So every hard case
(pipelining, bodies, chunked, Expect, upgrades, half-closes, retries, queueing, a fresh
connect, TLS to members, sticky sessions whose member is down or busy) keeps exactly the
general path's behaviour.
"""

from __future__ import annotations

import time

from hbfork.core.errors import ProtocolError
from hbfork.core.header_plan import HeaderProgram
from hbfork.core.http11 import IDEMPOTENT, LengthBody, RequestHead
from hbfork.core.http_heads import lean_request_for_member, lean_response_for_client
from hbfork.core.outlier import FAILED_STATUS, OK
from hbfork.proxy.http.ajp_fast import forward as ajp_forward
from hbfork.proxy.http.exchange import Exchange
from hbfork.proxy.http.fast_plan import FastPlan
from hbfork.proxy.http.first_send import send_request
from hbfork.proxy.http.parts import SessionCore
from hbfork.proxy.http.router import Decision
from hbfork.proxy.http.state import CLOSING, FORWARD, HEAD, HIGH_WATER, MAX_RESPONSE_HEAD
from hbfork.proxy.loop import EPOLLIN, READ
from hbfork.proxy.tls import WOULD_BLOCK
from hbfork.proxy.upstreams import Acquired, Target

CRLF, CLOSE_END = b"\r\n", b"Connection: close\r\n\r\n"  # a client head's last lines


class FastPath:
    # The session and its parts, each one attribute away (they never change): this is the
    # hottest code of a worker, and every lookup shows in its CPU per request.
    __slots__ = ("client", "ctx", "decided", "member", "member_handler", "plan", "rate",
                 "relay", "req_lean", "routed", "ruled", "ruled_by", "ruled_from", "s")

    def __init__(self, session: SessionCore) -> None:
        self.s = session
        self.ctx = session.ctx
        self.client = session.client
        self.member = session.member
        self.relay = session.relay
        self.rate = session.limit  # per-client rate ([limits]): one shared-slot update a request
        self.member_handler = self.on_member  # bound once: it is set for every request
        # The plan of the last Decision a request of this session met (its routing repeats).
        self.decided: Decision | None = None
        self.plan: FastPlan | None = None
        self.routed: RequestHead | None = None  # the (lean) request `decided` is for
        # The last request's lean parse, and the head its request rules made of it: heads
        # repeat on a keep-alive connection, so a compare replaces a hash and a lookup in the
        # worker's caches (pure functions of the head). Only objects those caches share are
        # held: an idle connection costs no copy of a head.
        self.req_lean: tuple[RequestHead, bytes] | None = None
        self.ruled_from = b""
        self.ruled_by: HeaderProgram | None = None
        self.ruled = (b"", b"")

    # --- the request

    def on_client(self, mask: int) -> None:
        """The client socket's events: readable with no request in progress and nothing
        buffered is the fast path's; anything else the general path's."""
        client = self.client
        if mask == EPOLLIN and self.s.state == HEAD and not client.inbuf and not client.out \
                and not client.hup:
            return self._request()
        client.on_event(mask)

    def _request(self) -> None:
        s, ctx, client = self.s, self.ctx, self.client
        view = ctx.buffer
        try:
            n = client.sock.recv_into(view)
        except WOULD_BLOCK:
            return
        except OSError:
            return s.close()
        if n == 0:
            client.eof = True
            return s.advance()
        ctx.count_bytes(True, n)
        # One whole head and nothing after it (no body, no pipelined request). The ignores, no
        # check on this path: ctx.buffer views a bytearray (typeshed's memoryview.obj is a
        # Buffer), and a client with `tls` holds an ssl.SSLSocket (hbfork.proxy.tls.wrap).
        if (view.obj.find(b"\r\n\r\n", 0, n) != n - 4  # type: ignore[attr-defined]
                or n > ctx.limits.max_header_size + 4
                or (client.tls is not None and client.sock.pending())  # type: ignore[attr-defined]
                or client.lean_unsafe):  # its client is named in a header the lean parse skips
            return self._hand_over_request(n)
        head = bytes(view[:n])
        lean = self.req_lean
        # The session's last head again (keep-alive repeats): it is its forward + CRLF when
        # that kept the client's Connection (kept only with keep-alive), compared in place.
        if lean is None or not lean[0].keep_alive or len(head) != len(lean[1]) + 2 \
                or not head.startswith(lean[1]):
            lean = self.req_lean = ctx.lean.request(head)
        if lean is None:
            return self._hand_over_request(n)
        request, forward = lean
        method, target, host = request.method, request.target, request.host
        if request is self.routed:  # the same head as the last: the same routing
            decision, plan = self.decided, self.plan
        else:
            try:
                decision = ctx.router.decide_for(host, target)
            except ProtocolError:
                return self._hand_over_request(n)  # the general path answers it
            # What this decision means here, worked out once (hbfork.proxy.http.fast_plan).
            if decision is self.decided:
                plan = self.plan
            else:
                plan = self.plan = ctx.router.fast_plans.plan(client.listen.address, decision)
                self.decided = decision
            self.routed = request
        assert decision is not None
        if plan is None:
            return self._hand_over_request(n)
        pool = plan.pool
        rate = self.rate
        if rate is not None and (wait := rate.check(head)):
            rate.handed_over(wait)
            return self._hand_over_request(n)  # the general path answers the 429
        ex = s.ex
        route = ctx.router.sticky_route_lean(decision, head, target) if plan.sticky else None
        found: Target | None
        if route is not None:
            got = ctx.upstreams.acquire(pool, ctx.loop.now, None, route, False, False,
                                        s.returning)
            if type(got) is not Acquired:
                return self._not_acquired(n)
            ex.sticky_route, ex.sticky_outcome = route, got.sticky
            found = got.target
        else:
            found = ctx.upstreams.take(pool, ctx.loop.now, s.returning)  # acquire(), no route
            if found is None:
                return self._not_acquired(n)
        # From here the request is counted in flight to `found`; it is this exchange's.
        ex.exchange_started = time.monotonic()
        ex.lean_head = head
        ex.request = request
        ex.keep_alive = request.keep_alive
        ex.request_done = True
        ex.decision = decision
        ex.tried = {found.slot}
        ex.target = found
        if decision.ajp:  # its members speak AJP (hbfork.proxy.http.ajp_fast)
            return ajp_forward(s, found, head, method)
        member = self.member
        member.inflight = found
        conn = ctx.conn_pool.checkout(found, verify=method not in IDEMPOTENT)
        if conn is None:
            member.connect(found)  # dialing is the general path's (it parses the head whole)
            return s.advance()
        program = plan.program
        if program is not None:  # header rules and the request ID, on the head as bytes
            ex.headers = program
            if plan.rewrites_request:
                if forward is self.ruled_from and program is self.ruled_by:
                    forward, offered = self.ruled
                else:  # (a pure function of both: the last result is kept)
                    self.ruled_from, self.ruled_by = forward, program
                    forward, offered = self.ruled = program.request_head(forward)
                ids = plan.ids
                if ids is not None:  # EdgeHeaders.id_line(), written out
                    request_id = ex.request_id = ids.decide(offered, client.ip) if offered \
                        else ids.new()
                    forward = b"".join((forward, ids.line_start, request_id, CRLF))
        forwarded = client.forwarded if ctx.http.forwarded_headers else None
        if plan.plain and forwarded is not None and host:  # lean_request_for_member()'s case
            forward = b"".join((forward, forwarded, b"X-Forwarded-Host: ", host, b"\r\n\r\n"))
        else:
            forward = lean_request_for_member(
                forward, method, target, plan.member_target,
                None if plan.preserve_host else conn.target.address.encode(), forwarded, host)
        member.conn = conn
        s.state = FORWARD
        loop = ctx.loop
        # Its response is the fast path's to try (a HEAD's never is: it has no body to send).
        loop.handlers[conn.fd] = self.member_handler if method != b"HEAD" else member.on_event
        ex.member_started = loop.now
        loop.set_timer(s.timer, loop.now + plan.response_timeout)
        send_request(s, member, conn, loop, forward)

    def _not_acquired(self, n: int) -> None:
        """No member at once: waiting, failover or 503 are the general path's."""
        if self.rate is not None:
            self.rate.handed_over(0)  # charged already
        self._hand_over_request(n)

    def _hand_over_request(self, n: int) -> None:
        """Hand the `n` bytes just read to the general path, as if it had read them."""
        s = self.s
        s.head_started = s.ctx.loop.now
        s.client.inbuf += s.ctx.buffer[:n]
        if (s.client.tls is not None
                and s.client.sock.pending()  # type: ignore[attr-defined]  # an SSLSocket
                and not s.client.read()):
            return
        s.advance()

    # --- the response

    def on_member(self, mask: int) -> None:
        """The member socket's events: readable, a lean request sent whole and nothing of its
        response here yet is the fast path's; anything else the general path's."""
        s, member = self.s, self.member
        ex = s.ex
        # The ignore, no check on this path: a lean head comes with its lean parse (_request).
        if mask == EPOLLIN and ex.lean_head is not None and ex.response is None and \
                s.state == FORWARD and member.conn is not None and not member.inbuf and \
                not member.out and not self.client.out and \
                ex.request.method != b"HEAD":  # type: ignore[union-attr]
            return self._response()
        member.on_event(mask)

    def _response(self) -> None:
        s, member, ctx = self.s, self.member, self.ctx
        conn = member.conn
        assert conn is not None
        view = ctx.buffer
        try:
            n = conn.sock.recv_into(view, HIGH_WATER)  # what a slow reader may hold
        except WOULD_BLOCK:
            return
        except OSError:
            n = 0
        if n == 0:
            member.closed()
            if not s.closed:
                s.advance()
            return
        # (No min(): the builtin costs ~9x this comparison.)
        most = n if n < MAX_RESPONSE_HEAD else MAX_RESPONSE_HEAD
        end = view.obj.find(b"\r\n\r\n", 0, most)  # type: ignore[attr-defined]
        if end < 0:
            return self._hand_over_response(n)
        body_at = end + 4
        head = bytes(view[:body_at])
        ex = s.ex
        plan = self.plan  # the plan _request() followed for this exchange
        assert plan is not None
        if head == plan.last_head:  # the last head of this plan's members (kept on the plan)
            lean = plan.last_lean
        else:
            lean = plan.last_lean = ctx.lean.response(head, plan.mapped)
            plan.last_head, plan.last_client = head, None
        if lean is None:
            return self._hand_over_response(n)
        response, verbatim = lean
        status = response.status
        if status in plan.retry_statuses:
            return self._hand_over_response(n)  # maybe retried: the general path decides
        length = response.content_length
        assert length is not None
        have = n - body_at
        if have > length:
            return self._hand_over_response(n)  # bytes after the response: not ours to judge
        ctx.count_fast_path()
        client = self.client
        # client_keeps(), written out: the request was read whole with nothing after it (not
        # buffered), so the client's EOF ends the connection.
        ex.keep_alive = keep_alive = ex.keep_alive and not client.eof and not (
            ctx.draining or s.drain_requested)
        ex.response = response
        ex.lean_response = head
        ex.status = status
        ex.sent_to_client = True
        ex.bytes_to_client = have
        extra = client.extra_head
        if plan.rewrites_response:  # header rules, the request ID: the head rebuilt
            program = plan.program
            assert program is not None
            request_id = ex.request_id if plan.echo else b""
            out: bytes | memoryview = b"".join((
                plan.last_client or plan.client_head(head), extra,
                plan.id_start if request_id else b"", request_id, CRLF if request_id else b"",
                CRLF if keep_alive else CLOSE_END, view[body_at:n]))
        elif verbatim and keep_alive and not extra:
            out = view[:n]  # forwarded exactly as received
        else:
            out = lean_response_for_client(head, keep_alive, extra) + view[body_at:n]
        if client.tls is None:  # client.send_now(), written out
            try:
                sent = client.sock.send(out)
            except BlockingIOError:
                sent = 0
            except OSError:
                return s.close()
            ctx.count_bytes(False, sent)
        else:
            sent = client.send_now(out)
            if sent < 0:
                return
        if sent < len(out):
            client.out += out[sent:]  # the buffer is reused: what waits is copied
        if have < length:
            ex.response_body = LengthBody(length - have)
            s.set_deadline(ctx.http.client_timeout)
            return s.advance()
        # ResponseRelay.finish() (account(), MemberLeg.done() and release()) written out for
        # this case: the request was read whole, nothing of the member's came after the
        # response (no response spool: that is the general path's), and no upload relay or
        # private (PROXY header) connection is involved.
        loop = ctx.loop
        target = member.inflight
        if target is not None:
            member.inflight = None
            upstreams = ctx.upstreams
            upstreams.finished(target, status)
            upstreams.observe(target, FAILED_STATUS if status in plan.fail_statuses else OK,
                              loop.now - ex.member_started)
        ex.accounted = True
        ctx.request_done(ex, status, ex.target)
        if member.body_relay is None and not conn.private:
            member.conn = None
            if response.keep_alive:
                ctx.conn_pool.checkin(conn)
            else:
                conn.close()
                if conn.reused:  # the member closes a connection it kept (core.reopen)
                    ctx.conn_pool.member_closed(conn.target.slot)
        else:
            member.release(response.keep_alive)
        if keep_alive:  # session.new_exchange() and idle_deadline() (not draining: kept)
            s.returning = True  # read in one go: its next request ranks by its arrival
            s.ex = Exchange(client.ip)
            s.head_started = loop.now
            s.state = HEAD
            loop.set_timer(s.timer, loop.now + ctx.http.keepalive_timeout)
            if client.out or client.inbuf:  # a pipelined request is read in advance()
                return s.advance()
            loop.set_mask(client.fd, READ)
        else:
            s.state = CLOSING
            s.advance()

    def _hand_over_response(self, n: int) -> None:
        """Hand the `n` response bytes just read to the general path."""
        s, member = self.s, self.member
        member.inbuf += self.ctx.buffer[:n]
        conn = member.conn
        assert conn is not None
        self.ctx.loop.handlers[conn.fd] = member.on_event  # its next events: no entry test
        s.set_deadline(s.pool.response_timeout)
        s.advance()
