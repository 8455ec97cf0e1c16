"""The fast path of an AJP pool's exchange (hbfork.proxy.http.fast for AJP members).

The common AJP exchange is as plain as the common HTTP one: a GET whose whole head came in one
read, an idle connection to the container in the keep-alive pool, and an answer (SEND_HEADERS,
a body packet or a few, END_RESPONSE) that comes in one read. For those the general AJP leg
(hbfork.proxy.http.ajp_leg) parses the head whole, encodes each field, decodes each packet into
an event, writes an HTTP head that the session's relay parses again, and relays body and end in
steps: three times the CPU per request of Apache's mod_proxy_ajp. Here such an exchange is two
straight-line handlers, as in the HTTP fast path:

- the request: the FastPath reads, lean-parses, routes and picks as for HTTP, then hands the
  request to forward(), which writes the FORWARD_REQUEST in one send: its parts are what the
  worker made of the same head before (hbfork.core.ajp_lean), joined with this client's own
  address and port;
- the response: one read; if it holds a whole response of the common shape with a head the
  worker has written for a client before, the client gets head and body in one send and the
  connection goes back to the pool at once.

Anything else goes to the general AJP leg exactly as if it had done the work so far: a fresh
connection to dial, a CPING to send first (`ajp_ping` on a reused connection), header rules or
a request ID, a head its parse refuses (forward() calls its attached()); a response in more
than one read, with a body of another shape, a status the pool retries, a HEAD's, one for a
route with ProxyPassReverse (the bytes read go through its decoder and framer: took()).

A session's AjpLeg gets its AjpFast (the fast path's handlers, and the FORWARD_REQUESTs made
for its client) with its first fast-path request.
"""

from __future__ import annotations

from hbfork.core.ajp import AjpError, Decoder, client_part, port_part
from hbfork.core.ajp_http import ResponseFramer
from hbfork.core.ajp_lean import AjpLeanCache, RequestParts, response_prefix, split_response
from hbfork.core.http11 import IDEMPOTENT
from hbfork.core.persistence import client_keeps
from hbfork.proxy.http.ajp_leg import AjpLeg, use_leg
from hbfork.proxy.http.first_send import send_request
from hbfork.proxy.http.parts import SessionCore
from hbfork.proxy.http.state import FORWARD, HEAD, HIGH_WATER
from hbfork.proxy.loop import EPOLLIN, READ
from hbfork.proxy.tls import WOULD_BLOCK
from hbfork.proxy.upstreams import Target

CACHE = AjpLeanCache()  # the worker's (each forked worker has its own)
KEEP, CLOSE = b"\r\n", b"Connection: close\r\n\r\n"
HELD_MAX = 16384  # the most of an answer held for the rest to come (larger: the general path)
SESSION_PACKETS = 8  # FORWARD_REQUESTs a session keeps for its client's repeated requests


def forward(session: SessionCore, found: Target, head: bytes, method: bytes) -> None:
    """Send a FastPath request to an AJP pool's member `found` (its exchange is set up and
    counted in flight there; FastPath._request)."""
    decision = session.ex.decision
    assert decision is not None and decision.pool is not None
    use_leg(session, decision.pool)
    leg = session.member
    assert type(leg) is AjpLeg
    fast = leg.fast
    if fast is None:
        fast = leg.fast = AjpFast(leg)
    fast.forward(found, head, method)


class AjpFast:
    """The fast path's handlers for a session's AjpLeg, and what it keeps for its client."""

    __slots__ = ("addr_part", "leg", "member_handler", "packets", "port_part", "s")

    def __init__(self, leg: AjpLeg) -> None:
        self.leg = leg
        self.s = leg.s
        self.addr_part = b""   # this client's address in a FORWARD_REQUEST (b"": not made yet)
        self.port_part = b""
        # the packets made for this client, by their parts (made for one route and pool: the
        # packet size is theirs)
        self.packets: dict[RequestParts, bytes] = {}
        self.member_handler = self.on_member  # bound once: it is set for every request

    # --- the request

    def forward(self, found: Target, head: bytes, method: bytes) -> None:
        leg, s = self.leg, self.s
        ctx, client = leg.ctx, leg.client
        ex = s.ex
        decision = ex.decision
        assert decision is not None and decision.pool is not None
        pool = decision.pool
        leg.inflight = found
        conn = ctx.conn_pool.checkout(found, verify=method not in IDEMPOTENT)
        if conn is None:
            leg.connect(found)  # dialing is the general path's (it parses the head whole)
            return s.advance()
        settings = pool.settings
        parts = None
        if not (conn.reused and settings.ajp_ping > 0) and not ctx.router.edge.active:
            address = client.listen.address
            port, ssl, key = address.port if address is not None else 0, client.tls is not None, \
                (head, found)
            parts = CACHE.request(key, decision, port, ssl) or CACHE.add_request(
                key, decision, port, ssl, ctx.limits, found.address.encode(), decision.target,
                decision.preserve_host, settings.ajp_secret)
        if parts is None:
            leg.attached(conn)  # the general path's (CPING first, header rules, odd heads)
            return s.advance()
        packet_size = settings.ajp_packet_size
        packet = self.packets.get(parts)  # this client sent this head (to that member) before
        if packet is None:
            if not self.addr_part:
                self.addr_part = client_part(client.ip.encode())
                self.port_part = port_part(leg.remote_port())
            try:
                packet = parts.packet(self.addr_part, self.port_part, packet_size)
            except AjpError:  # too big for the packet size: the general path answers 431
                leg.attached(conn)
                return s.advance()
            if len(self.packets) >= SESSION_PACKETS:
                self.packets.clear()
            self.packets[parts] = packet
        leg.conn = conn
        s.state = FORWARD
        if leg.packet_size != packet_size or leg.decoder.buffer:
            leg.packet_size = packet_size
            leg.decoder = Decoder(packet_size)
        loop = ctx.loop
        if method == b"HEAD" or decision.reverse is not None:
            leg.framer = ResponseFramer(method == b"HEAD")
            loop.handlers[conn.fd] = leg.on_event  # the response is the general path's
        else:
            loop.handlers[conn.fd] = self.member_handler
        ex.member_started = loop.now
        loop.set_timer(s.timer, loop.now + pool.response_timeout)
        send_request(s, leg, conn, loop, packet)

    # --- the response

    def on_member(self, mask: int) -> None:
        """The member socket's events while it carries a fast-path request: readable, the
        request sent whole and nothing of the response relayed yet is the fast path's."""
        leg, s = self.leg, self.s
        if mask == EPOLLIN and s.state == FORWARD and leg.conn is not None and \
                not leg.out and not leg.inbuf and not leg.client.out and \
                s.ex.response is None:
            return self._response()
        if leg.held and leg.conn is not None:  # what it holds goes first
            self._hand_over(False)
            if s.closed or leg.conn is None:
                return
        leg.on_event(mask)

    def _response(self) -> None:
        leg, s = self.leg, self.s
        ctx, conn = leg.ctx, leg.conn
        assert conn is not None
        view = ctx.buffer
        try:
            n = conn.sock.recv_into(view, HIGH_WATER)  # what a slow reader may hold
        except WOULD_BLOCK:
            return
        except OSError:
            n = 0
        held = leg.held
        if n == 0:
            if held:  # the beginning of an answer: the general path's, as if it had read it
                self._hand_over(False)
            if not s.closed and leg.conn is not None:
                leg.closed()
            if not s.closed:
                s.advance()
            return
        # The ignore, no check on this path: ctx.buffer views a bytearray (typeshed's
        # memoryview.obj is a Buffer).
        if held:
            held += view[:n]
            data: bytearray | memoryview = held
            found = split_response(held, len(held), leg.packet_size)
        else:
            data = view
            found = split_response(view.obj, n, leg.packet_size)  # type: ignore[arg-type]
        if found is None:
            if not held:
                held += view[:n]
            if len(held) <= HELD_MAX and response_prefix(held, len(held)):
                return  # Tomcat wrote the head first: the rest comes (response_timeout runs)
            return self._hand_over(True)
        payload, spans, total, reuse = found
        head = CACHE.response(payload)
        ex = s.ex
        pool = ex.decision.pool  # type: ignore[union-attr]  # a fast request's: it has one
        if head is None or head.length != total or \
                head.response.status in pool.retry_statuses:  # type: ignore[union-attr]
            if not held:
                held += view[:n]
            return self._hand_over(True)
        ctx.count_fast_path()
        client = leg.client
        # (the request was read whole, with nothing after it: buffered is False)
        ex.keep_alive = keep_alive = client_keeps(ex.keep_alive, client.eof, False,
                                                  ctx.draining or s.drain_requested)
        response = head.response
        ex.response = response
        ex.status = response.status
        ex.sent_to_client = True
        ex.bytes_to_client = total
        pieces: list[bytes | bytearray | memoryview] = [
            head.head, client.extra_head, KEEP if keep_alive else CLOSE]
        for start, end in spans:
            pieces.append(data[start:end])
        out = b"".join(pieces)
        held.clear()
        sent = client.send_now(out)
        if sent < 0:
            return
        if sent < len(out):
            client.out += memoryview(out)[sent:]
        framer = leg.framer
        framer.ended, framer.reuse = True, reuse  # what release() asks of an AJP answer
        s.relay.finish()
        if s.state != HEAD or client.out or client.inbuf:
            return s.advance()
        ctx.loop.set_mask(client.fd, READ)

    def _hand_over(self, advance: bool) -> None:
        """The bytes held are the general path's (as if it had read them), and so is the
        rest of the answer."""
        leg = self.leg
        conn = leg.conn
        assert conn is not None
        leg.ctx.loop.handlers[conn.fd] = leg.on_event
        data = bytes(leg.held)
        leg.held.clear()
        leg.took(data)
        if advance and not self.s.closed:
            self.s.advance()
