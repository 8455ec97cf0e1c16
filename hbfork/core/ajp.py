"""AJP/1.3 (mod_proxy_ajp's and Tomcat's connector protocol), as a pure codec: packets out
from a request, events in from a member's bytes.

Packets to the container start with 0x12 0x34, packets from it with "AB"; then a 16-bit
payload length. Strings are a 16-bit length, the bytes and a NUL (length 0xFFFF: absent).
A request is one FORWARD_REQUEST packet (method code, protocol, URI, remote address and host,
server name and port, TLS flag, headers — common ones as 16-bit codes —, attributes such as
the query string, the route and the shared `secret`), then the body in data packets (16-bit
length and bytes; an empty one ends it), the first sent unasked and the next ones each when the
container sends GET_BODY_CHUNK. The container answers SEND_HEADERS (status, reason, headers),
SEND_BODY_CHUNK packets, and END_RESPONSE (whether the connection may be reused). CPING (a
packet of one byte, 10) gets CPONG (9): a cheap check that a pooled connection still works.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hbfork.core.errors import HbforkError
from hbfork.core.http11 import HOP_BY_HOP

TO_CONTAINER = b"\x12\x34"
FROM_CONTAINER = b"AB"
DEFAULT_PACKET_SIZE = 8192
MAX_PACKET_SIZE = 65536
FORWARD_REQUEST, SEND_BODY_CHUNK, SEND_HEADERS, END_RESPONSE, GET_BODY_CHUNK = 2, 3, 4, 5, 6
CPONG_REPLY, CPING_REQUEST = 9, 10
CPING = TO_CONTAINER + b"\x00\x01\x0a"
NULL_STRING = 0xFFFF

METHODS = {name: code for code, name in enumerate((
    b"OPTIONS", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"TRACE", b"PROPFIND",
    b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"ACL", b"REPORT",
    b"VERSION-CONTROL", b"CHECKIN", b"CHECKOUT", b"UNCHECKOUT", b"SEARCH", b"MKWORKSPACE",
    b"UPDATE", b"LABEL", b"MERGE", b"BASELINE-CONTROL", b"MKACTIVITY"), start=1)}
STORED_METHOD = 0xFF  # any other method: its name goes in the stored_method attribute
REQUEST_HEADERS = {name: 0xA001 + i for i, name in enumerate((
    b"accept", b"accept-charset", b"accept-encoding", b"accept-language", b"authorization",
    b"connection", b"content-type", b"content-length", b"cookie", b"cookie2", b"host",
    b"pragma", b"referer", b"user-agent"))}
RESPONSE_HEADERS = {0xA001 + i: name for i, name in enumerate((
    b"Content-Type", b"Content-Language", b"Content-Length", b"Date", b"Last-Modified",
    b"Location", b"Set-Cookie", b"Set-Cookie2", b"Servlet-Engine", b"Status",
    b"WWW-Authenticate"))}
# request attributes
ATTR_REMOTE_USER, ATTR_QUERY, ATTR_ROUTE, ATTR_REQ_ATTRIBUTE = 0x03, 0x05, 0x06, 0x0A
ATTR_SECRET, ATTR_STORED_METHOD, ATTR_DONE = 0x0C, 0x0D, 0xFF
# What AJP13 forgot, sent as request attributes (Tomcat takes them, as mod_proxy_ajp sends them)
REMOTE_PORT_ATTRIBUTE, LOCAL_ADDR_ATTRIBUTE = b"AJP_REMOTE_PORT", b"AJP_LOCAL_ADDR"
# Header names at least this long would read as a header code (0xA0xx) on the other side.
MAX_NAME = 0xA000


class AjpError(HbforkError):
    """Bytes from a member that are not AJP/1.3, or a request AJP cannot carry."""


# --- to the container


def _string(value: bytes | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    if len(value) >= NULL_STRING:
        raise AjpError("a string too long for AJP")
    return struct.pack("!H", len(value)) + value + b"\x00"


@dataclass(frozen=True, slots=True)
class Forward:
    """What a FORWARD_REQUEST carries besides the method, URI and headers."""
    remote_addr: bytes
    server_name: bytes
    server_port: int
    is_ssl: bool = False
    route: bytes = b""       # the sticky route the request named (jvmRoute)
    secret: bytes = b""      # Tomcat's `secret` (requiredSecret)
    protocol: bytes = b"HTTP/1.1"
    remote_user: bytes = b""
    remote_port: int = 0     # AJP_REMOTE_PORT (0: not sent)
    local_addr: bytes = b""  # AJP_LOCAL_ADDR (b"": not sent)


def forward_request(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]],
                    forward: Forward, packet_size: int = DEFAULT_PACKET_SIZE) -> bytes:
    """The FORWARD_REQUEST packet; `headers` are (name, value) pairs, hop-by-hop ones
    already removed. The query string travels as an attribute, as AJP wants it."""
    before, middle, after = forward_parts(method, target, headers, forward)
    return assemble(before, client_part(forward.remote_addr), middle,
                    port_part(forward.remote_port), after, packet_size)


def forward_parts(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]],
                  forward: Forward) -> tuple[bytes, bytes, bytes]:
    """A FORWARD_REQUEST's payload but for what names the client (its address, its port:
    forward.remote_addr and remote_port are not read), in the three parts around them, to be
    put together by assemble(). What a request head makes is the same for every client: a
    worker keeps the parts of the heads it sees (hbfork.core.ajp_lean)."""
    uri, _, query = target.partition(b"?")
    code = METHODS.get(method, STORED_METHOD)
    fields = list(headers)
    before = bytes((FORWARD_REQUEST, code)) + _string(forward.protocol) + _string(uri)
    out = [_string(forward.server_name),
           struct.pack("!H?H", forward.server_port, forward.is_ssl, len(fields))]
    for name, value in fields:
        known = REQUEST_HEADERS.get(name.lower())
        if not known and len(name) >= MAX_NAME:
            raise AjpError("a header name too long for AJP")
        out.append(struct.pack("!H", known) if known else _string(name))
        out.append(_string(value))
    if query:
        out.append(bytes((ATTR_QUERY,)) + _string(query))
    if forward.route:
        out.append(bytes((ATTR_ROUTE,)) + _string(forward.route))
    if forward.remote_user:
        out.append(bytes((ATTR_REMOTE_USER,)) + _string(forward.remote_user))
    if forward.secret:
        out.append(bytes((ATTR_SECRET,)) + _string(forward.secret))
    after = []
    if forward.local_addr:
        after.append(bytes((ATTR_REQ_ATTRIBUTE,)) + _string(LOCAL_ADDR_ATTRIBUTE)
                     + _string(forward.local_addr))
    if code == STORED_METHOD:
        after.append(bytes((ATTR_STORED_METHOD,)) + _string(method))
    after.append(bytes((ATTR_DONE,)))
    return before, b"".join(out), b"".join(after)


def client_part(remote_addr: bytes) -> bytes:
    """The client's address in a FORWARD_REQUEST (as its remote address and host)."""
    return _string(remote_addr) * 2


def port_part(remote_port: int) -> bytes:
    """The client's port in a FORWARD_REQUEST (the AJP_REMOTE_PORT attribute; 0: none)."""
    if not remote_port:
        return b""
    return (bytes((ATTR_REQ_ATTRIBUTE,)) + _string(REMOTE_PORT_ATTRIBUTE)
            + _string(b"%d" % remote_port))


def assemble(before: bytes, client: bytes, middle: bytes, port: bytes, after: bytes,
             packet_size: int) -> bytes:
    """The FORWARD_REQUEST packet from forward_parts() and the client's client_part() and
    port_part()."""
    size = len(before) + len(client) + len(middle) + len(port) + len(after)
    if size > packet_size - 4:
        raise AjpError(f"the request head does not fit an AJP packet of {packet_size} bytes "
                       "(raise the pool's ajp_packet_size, Tomcat's packetSize)")
    return b"".join((TO_CONTAINER, struct.pack("!H", size), before, client, middle, port, after))


def body_packets(data: bytes, packet_size: int = DEFAULT_PACKET_SIZE) -> list[bytes]:
    """Request body bytes as data packets (each at most packet_size)."""
    room = packet_size - 6
    return [body_packet(data[at:at + room])
            for at in range(0, len(data), room)]


def body_packet(piece: bytes | bytearray | memoryview) -> bytes:
    """One data packet; `piece` must fit what the container asked for (GET_BODY_CHUNK) and
    its packet size, and be non-empty (an empty one is END_OF_BODY)."""
    return TO_CONTAINER + struct.pack("!HH", len(piece) + 2, len(piece)) + bytes(piece)


def body_room(packet_size: int, asked: int | None = None) -> int:
    """The most body bytes one data packet may carry: what the container asked for, within
    the packet size (6 bytes of it are the packet's and the data's lengths)."""
    room = packet_size - 6
    return room if asked is None else max(0, min(room, asked))


END_OF_BODY = TO_CONTAINER + b"\x00\x00"  # an empty data packet: no more body


# --- from the container


@dataclass(frozen=True, slots=True)
class Headers:
    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]   # (name as sent, value)


@dataclass(frozen=True, slots=True)
class BodyChunk:
    data: bytes


@dataclass(frozen=True, slots=True)
class GetBodyChunk:
    size: int               # at most this many body bytes in the next data packet


@dataclass(frozen=True, slots=True)
class EndResponse:
    reuse: bool


@dataclass(frozen=True, slots=True)
class Cpong:
    pass


Event = Headers | BodyChunk | GetBodyChunk | EndResponse | Cpong


class Decoder:
    """Packets from the container, fed as they arrive; events out."""

    __slots__ = ("buffer", "max_packet")

    def __init__(self, max_packet: int = MAX_PACKET_SIZE) -> None:
        self.buffer = bytearray()
        self.max_packet = max_packet

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        buf = self.buffer
        buf += data
        events: list[Event] = []
        at, n = 0, len(buf)
        while n - at >= 4:
            if buf[at] != 0x41 or buf[at + 1] != 0x42:  # "AB"
                raise AjpError("the member's bytes are not AJP/1.3 packets")
            size = (buf[at + 2] << 8) | buf[at + 3]
            if size == 0 or size > self.max_packet - 4:
                raise AjpError(f"AJP packet of {size} bytes")
            end = at + 4 + size
            if end > n:
                break
            # The packets of every answer are decoded here, not by event_of()
            kind = buf[at + 4]
            if kind == SEND_BODY_CHUNK and size >= 3:
                length = (buf[at + 5] << 8) | buf[at + 6]
                if length > size - 3:
                    raise AjpError("truncated AJP packet")
                events.append(BodyChunk(bytes(buf[at + 7:at + 7 + length])))
            elif kind == END_RESPONSE:
                events.append(_REUSE if size > 1 and buf[at + 5] == 1 else _NO_REUSE)
            elif kind == SEND_HEADERS:
                events.append(_headers(bytes(buf[at + 4:end])))
            else:
                events.append(event_of(bytes(buf[at + 4:end])))
            at = end
        if at:
            del buf[:at]
        return events


_REUSE, _NO_REUSE = EndResponse(True), EndResponse(False)
_HEADS: dict[bytes, Event] = {}  # SEND_HEADERS payloads decoded (most repeat byte for byte)
_HEADS_MAX = 1024


def _headers(payload: bytes) -> Event:
    try:
        return _HEADS[payload]
    except KeyError:
        pass
    event = event_of(payload)  # an AjpError is raised every time: never remembered
    if len(payload) <= 2048:
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[payload] = event
    return event


def event_of(payload: bytes) -> Event:
    """The event one packet's payload (after \"AB\" and its length) carries."""
    reader = _Reader(payload)
    kind = reader.byte()
    if kind == SEND_HEADERS:
        status = reader.u16()
        reason = reader.string() or b""
        count = reader.u16()
        headers = []
        for _ in range(count):
            code = reader.peek_u16()
            if code >= 0xA000:
                reader.u16()
                name = RESPONSE_HEADERS.get(code)
                if name is None:
                    raise AjpError(f"unknown AJP response header code {code:#x}")
            else:
                name = reader.string() or b""
            headers.append((name, reader.string() or b""))
        if not 100 <= status <= 999:
            raise AjpError(f"AJP status {status}")
        return Headers(status, reason, tuple(headers))
    if kind == SEND_BODY_CHUNK:
        size = reader.u16()
        return BodyChunk(reader.take(size))  # Tomcat adds a NUL after it: ignored
    if kind == END_RESPONSE:
        return EndResponse(reader.byte() == 1 if reader.left() else False)
    if kind == GET_BODY_CHUNK:
        return GetBodyChunk(reader.u16())
    if kind == CPONG_REPLY:
        return Cpong()
    raise AjpError(f"unexpected AJP packet type {kind}")


class _Reader:
    __slots__ = ("at", "data")

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def left(self) -> int:
        return len(self.data) - self.at

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise AjpError("truncated AJP packet")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def peek_u16(self) -> int:
        if self.left() < 2:
            raise AjpError("truncated AJP packet")
        return int(struct.unpack_from("!H", self.data, self.at)[0])

    def string(self) -> bytes | None:
        size = self.u16()
        if size == NULL_STRING:
            return None
        value = self.take(size)
        self.take(1)  # the NUL
        return value


def http_head(event: Headers, chunked: bool, keep_alive: bool) -> bytes:
    """An HTTP/1.1 response head for what SEND_HEADERS said, as the session's response relay
    reads a member's: framed by its Content-Length, else `chunked`, else until close."""
    if b"\r" in event.reason or b"\n" in event.reason:
        raise AjpError("a CR or LF in an AJP status reason")
    lines = [b"HTTP/1.1 %d %s" % (event.status, event.reason)]
    for name, value in event.headers:
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value \
                or b":" in name or not name.strip():
            raise AjpError("an AJP response header that is not a valid HTTP field")
        if name.lower() not in HOP_BY_HOP:
            lines.append(name + b": " + value)
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def has_length(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"content-length" for name, _ in headers)
