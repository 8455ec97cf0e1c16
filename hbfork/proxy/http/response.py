"""The response relay of an HTTP session: the member's response head checked and rewritten for
the client, the body streamed with back-pressure (de-chunked for HTTP/1.0 clients), 101
upgrades turned into a byte tunnel, and the end of each exchange (pool the member connection,
account the request, go on with the next one or close).
"""

from __future__ import annotations

import socket

from hbfork.core import http11, http_heads
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import ChunkedBody, LengthBody, ResponseHead, UntilClose
from hbfork.core.http_heads import HeaderMap
from hbfork.core.http_upgrade import switch_matches
from hbfork.core.outlier import FAILED_STATUS, OK
from hbfork.core.reverse import LOCATION_HEADERS, map_location, map_set_cookie
from hbfork.proxy.http.state import (
    CLOSING,
    FORWARD,
    HEAD,
    HIGH_WATER,
    MAX_RESPONSE_HEAD,
    TUNNEL,
    ExchangeState,
)


class ResponseRelay(ExchangeState):
    __slots__ = ()

    def _process_response(self) -> None:
        while self.state == FORWARD and self.response is None and self.upbuf:
            if not self._parse_response_head():
                return
        body = self.response_body
        if self.state == FORWARD and body is not None:
            if self.upbuf:
                self._forward_response_body()
            if body.done and not (self.upbuf and isinstance(body, UntilClose)):
                self._finish_exchange()

    def _parse_response_head(self) -> bool:
        end = http11.find_head(self.upbuf, 0, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEAD,
                               request=False)
        if end < 0:
            return False
        assert self.request is not None
        head = bytes(self.upbuf[:end])
        del self.upbuf[:end]
        response = http11.parse_response_head(head, self.request.method)
        if response.interim:
            # 100 answers an Expect we never forward (the client had ours); 102/103 pass.
            if self.request.version == 11 and response.status != 100:
                self._to_client(head)
            return True
        if response.status == 101:
            return self._switch_protocols(response)
        if response.status in self.pool.retry_statuses and \
                self._may_retry_elsewhere(response.status):
            # A status the pool retries (retry_on): the client never sees this answer.
            target = self.inflight_target
            if target is not None:
                self.ctx.upstreams.observe(target, FAILED_STATUS if response.status in
                                           self.pool.fail_statuses else OK)
            self._retry_elsewhere(response.status, f"the member answered {response.status}")
            return False
        self.response = response
        self.status = response.status
        self._start_response(response)
        return True

    def _start_response(self, response: ResponseHead) -> None:
        request = self.request
        assert request is not None
        dechunk = response.chunked and request.version == 10
        if response.chunked:
            self.response_body = ChunkedBody(decode=dechunk, status=502)
        elif response.content_length is None:
            self.response_body = UntilClose()
        else:
            self.response_body = LengthBody(response.content_length)
        framed = response.chunked or response.content_length is not None
        self.keep_alive = (self.keep_alive and framed and not dechunk and self.request_done
                           and (not self.client_eof or bool(self.inbuf))
                           and not self.ctx.draining and not self.drain_requested)
        extra = (b"Set-Cookie: " + self.set_cookie,) if self.set_cookie else ()
        if self.listen.hsts:
            extra += (hsts_line(self.listen.hsts, self.listen.hsts_subdomains),)
        self._to_client(http_heads.response_head_for_client(
            response, self.keep_alive, dechunk, request.version, self._header_map(), extra))
        self.sent_to_client = True
        self._set_deadline(self.ctx.http.client_timeout)

    def _header_map(self) -> HeaderMap | None:
        """ProxyPassReverse for this request's route, if it has one."""
        decision = self.decision
        rmap = decision.reverse if decision is not None else None
        if rmap is None:
            return None
        assert self.request is not None
        scheme = "https" if self.tls is not None else "http"
        host = self.request.host.decode("latin-1")

        def rewrite(lower: bytes, value: bytes) -> bytes:
            if lower in LOCATION_HEADERS and rmap.urls:
                return map_location(value.decode("latin-1"), rmap, scheme, host).encode(
                    "latin-1")
            if lower == b"set-cookie":
                return map_set_cookie(value.decode("latin-1"), rmap).encode("latin-1")
            return value

        return rewrite

    def _relay_response_bytes(self, n: int) -> None:
        """Body bytes just read into the worker's buffer go straight to the client, nothing
        being queued before them (no copy into upbuf and client_out)."""
        body = self.response_body
        assert body is not None
        view = self.ctx.buffer
        taken = body.scan(view, 0, n)
        self.bytes_to_client += taken
        if taken:
            sent = self._send_client_now(view[:taken])
            if sent < 0:
                return
            if sent < taken:
                self.client_out += view[sent:taken]
        if taken < n:
            self.upbuf += view[taken:n]  # bytes after the response: judged by the caller

    def _forward_response_body(self) -> None:
        body = self.response_body
        assert body is not None
        if len(self.client_out) >= HIGH_WATER:
            return
        taken = body.scan(self.upbuf, 0, len(self.upbuf))
        if isinstance(body, ChunkedBody) and body.decode:
            for start, end in body.pieces:
                self._to_client(self.upbuf[start:end])
        else:
            self._to_client(self.upbuf[:taken])
        del self.upbuf[:taken]
        self.bytes_to_client += taken

    def _switch_protocols(self, response: ResponseHead) -> bool:
        assert self.request is not None
        if not self.request.upgrade:
            raise ProtocolError(502, "101 from the member without an upgrade request")
        answered = b", ".join(v for _, lower, v in response.headers if lower == b"upgrade")
        if not switch_matches(self.request.upgrade, answered):
            raise ProtocolError(502, "101 from the member to a protocol not asked for")
        self.response, self.status = response, 101
        self._to_client(http_heads.response_head_for_client(response, True, False,
                                                        self.request.version))
        self.sent_to_client = True
        self.state = TUNNEL
        self.request_done = True
        self._account()
        return False

    def _finish_exchange(self) -> None:
        """The response is complete: pool the member connection, then next request or close."""
        reusable = bool(self.response and self.response.keep_alive and self.request_done
                        and not self.upbuf)
        self._account()
        self._release_member(reusable=reusable)
        if self.keep_alive:  # even after a client EOF: pipelined requests may be in inbuf
            self._reset_exchange()
            self.state = HEAD
            self._idle_deadline()
            if self.inbuf:
                self._parse_head()  # a pipelined request is already here
        else:
            self.state = CLOSING

    def _account(self) -> None:
        """Report the request once: counters, latency, access log."""
        self._member_done(self.status)
        if not self.accounted:
            self.accounted = True
            self.ctx.request_done(self, self.status, self.target)

    def _tunnel(self) -> None:
        if self.inbuf and len(self.upstream_out) < HIGH_WATER:
            self.upstream_out += self.inbuf
            self.inbuf.clear()
        if self.upbuf and len(self.client_out) < HIGH_WATER:
            self._to_client(self.upbuf)
            self.upbuf.clear()
        if self.client_eof and not self.upstream_out and self.conn is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def hsts_line(max_age: int, subdomains: bool) -> bytes:
    return b"Strict-Transport-Security: max-age=%d%s" % (
        max_age, b"; includeSubDomains" if subdomains else b"")
