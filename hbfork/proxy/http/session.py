"""HTTP mode: every request on a client connection is balanced on its own.

Theory of operation
-------------------
An HttpSession owns one client connection and, while a request is in flight, one member
connection (fresh, or taken from the worker's keep-alive pool). Requests are served one at a
time in arrival order; pipelined requests wait in the input buffer, which keeps responses in
order. Bytes move with back-pressure: a side is read only while what is queued for the other
side is below HIGH_WATER, so a slow client holds at most a buffer or two of a large response
in memory, never the response.

The session is the state machine; it is composed of parts with their own state and modules:
the `ClientConnection` (the client's socket and buffers), the `MemberLeg` (dialing, failover,
request forwarding, the member's socket and buffers), the `ResponseRelay` (the response relay,
tunnels, the end of an exchange) and, when enabled, the `FastPath` (the common exchange
straight through). Each request is a fresh `Exchange` (`ex`): the request, where it goes, the
member it went to, its timings and outcome.

States: HEAD (reading a request head) -> CONNECT (dialing a member) -> FORWARD (sending the
request, receiving the response) -> HEAD again for keep-alive, or CLOSING (flush) -> LINGER
(half-closed, discarding what the client still sends for a moment, so that unread bytes do not
make the kernel reset the connection and destroy our last response in transit) -> closed.
Upgrade requests that get 101 switch to TUNNEL, a plain byte relay. A response a slow client
reads from the response spool (hbfork.proxy.http.spool) ends in SPOOLED, its member freed.

A client that half-closes after pipelining requests gets every complete request answered: a
FIN is only taken as the end once the bytes before it are read.

Failures: a refused or timed-out connect marks the member in error and the request goes to
another member, up to `retries`. A pooled connection the member closed before answering is
retried once on a fresh connection, if the request is idempotent and has no body. Anything
else that fails before the response head reached the client is answered 502 (or 504 for a
response timeout); after that, the client connection is closed, which is the only honest
signal left. A client that stops sending its request body gets 408. A 5xx answer to a sound
request keeps the connection open for the next one.

Expect: 100-continue is answered by the proxy itself once a member connection is ready for the
body, and not forwarded: members that ignore Expect would otherwise leave the client waiting.
"""

from __future__ import annotations

import errno
import socket
import time

from hbfork.core import http11, http_heads
from hbfork.core.chunked import Rechunker
from hbfork.core.client_address import Origin
from hbfork.core.errors import ProtocolError
from hbfork.core.failures import retry_after, unavailable_answer
from hbfork.core.http11 import LengthBody
from hbfork.core.persistence import own_answer_keeps
from hbfork.core.retry import MALFORMED, TIMEOUT
from hbfork.core.tls_settings import ListenSettings
from hbfork.proxy.context import SessionContext
from hbfork.proxy.http import heartbeat_post
from hbfork.proxy.http.ajp_leg import use_leg
from hbfork.proxy.http.client import PLAIN, ClientConnection
from hbfork.proxy.http.exchange import Exchange
from hbfork.proxy.http.fast import FastPath
from hbfork.proxy.http.member import MemberLeg
from hbfork.proxy.http.parts import MemberSide
from hbfork.proxy.http.response import ResponseRelay
from hbfork.proxy.http.router import https_location
from hbfork.proxy.http.slow import PACED, buffering_step, cut_slow, pace, start_buffering
from hbfork.proxy.http.spool import wants_write
from hbfork.proxy.http.state import (
    BUFFERING,
    CLOSING,
    CONNECT,
    DRAIN_IDLE_GRACE,
    FORWARD,
    HEAD,
    QUEUED,
    RETRY_AFTER,
    TUNNEL,
)
from hbfork.proxy.loop import RDHUP, READ, WRITE
from hbfork.proxy.proxy_header import take_private
from hbfork.proxy.upstreams import NO_MEMBER, Acquired, PoolView, Unavailable, Wait

__all__ = ["PLAIN", "HttpSession"]


class HttpSession:
    __slots__ = ("client", "closed", "ctx", "drain_requested", "ex", "fast", "head_started",
                 "limit", "member", "queue_rank", "queued_at", "relay", "returning", "state",
                 "timer")

    def __init__(self, ctx: SessionContext, client: socket.socket, client_ip: str,
                 listen: ListenSettings = PLAIN, origin: Origin | None = None) -> None:
        self.ctx = ctx
        self.client = ClientConnection(self, client, client_ip, listen, origin)
        self.closed = False
        self.drain_requested = False
        self.queued_at = 0.0   # when it started waiting in the front queue (0: it does not)
        self.queue_rank = 0    # its rank there (hbfork.core.queue_order), set by the queue
        # Its connection's last exchange went well (a member's response it read without lagging:
        # response.finish): it ranks by its arrival in the queue, not queue_fresh_offset later.
        self.returning = False
        self.timer = ctx.loop.timer(self.on_deadline)
        self.head_started = ctx.loop.now  # the first byte of the head being read
        self.ex = Exchange(client_ip)
        self.member: MemberSide = MemberLeg(self)  # or its AjpLeg (ajp_leg.use_leg)
        self.client.member = self.member
        self.relay = ResponseRelay(self)
        limits = ctx.client_limits
        self.limit = limits.rate_for(self) if limits is not None else None
        fast = self.fast = FastPath(self) if ctx.http.fast_path and not listen.redirect_https \
            else None
        self.state = HEAD
        # The client's events go to the fast path's entry test first, when it runs; a member
        # connection's go to the fast path only while it carries a fast-path request.
        ctx.loop.add(self.client.fd, READ,
                     fast.on_client if fast is not None else self.client.on_event)
        self.set_deadline(ctx.http.header_timeout)

    def new_exchange(self) -> None:
        """The next request on this connection starts from nothing."""
        self.ex = Exchange(self.client.ip)
        self.head_started = self.ctx.loop.now  # a pipelined head already waits from now

    def set_deadline(self, seconds: float) -> None:
        """Time out `seconds` from now (the one timer of this session moves)."""
        loop = self.ctx.loop
        loop.set_timer(self.timer, loop.now + seconds)

    @property
    def pool(self) -> PoolView:
        """The pool serving the current request (there is one once it is dispatched)."""
        decision = self.ex.decision
        assert decision is not None and decision.pool is not None
        return decision.pool

    # --- progress

    def advance(self) -> None:
        """Make all progress the buffers allow, then set epoll interest to match."""
        try:
            self._step()
            if self.state in PACED:
                pace(self)  # the minimum rates of a slow client (hbfork.proxy.http.slow)
        except ProtocolError as err:
            if err.status == 502 and self.member.conn is not None and self.ex.response is None:
                self.member.gateway_failure(MALFORMED, err.detail)  # what the member sent
            else:
                self.fail(err.status, err.detail)
        if self.closed:
            return
        # Output is queued by the steps above and written here, so a response head and the
        # body bytes that came with it leave in one send().
        member, client = self.member, self.client
        if member.out and member.conn is not None and self.state in (FORWARD, TUNNEL):
            member.flush()
            if self.closed:
                return
        if client.out and not client.flush():
            return
        if self.state == HEAD and client.eof and not client.inbuf:
            self.state = CLOSING
        if self.state == CLOSING and not client.out:
            client.start_linger()
        if not self.closed:
            self._update_interest()

    def _step(self) -> None:
        if self.state == HEAD and self.client.inbuf:
            self.parse_head()
        if self.state == BUFFERING:
            buffering_step(self)
        while self.state == FORWARD:
            ex = self.ex
            self.member.forward_request_body()
            self.relay.process()
            if self.ex is ex:
                break  # no pipelined request started meanwhile: wait for I/O
        if self.state == TUNNEL:
            self.relay.tunnel()

    def parse_head(self) -> None:
        config, inbuf = self.ctx.http, self.client.inbuf
        start = http11.skip_empty_lines(inbuf, 0)
        if start:
            del inbuf[:start]  # else a stream of CRLFs would grow the buffer forever
            if not inbuf:
                return
        end = http11.find_head(inbuf, 0, config.max_request_line, config.max_header_size)
        if end < 0:
            if self.client.eof:
                raise ProtocolError(400, "connection closed inside a request head")
            # The whole head must arrive within header_timeout of its first byte; later bytes
            # do not extend it (slowloris sends one byte at a time). A head that arrives in
            # one read, the usual case, never needs this deadline.
            self.set_deadline(self.head_started + config.header_timeout - self.ctx.loop.now)
            return
        head = bytes(inbuf[:end])
        del inbuf[:end]
        ex = self.ex
        ex.exchange_started = time.monotonic()
        ex.request = request = http11.parse_request_head(head, self.ctx.limits)
        ex.client_ip = self.client.client_of(request)  # the real client (trusted proxies)
        ex.keep_alive = request.keep_alive
        if request.chunked:
            ex.body = Rechunker(limit=config.max_body_size)  # re-framed when forwarded
        elif request.content_length:
            ex.body = LengthBody(request.content_length)
        else:
            ex.request_done = True
        if self.client.listen.redirect_https:
            location = https_location(request, self.client.listen.https_port)
            return self.fail(301, "", (("Location", location),), sound=True)
        router = self.ctx.router
        ex.decision = decision = router.decide(request)
        if decision.beat:  # [heartbeat] http_path: answered here, or routed as any other
            ex.decision = decision = heartbeat_post.take(self, self.client, request, head)
            if decision.beat:
                return
        if self.limit is not None and (wait := self.limit.check(head)):  # not beats: above
            return self.fail(429, "too many requests", (("Retry-After", str(wait)),), sound=True)
        if decision.pool is None:
            return self.fail(decision.status, decision.detail, sound=True)
        if request.upgrade:
            request.upgrade = router.upgrade_for(decision, request.upgrade)
        if decision.pool.sticky:
            ex.sticky_route = router.sticky_route(decision, request)
        if start_buffering(self):
            return  # its body is read first (hbfork.proxy.http.slow)
        self.dispatch()

    def dispatch(self) -> None:
        """Pick a member for the current request and get a connection to it."""
        ctx, ex = self.ctx, self.ex
        pool = self.pool
        use_leg(self, pool)  # the member side that speaks the pool's protocol (HTTP, AJP)
        got = ctx.upstreams.acquire(pool, ctx.loop.now, ex.tried, ex.sticky_route,
                                    bool(self.queued_at), returning=self.returning)
        if got.sticky:
            ex.sticky_outcome = got.sticky
        if type(got) is not Acquired:
            return self._not_acquired(got, pool)
        target = got.target
        if ex.tried:
            ctx.count_retry()
        ex.tried = {*ex.tried, target.slot}
        ex.target = target
        self.member.inflight = target  # acquire() counted it in flight already
        if pool.settings.sticky_cookie:
            ex.set_cookie = ctx.router.route_cookie_for(pool, target, ex.sticky_route)
        request = ex.request
        assert request is not None
        # A request that may be replayed survives a connection the member just closed (it is
        # retried on a fresh one), so only the others pay a syscall to check it first.
        conn = None if request.upgrade else ctx.conn_pool.checkout(
            target, verify=not (request.idempotent and not request.has_body),
            tls=pool.tls_context is not None) if not pool.settings.proxy_protocol \
            else take_private(self.member, target, pool.tls_context is not None)
        if conn is not None:
            return self.member.attached(conn)
        self.member.connect(target)

    def _not_acquired(self, got: Wait | Unavailable, pool: PoolView) -> None:
        """No member for this try: wait in the queue, or answer why not."""
        if type(got) is Wait:
            self._wait(pool)
            return
        if got.reason == NO_MEMBER:
            self.ctx.count_no_member(pool)
        status, detail = unavailable_answer(got.reason, self.ex.last_failure)
        self.fail(status, detail, RETRY_AFTER if retry_after(status) else ())

    def _update_interest(self) -> None:
        loop, client, member = self.ctx.loop, self.client, self.member
        if client.wants_read():
            client.parked = False
            client_mask = READ
        elif self.state in (CONNECT, FORWARD) and not (client.eof or client.hup):
            # Left readable until the client sends something we cannot take yet (a pipelined
            # request): parking it at once would cost two epoll_ctl calls per request.
            client_mask = RDHUP if client.parked else READ
        elif self.state == QUEUED:
            client_mask = RDHUP  # only to see it leave while it waits
        else:
            client_mask = 0
        if client.out or wants_write(self.ex):  # or the response spool's bytes (spool.py)
            client_mask |= WRITE
        loop.set_mask(client.fd, client_mask)
        conn = member.conn
        if conn is not None and self.state != CONNECT:
            mask = READ if member.wants_read() else 0
            if member.out or (member.body_relay is not None and member.body_relay.waiting()):
                mask |= WRITE
            loop.set_mask(conn.fd, mask)

    # --- deadlines and the proxy's own answers

    def on_deadline(self, now: float) -> None:
        self._on_deadline()
        if not self.closed:
            self.advance()  # a 408/504 or a failover queued by the timeout goes out now

    def _on_deadline(self) -> None:
        if cut_slow(self):
            return
        state, ex = self.state, self.ex
        if state == QUEUED:
            self._queue_timed_out()
        elif state == HEAD:
            if self.client.inbuf:
                self.fail(408, "request head not received in time")
            else:
                self.close()  # an idle keep-alive connection: close quietly
        elif state == CONNECT:
            self.member.connect_failed(errno.ETIMEDOUT)
        elif state == FORWARD and ex.response is None and (ex.request_done or self.member.out):
            # The member has not answered, or stopped taking the request body.
            self.ctx.count_upstream_timeout()
            self.member.gateway_failure(TIMEOUT, "the member did not answer in time")
        elif state == FORWARD and ex.response is None:
            self.fail(408, "request body not received in time")
        else:
            self.close()  # no progress in either direction for client_timeout

    def fail(self, status: int, detail: str, extra: tuple[tuple[str, str], ...] = (),
             sound: bool = False, body: bytes | None = None) -> None:
        """Answer `status` ourselves, if the client has not seen a response head yet.
        `sound`: the request itself was fine (a route keeps it out, say), so an answer below
        500 is not a client error and the connection may carry on."""
        ex, client = self.ex, self.client
        if ex.sent_to_client:
            return self.close()
        request = ex.request
        self.member.release(reusable=False)
        # The connection can carry on only if the request was read whole and was sound.
        keep = request is not None and own_answer_keeps(
            status, sound, ex.request_done, ex.keep_alive, client.eof, bool(client.inbuf),
            self.ctx.draining or self.drain_requested)
        if status < 500 and not sound:
            self.ctx.count_client_error()
        listen = client.listen
        if listen.hsts:  # on our own answers too, as Apache's `Header always set` does
            extra = (*extra, ("Strict-Transport-Security",
                              http_heads.hsts_value(listen.hsts, listen.hsts_subdomains)))
        answer = http_heads.error_response(
            status, detail, keep_alive=keep, extra=extra,
            head_only=request is not None and request.method == b"HEAD",
            date=http_heads.http_date(time.time()), body=body)
        edge = self.ctx.router.edge
        if edge.active:  # `always` header rules and the request ID
            answer = edge.own_answer(ex, listen.address, answer, client.ip)
        client.out += answer
        ex.status = status
        ex.sent_to_client = True
        if not ex.accounted:
            ex.accounted = True
            # Named in the log even when it caused the answer without one (502, 504).
            self.ctx.request_done(ex, status, ex.target)
        if keep:
            self.new_exchange()
            self.state = HEAD
            self.idle_deadline()
            if client.inbuf:
                self.advance()
        else:
            self.state = CLOSING  # advance() flushes the answer, then lingers
            client.inbuf.clear()
            self.set_deadline(self.ctx.http.client_timeout)

    # --- waiting in the front queue (hbfork.proxy.queue) for a member with room

    def _wait(self, pool: PoolView) -> bool:
        """Every member is full: wait in the queue. False when it cannot wait (queueing off,
        or the queue full): then it was answered 503."""
        if self.queued_at:  # trying again from the queue, and still no room
            self.state = QUEUED
            return True
        if not self.ctx.enqueue(pool, self):
            why = "every member is full" if pool.queue_timeout <= 0 else "the queue is full"
            self.fail(503, why, RETRY_AFTER)
            return False
        self.state = QUEUED
        self.set_deadline(pool.queue_timeout)
        return True

    def try_dispatch(self) -> bool:
        """From the queue: try to send the request again; True when it no longer waits."""
        if self.closed or self.state != QUEUED:
            return True
        self.state = FORWARD  # between members; dispatch() decides what is next
        self.dispatch()
        if self.state == QUEUED:
            return False
        self.queued_at = 0.0
        if not self.closed:
            self.advance()
        return True

    @property
    def pinned(self) -> bool:
        """It waits for its session's own member (others may have room for other requests)."""
        return self.ex.sticky_route is not None

    def _queue_timed_out(self) -> None:
        self.ctx.leave_queue(self.pool, self, "timeout")
        self.queued_at = 0.0
        self.fail(503, "no member had room within queue_timeout", RETRY_AFTER)

    def _client_left_queue(self) -> None:
        self.ctx.leave_queue(self.pool, self, "gone")
        self.queued_at = 0.0
        self.close()

    # --- the end

    def drain(self) -> None:
        """Graceful stop: every connection closes after its current (or next) response;
        one with no request in progress closes after DRAIN_IDLE_GRACE."""
        self.drain_requested = True
        if self.state == HEAD and not self.client.inbuf:
            self.idle_deadline()

    def idle_deadline(self) -> None:
        """Between requests: wait keepalive_timeout for the next (less while draining)."""
        ctx = self.ctx
        seconds = ctx.http.keepalive_timeout
        if self.drain_requested:
            seconds = min(DRAIN_IDLE_GRACE, seconds)
        loop = ctx.loop
        loop.set_timer(self.timer, loop.now + seconds)

    def close(self) -> None:
        if self.closed:
            return
        if self.queued_at:
            self._client_left_queue()  # leaves the queue, then closes
            return
        self.closed = True
        ctx, ex = self.ctx, self.ex
        ctx.loop.cancel(self.timer)  # its heap entry may outlive us; it drops us
        if ex.spool is not None:  # the response's spool file goes (hbfork.proxy.http.spool);
            ex.bytes_to_client -= ex.spool.close()  # what never left it is not logged as sent
        self.member.release(reusable=False)
        if ex.request is not None and not ex.accounted:
            ex.accounted = True
            ctx.request_done(ex, ex.status, ex.target)
        ctx.loop.remove(self.client.fd)
        self.client.sock.close()
        ctx.session_closed(self)

