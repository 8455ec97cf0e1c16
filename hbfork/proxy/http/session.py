"""HTTP mode: every request on a client connection is balanced on its own.

Theory of operation
-------------------
An HttpSession owns one client connection and, while a request is in flight, one member
connection (fresh, or taken from the worker's keep-alive pool). Requests are served one at a
time in arrival order; pipelined requests wait in the input buffer, which keeps responses in
order. Bytes move with back-pressure: a side is read only while what is queued for the other
side is below HIGH_WATER, so a slow client holds at most a buffer or two of a large response
in memory, never the response.

The session is one state machine whose parts live in their own modules, by side: `client`
(reading requests, writing responses, interest, linger), `member` (dialing, failover, request
forwarding), `response` (the response relay, tunnels, the end of an exchange) and `failures`
(deadlines and the proxy's own answers). HttpSession puts them together and holds the
attributes that `state.ExchangeState` declares.

States: HEAD (reading a request head) -> CONNECT (dialing a member) -> FORWARD (sending the
request, receiving the response) -> HEAD again for keep-alive, or CLOSING (flush) -> LINGER
(half-closed, discarding what the client still sends for a moment, so that unread bytes do not
make the kernel reset the connection and destroy our last response in transit) -> closed.
Upgrade requests that get 101 switch to TUNNEL, a plain byte relay.

A client that half-closes after pipelining requests gets every complete request answered: a
FIN is only taken as the end once the bytes before it are read.

Failures: a refused or timed-out connect marks the member in error and the request goes to
another member, up to `retries`. A pooled connection the member closed before answering is
retried once on a fresh connection, if the request is idempotent and has no body. Anything
else that fails before the response head reached the client is answered 502 (or 504 for a
response timeout); after that, the client connection is closed, which is the only honest
signal left. A client that stops sending its request body gets 408.

Expect: 100-continue is answered by the proxy itself once a member connection is ready for the
body, and not forwarded: members that ignore Expect would otherwise leave the client waiting.
"""

from __future__ import annotations

import socket
import time

from hbfork.core import http11
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import ChunkedBody, LengthBody, RequestHead
from hbfork.core.lean import field_value
from hbfork.core.retry import MALFORMED
from hbfork.core.tls_settings import ListenSettings
from hbfork.core.uri import normalize_host
from hbfork.proxy.context import SessionContext
from hbfork.proxy.http.client import ClientSide
from hbfork.proxy.http.failures import Failures
from hbfork.proxy.http.fast import FastPath
from hbfork.proxy.http.member import MemberSide
from hbfork.proxy.http.response import ResponseRelay, hsts_line
from hbfork.proxy.http.state import (
    CLOSING,
    DRAIN_IDLE_GRACE,
    FORWARD,
    HEAD,
    LINGER_BYTES,
    RETRY_AFTER,
    TUNNEL,
)
from hbfork.proxy.http.waiting import Waiting
from hbfork.proxy.loop import READ
from hbfork.proxy.tls import TlsWriter
from hbfork.proxy.upstreams import (
    RETRIES_SPENT,
    SESSION_DOWN,
    TRIED_ALL,
    Acquired,
    PoolView,
    Target,
    Unavailable,
    Wait,
)

PLAIN = ListenSettings()  # a plain listener's options (tests and direct use)


class HttpSession(FastPath, ClientSide, MemberSide, ResponseRelay, Failures, Waiting):
    __slots__ = (
        "accounted", "body", "body_relay", "bytes_to_client", "client", "client_eof", "client_fd",
        "client_hup", "client_ip", "client_out", "client_parked", "closed", "conn", "ctx",
        "decision", "drain_requested", "exchange_started", "extra_head", "fast", "forwarded",
        "fresh_retry", "head_started", "inbuf", "inflight_target", "keep_alive", "last_failure",
        "lean_head",
        "linger_left", "linger_until", "listen", "member_handler",
        "member_started", "queued_at", "request", "request_done", "response", "response_body",
        "sent_to_client", "set_cookie", "state", "status", "sticky_outcome", "sticky_route",
        "target", "timer", "tls",
        "tried", "upbuf", "upstream_out",
    )

    def __init__(self, ctx: SessionContext, client: socket.socket, client_ip: str,
                 listen: ListenSettings = PLAIN) -> None:
        self.ctx = ctx
        self.client = client
        self.client_fd = client.fileno()
        self.client_ip = client_ip
        self.listen = listen
        self.tls = TlsWriter() if listen.tls else None
        self.inbuf = bytearray()
        self.upbuf = bytearray()
        self.client_out = bytearray()
        self.upstream_out = bytearray()
        self.body_relay = None
        self.client_eof = False
        self.client_hup = False
        self.client_parked = False
        self.linger_until = 0.0
        self.linger_left = LINGER_BYTES
        self.closed = False
        self.drain_requested = False
        self.timer = ctx.loop.timer(self.on_deadline)
        self.head_started = ctx.loop.now
        self.conn = None
        self.inflight_target = None
        self.tried = set()
        self.member_handler = self._on_member  # bound once: the fast path sets it per request
        self.fast = ctx.http.fast_path and not listen.redirect_https
        port = listen.address.port if listen.address is not None else 0
        self.forwarded = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n%s" % (
            client_ip.encode(), b"https" if self.tls is not None else b"http",
            b"X-Forwarded-Port: %d\r\n" % port if port else b"")
        self.extra_head = hsts_line(listen.hsts, listen.hsts_subdomains) + b"\r\n" \
            if listen.hsts else b""
        self._reset_exchange()
        self.state = HEAD
        ctx.loop.add(self.client_fd, READ, self._on_client)
        self._set_deadline(ctx.http.header_timeout)

    def _reset_exchange(self) -> None:
        self.request = None
        self.response = None
        self.body = None
        self.response_body = None
        self.target = None
        if self.tried:
            self.tried = set()
        self.lean_head = None
        self.request_done = False
        self.sent_to_client = False
        self.keep_alive = False
        self.status = 0
        self.bytes_to_client = 0
        self.exchange_started = 0.0
        self.member_started = 0.0
        self.fresh_retry = False
        self.last_failure = None
        self.accounted = False
        self.decision = None
        self.sticky_route = None
        self.set_cookie = None
        self.sticky_outcome = 0
        self.queued_at = 0.0
        self.head_started = self.ctx.loop.now  # a pipelined head already waits from now

    def _set_deadline(self, seconds: float) -> None:
        """Time out `seconds` from now (the one timer of this session moves)."""
        loop = self.ctx.loop
        loop.set_timer(self.timer, loop.now + seconds)

    def on_deadline(self, now: float) -> None:
        self._on_deadline()
        if not self.closed:
            self._advance()  # a 408/504 or a failover queued by the timeout goes out now

    def _advance(self) -> None:
        """Make all progress the buffers allow, then set epoll interest to match."""
        try:
            self._step()
        except ProtocolError as err:
            if err.status == 502 and self.conn is not None and self.response is None:
                self._gateway_failure(MALFORMED, 502, err.detail)  # what the member sent
            else:
                self._fail(err.status, err.detail)
        if self.closed:
            return
        # Output is queued by the steps above and written here, so a response head and the
        # body bytes that came with it leave in one send().
        if self.upstream_out and self.conn is not None and self.state in (FORWARD, TUNNEL):
            self._flush_member()
            if self.closed:
                return
        if self.client_out and not self._flush_client():
            return
        if self.state == HEAD and self.client_eof and not self.inbuf:
            self.state = CLOSING
        if self.state == CLOSING and not self.client_out:
            self._start_linger()
        if not self.closed:
            self._update_interest()

    def _step(self) -> None:
        if self.state == HEAD and self.inbuf:
            self._parse_head()
        while self.state == FORWARD:
            request = self.request
            self._forward_request_body()
            self._process_response()
            if self.request is request:
                break  # no pipelined request started meanwhile: wait for I/O
        if self.state == TUNNEL:
            self._tunnel()

    def _parse_head(self) -> None:
        config = self.ctx.http
        start = http11.skip_empty_lines(self.inbuf, 0)
        if start:
            del self.inbuf[:start]  # else a stream of CRLFs would grow the buffer forever
            if not self.inbuf:
                return
        end = http11.find_head(self.inbuf, 0, config.max_request_line,
                               config.max_header_size)
        if end < 0:
            if self.client_eof:
                raise ProtocolError(400, "connection closed inside a request head")
            # The whole head must arrive within header_timeout of its first byte; later bytes
            # do not extend it (slowloris sends one byte at a time). A head that arrives in
            # one read, the usual case, never needs this deadline.
            loop = self.ctx.loop
            self._set_deadline(self.head_started + config.header_timeout - loop.now)
            return
        head = bytes(self.inbuf[:end])
        del self.inbuf[:end]
        self.exchange_started = time.monotonic()
        self.request = request = http11.parse_request_head(head, self.ctx.limits)
        self.keep_alive = request.keep_alive
        if request.chunked:
            self.body = ChunkedBody(limit=config.max_body_size)
        elif request.content_length:
            self.body = LengthBody(request.content_length)
        else:
            self.request_done = True
        if self.listen.redirect_https:
            return self._redirect_https(request)
        router = self.ctx.router
        self.decision = decision = router.decide(request)
        if decision.pool is None:
            return self._fail(decision.status, decision.detail, sound=True)
        if request.upgrade:
            request.upgrade = router.upgrade_for(decision, request.upgrade)
        if decision.pool.sticky:
            self.sticky_route = router.sticky_route(decision, request)
        self._dispatch()

    def _dispatch(self) -> None:
        """Pick a member for the current request and get a connection to it."""
        ctx, decision = self.ctx, self.decision
        assert decision is not None and decision.pool is not None
        pool = decision.pool
        got = ctx.upstreams.acquire(pool, ctx.loop.now, self.tried, self.sticky_route,
                                    bool(self.queued_at))
        if got.sticky:
            self.sticky_outcome = got.sticky
        if type(got) is not Acquired:
            return self._not_acquired(got, pool)
        target = got.target
        if self.tried:
            ctx.count_retry()
        self.tried.add(target.slot)
        self.target = target
        self.inflight_target = target  # acquire() counted it in flight already
        if pool.settings.sticky_cookie:
            self.set_cookie = ctx.router.route_cookie_for(pool, target, self.sticky_route)
        assert self.request is not None
        request = self.request
        # A request that may be replayed survives a connection the member just closed (it is
        # retried on a fresh one), so only the others pay a syscall to check it first.
        conn = None if request.upgrade else ctx.conn_pool.checkout(
            target, verify=not (request.idempotent and not request.has_body),
            tls=pool.tls_context is not None)
        if conn is not None:
            return self._attached(conn)
        self._connect(target)

    def _not_acquired(self, got: Wait | Unavailable, pool: PoolView) -> None:
        """No member for this try: wait in the queue, or answer why not."""
        if type(got) is Wait:
            self._wait(pool)
        elif got.reason == RETRIES_SPENT:
            self._fail(502, "no member accepted the connection")
        elif got.reason == SESSION_DOWN:
            self._fail(503, "the member of this session is unavailable", RETRY_AFTER)
        elif got.reason == TRIED_ALL:
            self._fail(*(self.last_failure or (502, "no member accepted the connection")))
        else:
            self.ctx.count_no_member(pool)
            self._fail(503, "no member is available", RETRY_AFTER)

    def _redirect_https(self, request: RequestHead) -> None:
        """A plain listener with redirect_https: every request is told to come back over
        TLS (301, the same host and target)."""
        if not request.host:
            raise ProtocolError(400, "a Host header is needed to redirect to https")
        host = normalize_host(request.host.decode("latin-1"))
        port = self.listen.https_port
        authority = host if port == 443 else f"{host}:{port}"
        target = request.target.decode("latin-1")
        if not target.startswith("/"):
            target = "/" + target.split("/", 3)[-1] if target.count("/") >= 3 else "/"
        self._fail(301, "", (("Location", f"https://{authority}{target}"),), sound=True)

    def drain(self) -> None:
        """Graceful stop: every connection closes after its current (or next) response;
        one with no request in progress closes after DRAIN_IDLE_GRACE."""
        self.drain_requested = True
        if self.state == HEAD and not self.inbuf:
            self._idle_deadline()

    def _idle_deadline(self) -> None:
        http = self.ctx.http
        if self.drain_requested:
            self._set_deadline(min(DRAIN_IDLE_GRACE, http.keepalive_timeout))
        else:
            self._set_deadline(http.keepalive_timeout)

    def close(self) -> None:
        if self.closed:
            return
        if self.queued_at:
            self._client_left_queue()  # leaves the queue, then closes
            return
        self.closed = True
        self.ctx.loop.cancel(self.timer)  # its heap entry may outlive us; it drops us
        self._release_member(reusable=False)
        if self.request is not None and not self.accounted:
            self.accounted = True
            self.ctx.request_done(self, self.status, self.target)
        self.ctx.loop.remove(self.client_fd)
        self.client.close()
        self.ctx.session_closed(self)


    def log_fields(self, status: int, target: Target | None, now: float) -> dict[str, object]:
        """What the access log records of the request that just ended."""
        request = self.request
        referer = agent = b""
        line = "-"
        if request is not None:
            line = f"{request.method.decode()} {request.target.decode('latin-1')} HTTP/" \
                   f"{'1.1' if request.version == 11 else '1.0'}"
            if self.lean_head is not None:  # its fields were not parsed
                referer = field_value(self.lean_head, b"referer")
                agent = field_value(self.lean_head, b"user-agent")
            for _, lower, value in request.headers:
                if lower == b"referer":
                    referer = value
                elif lower == b"user-agent":
                    agent = value
        member_started = self.member_started
        return {
            "client": self.client_ip,
            "request": line,
            "status": status,
            "bytes": self.bytes_to_client,
            "referer": referer.decode("latin-1"),
            "user_agent": agent.decode("latin-1"),
            "member": target.address if target else "",
            "upstream_seconds": (now - member_started) if member_started and target else None,
            "total_seconds": now - (self.exchange_started or now),
        }
