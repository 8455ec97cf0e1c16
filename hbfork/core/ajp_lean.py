"""AJP for the HTTP fast path, pure: a lean request's FORWARD_REQUEST and a container's whole
small response, each made from what a worker has seen before.

Most request heads repeat byte for byte (the same GET from many clients), and so do most
SEND_HEADERS packets (the same Content-Type and Content-Length for a resource); what AJP makes of
either is a pure function of those bytes and of settings that stay put for a worker. So the
work the general path does per request (hbfork.proxy.http.ajp_leg: the head parsed whole, its
fields turned into AJP's; the container's head decoded, written as HTTP, parsed again and
rewritten for the client) is done once per distinct head and remembered:

- a request: the FORWARD_REQUEST's parts around what names the client (hbfork.core.ajp's
  forward_parts, from the same full parse and request_fields as the general path's), so a
  packet is one join of the parts and the session's own client_part/port_part;
- a response: the client's response head (without its final CRLF and our Connection), made by
  the general path's own steps (decode, ajp.http_head, the HTTP parser, response_head_for_client)
  from the SEND_HEADERS payload, or None when it is not a head the fast path sends as is (an
  interim or bodiless answer, no or a zero Content-Length, anything the general path refuses).

split_response() finds, in the bytes read, a whole response of the common shape: one
SEND_HEADERS, SEND_BODY_CHUNK packets, one END_RESPONSE, and nothing after it;
response_prefix() tells the beginning of one (Tomcat may write its head before the body).
"""

from __future__ import annotations

import struct
from collections.abc import Hashable

from hbfork.core import http11
from hbfork.core.ajp import (
    END_RESPONSE,
    MAX_PACKET_SIZE,
    SEND_BODY_CHUNK,
    SEND_HEADERS,
    Forward,
    Headers,
    assemble,
    event_of,
    forward_parts,
    http_head,
)
from hbfork.core.ajp_http import request_fields, server_name
from hbfork.core.errors import HbforkError
from hbfork.core.http11 import Limits, ResponseHead
from hbfork.core.http_heads import response_head_for_client

# END_RESPONSE: the connection may be reused; it may not; it may not (no flag)
END_REUSE, END_CLOSE, END_SHORT = b"AB\x00\x02\x05\x01", b"AB\x00\x02\x05\x00", b"AB\x00\x01\x05"
CACHE_ENTRIES = 1024   # per kind and worker
CACHE_HEAD_MAX = 2048  # longer heads are made every time

_U16 = struct.Struct("!H")


class RequestParts:
    """A request head's FORWARD_REQUEST parts, and what they were made for."""

    __slots__ = ("after", "before", "decision", "middle", "port", "ssl")

    def __init__(self, decision: object, port: int, ssl: bool, before: bytes, middle: bytes,
                 after: bytes) -> None:
        self.decision, self.port, self.ssl = decision, port, ssl
        self.before, self.middle, self.after = before, middle, after

    def packet(self, client: bytes, port: bytes, packet_size: int) -> bytes:
        """The FORWARD_REQUEST for a client (hbfork.core.ajp's client_part, port_part);
        AjpError if it does not fit `packet_size`."""
        return assemble(self.before, client, self.middle, port, self.after, packet_size)


def request_parts(head: bytes, limits: Limits, member_target: bytes, member: bytes,
                  preserve_host: bool, server_port: int, ssl: bool,
                  secret: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The FORWARD_REQUEST parts (hbfork.core.ajp.forward_parts) of a lean request `head`
    (hbfork.core.lean: HTTP/1.1, no body) to `member` (its address, the Host when the route
    does not `preserve_host`), as the general path makes them; None if it cannot be sent so
    (the general path answers it)."""
    try:
        request = http11.parse_request_head(head, limits)
        if request.has_body or request.version != 11:
            return None
        fields = request_fields(request, None if preserve_host else member)
        return forward_parts(
            request.method, member_target or request.target, fields,
            Forward(remote_addr=b"", server_name=server_name(request.host, member),
                    server_port=server_port, is_ssl=ssl, secret=secret))
    except HbforkError:  # a ProtocolError, an AjpError: the general path says what is wrong
        return None


class ClientHead:
    """A response head as the client gets it (fast path), from a SEND_HEADERS payload."""

    __slots__ = ("head", "length", "response")

    def __init__(self, response: ResponseHead, head: bytes) -> None:
        self.response = response  # the parse the session keeps (Content-Length: length)
        self.head = head          # status line and fields, each with its CRLF; no Connection
        self.length: int = response.content_length or 0


def client_head(payload: bytes) -> ClientHead | None:
    """The client's head for the response whose SEND_HEADERS packet carries `payload`, to a
    keep-alive HTTP/1.1 GET, as the general path writes it; None: not the fast path's."""
    try:
        event = event_of(payload)
        if type(event) is not Headers or event.status < 200 or event.status in (204, 304):
            return None
        text = http_head(event, chunked=False, keep_alive=True)
        response = http11.parse_response_head(text, b"GET")
    except HbforkError:
        return None
    if not response.content_length or response.chunked or not response.keep_alive:
        return None
    return ClientHead(response, response_head_for_client(response, True, False, 11)[:-2])


class AjpLeanCache:
    """request_parts() and client_head() of the heads a worker sees, remembered (a full
    cache is emptied: heads that never repeat cost a lookup and an insert)."""

    __slots__ = ("heads", "requests")

    def __init__(self) -> None:
        self.requests: dict[tuple[bytes, Hashable], RequestParts] = {}  # (head, member)
        self.heads: dict[bytes, ClientHead | None] = {}

    def request(self, key: tuple[bytes, Hashable], decision: object, port: int,
                ssl: bool) -> RequestParts | None:
        """The parts made for `key` (the head, and the member it goes to: a worker's Target),
        if they were made for the same route `decision` (a router's Decision: one per Host
        and target, so the same object means the same route, pool and settings) on a listener
        like this one (`port`, `ssl`); None: make them (add_request)."""
        found = self.requests.get(key)
        if found is not None and found.decision is decision and found.port == port \
                and found.ssl is ssl:
            return found
        return None

    def add_request(self, key: tuple[bytes, Hashable], decision: object, port: int,
                    ssl: bool, limits: Limits, member: bytes, member_target: bytes,
                    preserve_host: bool, secret: str) -> RequestParts | None:
        """request_parts() for key's head to `member` (the address of key's), remembered."""
        head = key[0]
        parts = request_parts(head, limits, member_target, member, preserve_host, port, ssl,
                              secret.encode())
        if parts is None:
            return None
        found = RequestParts(decision, port, ssl, *parts)
        if len(head) <= CACHE_HEAD_MAX:
            if len(self.requests) >= CACHE_ENTRIES:
                self.requests.clear()
            self.requests[key] = found
        return found

    def response(self, payload: bytes) -> ClientHead | None:
        try:
            return self.heads[payload]
        except KeyError:
            pass
        found = client_head(payload)
        if len(payload) <= CACHE_HEAD_MAX:
            if len(self.heads) >= CACHE_ENTRIES:
                self.heads.clear()
            self.heads[payload] = found
        return found


def split_response(buf: bytearray | bytes, n: int, packet_size: int = MAX_PACKET_SIZE
                   ) -> tuple[bytes, list[tuple[int, int]], int, bool] | None:
    """In buf[:n], exactly one whole response of the common shape (SEND_HEADERS, then
    SEND_BODY_CHUNK packets, then END_RESPONSE, none larger than `packet_size`): (the
    SEND_HEADERS payload, the body data's (start, end) spans, their total length, whether the
    container will reuse the connection); None for anything else (the general path reads it,
    and refuses what its decoder refuses)."""
    room = packet_size - 4
    if n < 11 or buf[0] != 0x41 or buf[1] != 0x42 or buf[4] != SEND_HEADERS:
        return None
    if buf.endswith(END_REUSE, 0, n):
        reuse, end = True, n - 6
    elif buf.endswith(END_CLOSE, 0, n):
        reuse, end = False, n - 6
    elif buf.endswith(END_SHORT, 0, n):
        reuse, end = False, n - 5
    else:
        return None
    size = (buf[2] << 8) | buf[3]
    at = 4 + size
    if at > end or size > room:
        return None
    payload = bytes(buf[4:at])
    spans = []
    total = 0
    while at < end:  # SEND_BODY_CHUNK packets, up to the END_RESPONSE
        if at + 7 > end or buf[at] != 0x41 or buf[at + 1] != 0x42 or \
                buf[at + 4] != SEND_BODY_CHUNK:
            return None
        size = (buf[at + 2] << 8) | buf[at + 3]
        length = (buf[at + 5] << 8) | buf[at + 6]
        start = at + 7
        at += 4 + size
        if at > end or length > size - 3 or size > room:
            return None  # (Tomcat adds a NUL after the data: not counted)
        if length:
            spans.append((start, start + length))
            total += length
    return payload, spans, total, reuse


def response_prefix(buf: bytearray | bytes, n: int) -> bool:
    """buf[:n] may be the beginning of a response split_response() takes: whole packets of
    its shape and at most the beginning of one more (its END_RESPONSE not here yet)."""
    at, first = 0, True
    while at < n:
        head = bytes(buf[at:min(n, at + 5)])
        if not b"AB".startswith(head[:2]):
            return False
        if len(head) < 5:
            return True
        kind = head[4]
        if kind not in ((SEND_HEADERS,) if first else (SEND_BODY_CHUNK, END_RESPONSE)):
            return False
        end = at + 4 + _U16.unpack_from(buf, at + 2)[0]
        if end > n:
            return True
        if kind == END_RESPONSE:
            return False  # whole: split_response() did not take it
        at, first = end, False
    return True
