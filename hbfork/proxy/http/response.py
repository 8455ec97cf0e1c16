"""The response relay of an HTTP session: the member's response head checked and rewritten for
the client, the body streamed with back-pressure (de-chunked for HTTP/1.0 clients), 101
upgrades turned into a byte tunnel, and the end of each exchange (pool the member connection,
account the request, go on with the next one or close).
"""

from __future__ import annotations

import socket

from hbfork.core import http11, http_heads
from hbfork.core.chunked import ChunkedBody, Rechunker
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import LengthBody, ResponseHead, UntilClose
from hbfork.core.http_heads import HeaderMap
from hbfork.core.http_upgrade import switch_matches
from hbfork.core.outlier import FAILED_STATUS, OK
from hbfork.core.persistence import response_keeps
from hbfork.core.reverse import LOCATION_HEADERS, map_location, map_set_cookie
from hbfork.proxy.http.parts import SessionCore
from hbfork.proxy.http.spool import hold, spool_body
from hbfork.proxy.http.state import CLOSING, FORWARD, HEAD, HIGH_WATER, MAX_RESPONSE_HEAD, TUNNEL


class ResponseRelay:
    __slots__ = ("client", "ctx", "member", "s")

    def __init__(self, session: SessionCore) -> None:
        self.s = session
        self.ctx = session.ctx  # and the parts, one attribute away (they never change)
        self.client = session.client
        self.member = session.member

    def process(self) -> None:
        """Make what progress the member's bytes allow: heads parsed, body bytes relayed, the
        exchange finished."""
        s = self.s
        upbuf = self.member.inbuf
        mark = -1  # where the response head parsed in this call begins in the client's queue
        while s.state == FORWARD and s.ex.response is None and upbuf:
            mark = len(self.client.out)
            if not self._parse_head():
                return
        body = s.ex.response_body
        if s.state == FORWARD and body is not None:
            if upbuf and mark >= 0:
                self._first_body(mark)
            elif upbuf:
                self._forward_body()
            if body.done and not (upbuf and isinstance(body, UntilClose)):
                self.finish()

    def _first_body(self, mark: int) -> None:
        """Body bytes that came with the response head: malformed, the head is taken back
        (nothing of it has left yet) and the client gets a 502, not a cut connection."""
        ex = self.s.ex
        try:
            self._forward_body()
        except ProtocolError:
            del self.client.out[mark:]
            ex.response = ex.response_body = None
            ex.sent_to_client = False
            raise

    def _parse_head(self) -> bool:
        s = self.s
        ex, member = s.ex, self.member
        upbuf = member.inbuf
        if upbuf[:2] == b"\r\n":  # stray empty lines before a head (after a 1xx, say)
            del upbuf[:http11.skip_empty_lines(upbuf, 0)]
            if not upbuf:
                return False
        end = http11.find_head(upbuf, 0, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEAD, request=False)
        if end < 0:
            return False
        request = ex.request
        assert request is not None
        head = bytes(upbuf[:end])
        del upbuf[:end]
        response = http11.parse_response_head(head, request.method)
        if response.interim:
            # 100 answers an Expect we never forward (the client had ours); 102/103 pass.
            if request.version == 11 and response.status != 100:
                self.client.out += head
            return True
        if response.status == 101:
            return self._switch_protocols(response)
        pool = s.pool
        if response.status in pool.retry_statuses and \
                member.may_retry_elsewhere(response.status):
            # A status the pool retries (retry_on): the client never sees this answer.
            target = member.inflight
            if target is not None:
                self.ctx.upstreams.observe(target, FAILED_STATUS if response.status in
                                        pool.fail_statuses else OK)
            member.retry_elsewhere(response.status, f"the member answered {response.status}")
            return False
        ex.response = response
        ex.status = response.status
        self._start(response)
        return True

    def _start(self, response: ResponseHead) -> None:
        s = self.s
        ex, client = s.ex, self.client
        request = ex.request
        assert request is not None
        dechunk = response.chunked and request.version == 10
        if response.chunked:  # re-framed for an HTTP/1.1 client, de-chunked for 1.0
            ex.response_body = ChunkedBody(decode=True, status=502) if dechunk else \
                Rechunker(status=502)
        elif response.content_length is None:
            ex.response_body = UntilClose()
        else:
            ex.response_body = LengthBody(response.content_length)
        ex.keep_alive = response_keeps(
            ex.keep_alive, client.eof, bool(client.inbuf), self.ctx.draining or s.drain_requested,
            response.chunked or response.content_length is not None, dechunk, ex.request_done)
        extra: tuple[bytes, ...] = (b"Set-Cookie: " + ex.set_cookie,) if ex.set_cookie else ()
        listen = client.listen
        if listen.hsts:
            extra += (http_heads.hsts_line(listen.hsts, listen.hsts_subdomains),)
        rewrite, edge = self._header_map(), self.ctx.router.edge
        if edge.active:  # header rules and the request ID (hbfork.proxy.http.headers)
            response = edge.response_for_client(ex, listen.address, response, rewrite)
            rewrite = None  # applied, before the rules
            if edge.response_line(ex):
                extra += (edge.response_line(ex)[:-2],)
        client.out += http_heads.response_head_for_client(
            response, ex.keep_alive, dechunk, request.version, rewrite, extra)
        ex.sent_to_client = True
        s.set_deadline(self.ctx.http.client_timeout)

    def _header_map(self) -> HeaderMap | None:
        """ProxyPassReverse for this request's route, if it has one."""
        s = self.s
        decision = s.ex.decision
        rmap = decision.reverse if decision is not None else None
        if rmap is None:
            return None
        assert s.ex.request is not None
        scheme = "https" if self.client.tls is not None else "http"
        host = s.ex.request.host.decode("latin-1")

        def rewrite(lower: bytes, value: bytes) -> bytes:
            if lower in LOCATION_HEADERS and rmap.urls:
                return map_location(value.decode("latin-1"), rmap, scheme, host).encode(
                    "latin-1")
            if lower == b"set-cookie":
                return map_set_cookie(value.decode("latin-1"), rmap).encode("latin-1")
            return value

        return rewrite

    def relay_response_bytes(self, n: int) -> None:
        """Body bytes just read into the worker's buffer go straight to the client, nothing
        being queued before them (no copy into the member's buffer; a chunked body is
        re-framed from the read buffer into the client's queue, hbfork.core.chunked)."""
        s = self.s
        ex = s.ex
        body = ex.response_body
        view = self.ctx.buffer
        if type(body) is Rechunker:
            data = view.obj
            assert isinstance(data, bytearray)  # (find() is the bytearray's)
            try:  # into the client's queue, empty (the caller's condition)
                taken = body.relay(data, n, self.client.out)
            except ProtocolError as err:  # a bad framing: as advance() fails a response
                s.fail(err.status, err.detail)
                return
            ex.bytes_to_client += taken
            if taken < n:
                self.member.inbuf += view[taken:n]  # a split framing line, or what follows
            return
        assert type(body) is LengthBody or type(body) is UntilClose  # the caller's DIRECT_BODIES
        taken = body.scan(view, 0, n)
        ex.bytes_to_client += taken
        if taken:
            sent = self.client.send_now(view[:taken])
            if sent < 0:
                return
            if sent < taken:
                self.client.out += view[sent:taken]
        if taken < n:
            self.member.inbuf += view[taken:n]  # bytes after the response: judged by the caller

    def _forward_body(self) -> None:
        s = self.s
        ex, out, upbuf = s.ex, self.client.out, self.member.inbuf
        body = ex.response_body
        assert body is not None
        if (len(out) >= HIGH_WATER or ex.spool is not None) and spool_body(s, upbuf):
            return  # into the response spool, or waiting behind it (hbfork.proxy.http.spool)
        if len(out) >= HIGH_WATER:
            return
        if type(body) is Rechunker:
            taken = body.relay(upbuf, len(upbuf), out)  # hbfork.core.chunked
            del upbuf[:taken]
            ex.bytes_to_client += taken
            return
        taken = body.scan(upbuf, 0, len(upbuf))
        if isinstance(body, ChunkedBody) and body.decode:
            for start, end in body.pieces:
                out += upbuf[start:end]
        else:
            out += upbuf[:taken]
        del upbuf[:taken]
        ex.bytes_to_client += taken

    def _switch_protocols(self, response: ResponseHead) -> bool:
        s = self.s
        ex = s.ex
        request = ex.request
        assert request is not None
        if not request.upgrade:
            raise ProtocolError(502, "101 from the member without an upgrade request")
        answered = b", ".join(v for _, lower, v in response.headers if lower == b"upgrade")
        if not switch_matches(request.upgrade, answered):
            raise ProtocolError(502, "101 from the member to a protocol not asked for")
        ex.response, ex.status = response, 101
        self.client.out += http_heads.response_head_for_client(response, True, False,
                                                            request.version)
        ex.sent_to_client = True
        s.state = TUNNEL
        ex.request_done = True
        self.account()
        return False

    def finish(self) -> None:
        """The response is complete: pool the member connection, then next request or close."""
        s, member = self.s, self.member
        ex = s.ex
        response = ex.response
        reusable = bool(response and response.keep_alive and ex.request_done
                        and not member.inbuf)
        if response is not None and not response.keep_alive and member.conn is not None and \
                member.conn.reused:  # the member closes a connection it kept: leaving?
            self.ctx.conn_pool.member_closed(member.conn.target.slot)
        if ex.spool is not None and hold(s, reusable):
            return  # the member is free; the client reads the rest from the spool
        self.account()
        member.release(reusable)
        if ex.keep_alive:  # even after a client EOF: pipelined requests may be in inbuf
            # Read without lagging: its next request ranks by its arrival in the front queue
            # (hbfork.core.queue_order); a spooled one's, as a new connection's.
            lag = ex.lag
            s.returning = lag is None or not lag.lagged
            s.new_exchange()
            s.state = HEAD
            s.idle_deadline()
            if self.client.inbuf:
                s.parse_head()  # a pipelined request is already here
        else:
            s.state = CLOSING

    def account(self) -> None:
        """Report the request once: counters, latency, access log."""
        ex = self.s.ex
        self.member.done(ex.status)
        if not ex.accounted:
            ex.accounted = True
            self.ctx.request_done(ex, ex.status, ex.target)

    def tunnel(self) -> None:
        client, member = self.client, self.member
        if client.inbuf and len(member.out) < HIGH_WATER:
            member.out += client.inbuf
            client.inbuf.clear()
        if member.inbuf and len(client.out) < HIGH_WATER:
            client.out += member.inbuf
            member.inbuf.clear()
        if client.eof and not member.out and member.conn is not None:
            try:
                member.conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
