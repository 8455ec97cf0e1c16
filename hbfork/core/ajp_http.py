"""Between HTTP and AJP/1.3 (hbfork.core.ajp), pure: the request's fields for a
FORWARD_REQUEST, and a container's response events turned into an HTTP/1.1 response (head and
framed body) that the session's response relay reads as it reads an HTTP member's.

The framing rule: the response is complete for the relay only once END_RESPONSE has come, so the
member connection is never given back to the pool before the container has finished with it. A
response with a Content-Length has its last body byte held back until END_RESPONSE; one without
is sent chunked, its last chunk written at END_RESPONSE; one without a body (HEAD, 204, 304, a
zero Content-Length) has its whole head held back until END_RESPONSE. And a small response (up
to SMALL bytes of body) is held back whole until END_RESPONSE, then goes to the client in one
write, however many packets the container wrote it in.
"""

from __future__ import annotations

from hbfork.core.ajp import AjpError, BodyChunk, Cpong, EndResponse, Event, GetBodyChunk, Headers
from hbfork.core.ajp import http_head as ajp_http_head
from hbfork.core.http11 import HOP_BY_HOP, RequestHead

END_TO_END = frozenset((b"content-length", b"transfer-encoding", b"host", b"expect"))

# Response framing modes
WAITING, BODILESS, LENGTH, CHUNKED = 0, 1, 2, 3
SMALL = 16384  # a response body up to this size is sent to the client in one piece


def request_fields(head: RequestHead, member_host: bytes | None) -> list[tuple[bytes, bytes]]:
    """The request's headers for a FORWARD_REQUEST: hop-by-hop ones (and those its Connection
    names), Proxy-* and Expect (answered by the proxy) removed; Content-Length once, as a
    number; `member_host` replaces the Host. A chunked body keeps `Transfer-Encoding: chunked`,
    as mod_proxy_ajp sends it: AJP frames the body itself (the container ignores the field), but
    it tells the application that a body comes although there is no Content-Length."""
    drop = HOP_BY_HOP | (head.connection_tokens - END_TO_END)
    out: list[tuple[bytes, bytes]] = []
    length_sent = False
    for name, lower, value in head.headers:
        if lower == b"content-length":
            if not length_sent and not head.chunked:
                out.append((b"content-length", b"%d" % head.content_length))
                length_sent = True
        elif lower == b"host" and member_host is not None:
            out.append((b"host", member_host))
        elif lower == b"transfer-encoding":
            if head.chunked and not any(n == b"transfer-encoding" for n, _ in out):
                out.append((b"transfer-encoding", b"chunked"))
        elif lower in drop or lower in (b"transfer-encoding", b"expect") or \
                lower.startswith(b"proxy-"):
            continue
        else:
            out.append((name, value))
    if member_host is not None and not any(lower == b"host" for _, lower, _ in head.headers):
        out.append((b"host", member_host))
    return out


def server_name(host: bytes, default: bytes) -> bytes:
    """The Host's name without its port (an IPv6 literal keeps its brackets)."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[:end + 1] if end > 0 else default
    return host.partition(b":")[0] or default


class ResponseFramer:
    """A container's events for one request, as HTTP bytes for the relay (see the module's
    framing rule). feed() returns the bytes to append to the relay's input; `asked` is the
    body room the container asked for (GET_BODY_CHUNK), None when it asks for nothing."""

    __slots__ = ("asked", "bodiless_request", "ended", "held", "holding", "mode", "pending",
                 "pong", "remaining", "reuse")

    def __init__(self, bodiless_request: bool) -> None:
        self.bodiless_request = bodiless_request  # a HEAD: no body whatever the head says
        self.mode = WAITING
        self.remaining = 0
        self.held = b""
        self.holding = False  # a small response: all of it waits in `pending` for the end
        self.pending = b""
        self.ended = False
        self.reuse = False
        self.asked: int | None = None
        self.pong = False

    def feed(self, events: list[Event]) -> bytes:
        out = self._feed(events)
        if not self.holding:
            return out
        self.pending += out
        if self.ended or len(self.pending) > SMALL:  # complete, or not small after all
            self.holding = False
            out, self.pending = self.pending, b""
            return out
        return b""

    def _feed(self, events: list[Event]) -> bytes:
        out = bytearray()
        for event in events:
            if self.ended:
                raise AjpError("an AJP packet after END_RESPONSE")
            kind = type(event)
            if kind is BodyChunk:
                out += self._body(event.data)  # type: ignore[union-attr]
            elif kind is GetBodyChunk:
                self.asked = event.size  # type: ignore[union-attr]
            elif kind is Headers:
                out += self._head(event)  # type: ignore[arg-type]
            elif kind is EndResponse:
                out += self._end(event.reuse)  # type: ignore[union-attr]
            elif kind is Cpong:
                self.pong = True
        return bytes(out)

    def _head(self, event: Headers) -> bytes:
        if self.mode != WAITING:
            raise AjpError("a second SEND_HEADERS")
        if event.status < 200:
            return b""  # an interim answer: the client had its 100 from us
        length = _content_length(event)
        if self.bodiless_request or event.status in (204, 304) or length == 0:
            self.mode = BODILESS
            self.held = ajp_http_head(event, chunked=False, keep_alive=True)
            return b""
        self.holding = length is None or length <= SMALL
        if length is not None:
            self.mode, self.remaining = LENGTH, length
            return ajp_http_head(event, chunked=False, keep_alive=True)
        self.mode = CHUNKED
        return ajp_http_head(event, chunked=True, keep_alive=True)

    def _body(self, data: bytes) -> bytes:
        if self.mode == CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if self.mode == LENGTH:
            if len(data) > self.remaining:
                raise AjpError("more body than the AJP response's Content-Length")
            self.remaining -= len(data)
            if data and not self.remaining:
                self.held = data[-1:]
                return data[:-1]
            return data
        if self.mode == BODILESS:
            return b""  # (a HEAD's body, if a container sends one, is dropped as Apache does)
        raise AjpError("SEND_BODY_CHUNK before SEND_HEADERS")

    def _end(self, reuse: bool) -> bytes:
        if self.mode == WAITING:
            raise AjpError("END_RESPONSE before SEND_HEADERS")
        if self.mode == LENGTH and self.remaining:
            raise AjpError("END_RESPONSE before the whole Content-Length")
        self.ended, self.reuse = True, reuse
        held, self.held = self.held, b""
        return held + b"0\r\n\r\n" if self.mode == CHUNKED else held


def _content_length(event: Headers) -> int | None:
    values = {v.strip() for n, v in event.headers if n.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not all(v.isdigit() for v in values) or len(next(iter(values))) > 18:
        raise AjpError("an invalid Content-Length in SEND_HEADERS")
    return int(next(iter(values)))
