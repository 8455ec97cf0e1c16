"""The member side of an HTTP session for a pool whose members speak AJP/1.3 (`protocol =
"ajp"`; Apache's ajp:// members, Tomcat's AJP connector).

An AjpLeg is a MemberLeg (dialing, failover, outlier reports, retries and the keep-alive pool
are the same) whose wire is AJP: the request goes as one FORWARD_REQUEST (the client's address
and port, whether it came over TLS, the pool's `ajp_secret`, the query string), its body in data
packets — the first unasked when the body has a Content-Length, every other one only when the
container asks for it (GET_BODY_CHUNK), an empty one when the body is over; a chunked body is
de-chunked and sent the same way, nothing of it unasked (as mod_proxy_ajp does). The container's
packets are turned into an HTTP/1.1 response for the session's ResponseRelay
(hbfork.core.ajp_http), which relays it with its usual back-pressure; END_RESPONSE decides
whether the connection goes back to the pool. A pooled connection is checked with CPING before
it carries a request when the pool has `ajp_ping`; no CPONG in time: it is closed and the
request goes on a fresh connection.

The session uses its HTTP leg (MemberLeg) unless the request's pool speaks AJP: use_leg() swaps
the leg in at dispatch, and the AjpLeg gives the session back its HTTP leg when it is released
(the fast path knows only that one); the HTTP leg keeps the AjpLeg (`spare`) for the next. The
fast path's requests to an AJP pool are its `fast` part's (hbfork.proxy.http.ajp_fast), which
falls back on this leg for anything but the common exchange.
"""

from __future__ import annotations

from typing import Protocol

from hbfork.core import ajp, http11, http_heads
from hbfork.core.ajp_http import ResponseFramer, request_fields, server_name
from hbfork.core.chunked import ChunkedBody
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import LengthBody
from hbfork.core.retry import MALFORMED
from hbfork.proxy.http.member import MemberLeg
from hbfork.proxy.http.parts import MemberSide, SessionCore
from hbfork.proxy.http.state import FORWARD, HIGH_WATER
from hbfork.proxy.keepalive import MemberConnection
from hbfork.proxy.loop import Timer
from hbfork.proxy.tls import WOULD_BLOCK
from hbfork.proxy.upstreams import PoolView, Target


def use_leg(session: SessionCore, pool: PoolView) -> None:
    """Before a request goes to `pool`'s members: the leg that speaks their protocol."""
    member = session.member
    wants_ajp = pool.settings.protocol == "ajp"
    if wants_ajp == (type(member) is AjpLeg):
        return
    if wants_ajp:
        leg = member.spare
        if leg is None:
            leg = member.spare = AjpLeg(session, member)
        _install(session, leg)
    else:  # an AjpLeg left in place (it gives the HTTP leg back when released)
        assert isinstance(member, AjpLeg)
        _install(session, member.http)


def _install(session: SessionCore, leg: MemberSide) -> None:
    session.member = leg
    session.client.member = leg
    session.relay.member = leg


class FastSide(Protocol):
    """The AJP fast path's part of a leg (hbfork.proxy.http.ajp_fast.AjpFast)."""

    def forward(self, found: Target, head: bytes, method: bytes) -> None: ...


class AjpLeg(MemberLeg):
    __slots__ = ("client_port", "decoder", "fast", "framer", "held", "http", "packet_size",
                 "pending", "ping_timer", "pinging")

    def __init__(self, session: SessionCore, http: MemberSide) -> None:
        super().__init__(session)
        self.http = http  # the session's own leg, given back on release
        self.packet_size = ajp.DEFAULT_PACKET_SIZE
        self.decoder = ajp.Decoder()
        self.framer = ResponseFramer(False)
        self.pending = bytearray()  # request body bytes (de-chunked) not yet sent
        self.pinging = False
        self.ping_timer: Timer | None = None
        self.client_port = -1  # not looked up yet
        # The fast path's (hbfork.proxy.http.ajp_fast): its handlers for this leg, and the
        # beginning of an answer it holds until the rest comes.
        self.fast: FastSide | None = None
        self.held = bytearray()

    # --- the request

    def attached(self, conn: MemberConnection) -> None:
        s = self.s
        self.conn = conn
        s.state = FORWARD
        self.ctx.loop.handlers[conn.fd] = self.on_event
        settings = s.pool.settings
        self.packet_size = settings.ajp_packet_size
        self.decoder = ajp.Decoder(self.packet_size)
        if conn.reused and settings.ajp_ping > 0:
            self.pinging = True
            self.framer = ResponseFramer(False)
            self.out += ajp.CPING
            loop = self.ctx.loop
            if self.ping_timer is None:
                self.ping_timer = loop.timer(self._ping_timed_out)
            loop.set_timer(self.ping_timer, loop.now + settings.ajp_ping)
            return
        self._send_request()

    def _send_request(self) -> None:
        s = self.s
        ctx, ex, client, conn = self.ctx, s.ex, self.client, self.conn
        assert conn is not None
        if ex.lean_head is not None:
            ex.request = http11.parse_request_head(ex.lean_head, ctx.limits)
            ex.lean_head = None
        request, decision = ex.request, ex.decision
        assert request is not None and decision is not None
        ex.member_started = ctx.loop.now
        settings = s.pool.settings
        listen = client.listen
        if ctx.router.edge.active:  # header rules, the request ID (hbfork.proxy.http.headers)
            request = ctx.router.edge.request_for_member(ex, listen.address, request, client.ip)
        port = listen.address.port if listen.address is not None else 0
        forward = ajp.Forward(
            remote_addr=client.ip.encode(),
            server_name=server_name(request.host, conn.target.address.encode()),
            server_port=port, is_ssl=client.tls is not None,
            secret=settings.ajp_secret.encode(), remote_port=self.remote_port(),
            protocol=b"HTTP/1.1" if request.version == 11 else b"HTTP/1.0")
        fields = request_fields(request, None if decision.preserve_host
                                else conn.target.address.encode())
        try:
            self.out += ajp.forward_request(request.method, decision.target or request.target,
                                            fields, forward, self.packet_size)
        except ajp.AjpError as err:  # the member never saw it: not its failure
            return s.fail(431, str(err))
        self.framer = ResponseFramer(request.method == b"HEAD")
        body = ex.body
        if type(body) is ChunkedBody and not body.decode and not body.total:
            ex.body = ChunkedBody(limit=body.limit, decode=True)
        elif type(body) is LengthBody:
            self.framer.asked = ajp.body_room(self.packet_size)  # the first packet, unasked
        if request.expect_continue and not ex.request_done and not client.inbuf:
            client.out += http_heads.CONTINUE
        s.set_deadline(s.pool.response_timeout if ex.request_done else ctx.http.client_timeout)

    def remote_port(self) -> int:
        if self.client_port < 0:  # once per client connection
            try:
                self.client_port = int(self.client.sock.getpeername()[1])
            except (OSError, IndexError, TypeError):
                self.client_port = 0
        return self.client_port

    # --- the request body: only as the container asks for it

    def body_splices(self) -> bool:
        return False

    def takes_body(self) -> bool:
        return len(self.out) + len(self.pending) < HIGH_WATER

    def relay_request_bytes(self, n: int) -> None:
        self.client.inbuf += self.ctx.buffer[:n]  # framed by forward_request_body

    def relay_body_bulk(self, body: LengthBody) -> bool:
        return True  # never: body_splices() is False

    def forward_request_body(self) -> None:
        s = self.s
        ex, inbuf = s.ex, self.client.inbuf
        body = ex.body
        if self.conn is None or self.pinging:
            return
        if body is not None and not ex.request_done and inbuf and \
                len(self.pending) < HIGH_WATER:
            taken = body.scan(inbuf, 0, len(inbuf))
            if isinstance(body, ChunkedBody):  # the session's are Rechunkers (decode=True)
                for start, end in body.pieces:
                    self.pending += inbuf[start:end]
            else:
                self.pending += inbuf[:taken]
            del inbuf[:taken]
            if body.done:
                ex.request_done = True
                s.set_deadline(s.pool.response_timeout)
            elif self.client.eof:
                raise ProtocolError(400, "connection closed inside a request body")
        framer = self.framer
        if framer.asked is None or framer.ended:
            return
        if self.pending:
            room = ajp.body_room(self.packet_size, framer.asked)
            piece = self.pending[:room]
            if piece:
                del self.pending[:len(piece)]
                self.out += ajp.body_packet(piece)
                framer.asked = None
        elif ex.request_done:
            self.out += ajp.END_OF_BODY  # asked for more than there is (or for none): the end
            framer.asked = None

    # --- the container's packets

    def _read(self) -> None:
        conn = self.conn
        assert conn is not None
        buffer = self.ctx.buffer
        try:
            n = conn.sock.recv_into(buffer)
        except WOULD_BLOCK:
            return
        except OSError:
            n = 0
        if n == 0:
            return self.closed()
        self.took(buffer[:n])

    def took(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes read from the container."""
        s = self.s
        try:
            data = self.framer.feed(self.decoder.feed(data))
        except ajp.AjpError as err:
            return self._malformed(str(err))
        if self.framer.pong:
            self.framer.pong = False
            if not self.pinging:
                return self._malformed("CPONG without CPING")
            self._pong()
        self.inbuf += data
        s.set_deadline(self.ctx.http.client_timeout if s.ex.response is not None else
                       s.pool.response_timeout)

    def _malformed(self, detail: str) -> None:
        self.framer.reuse = False
        if self.s.ex.sent_to_client:
            self.s.close()
        else:
            self.gateway_failure(MALFORMED, f"AJP: {detail}")

    def closed(self) -> None:
        if self.framer.ended:
            self.framer.reuse = False  # all is here; the relay finishes the response
            return
        if self.pinging:
            return self._ping_failed()
        if not self.s.ex.sent_to_client and self.framer.mode:  # a head came (or was held)
            return self.gateway_failure(MALFORMED, "the member closed the connection "
                                                   "mid-answer")
        super().closed()

    # --- CPING before reuse

    def _pong(self) -> None:
        self.pinging = False
        if self.ping_timer is not None:
            self.ctx.loop.cancel(self.ping_timer)
        self._send_request()

    def _ping_timed_out(self, now: float) -> None:
        if self.pinging and not self.s.closed:
            self._ping_failed()
            if not self.s.closed:
                self.s.advance()

    def _ping_failed(self) -> None:
        """No CPONG: the pooled connection is dead; a fresh one takes the request."""
        self.pinging = False
        conn = self.conn
        assert conn is not None
        self.conn = None
        conn.close()
        self.out.clear()
        self.inbuf.clear()
        self.connect(conn.target)

    # --- the end

    def release(self, reusable: bool) -> None:
        framer = self.framer
        reusable = reusable and framer.ended and framer.reuse and not self.decoder.buffer \
            and framer.asked is None and not self.pinging
        if self.ping_timer is not None:
            self.ctx.loop.cancel(self.ping_timer)
        self.pinging = False
        super().release(reusable)
        self.out.clear()  # whatever was not sent belonged to that connection
        self.pending.clear()
        self.held.clear()  # (the fast path's: an answer that will not end here)
        if framer.mode or framer.bodiless_request or framer.pong or framer.asked is not None:
            self.framer = ResponseFramer(False)
        else:  # never fed (the fast path's answers): as good as new once its end is unset
            framer.ended = framer.reuse = False
        if self.s.member is self:
            _install(self.s, self.http)
