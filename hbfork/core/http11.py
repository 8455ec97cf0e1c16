"""HTTP/1.1 message framing and validation for a proxy. Pure: bytes in, heads and counts out.

A proxy needs less than a server: it must find where each message's head ends, decide exactly
how long the body is (RFC 9112 §6.3), refuse anything ambiguous, and rewrite a few headers.
Bodies are never copied into objects: a body scanner is told how many bytes are available and
answers how many belong to the current message, so the I/O layer forwards the bytes (a chunked
framing is validated, and re-framed where unclean, by hbfork.core.chunked) and knows when the
message ended. Writing heads is hbfork.core.http_heads's job.

Everything here raises ProtocolError(status, detail) for bad input, and nothing else:

* 400 malformed request line or header, obsolete line folding, a bare CR or LF, control bytes,
  invalid header names, Content-Length with Transfer-Encoding, conflicting or invalid
  Content-Length, a Transfer-Encoding whose final coding is not chunked, Transfer-Encoding in
  an HTTP/1.0 request, a missing or repeated Host in HTTP/1.1 or one that is no authority,
  bad chunk framing or trailer fields;
* 414 request line longer than the limit; 431 head larger than the limit; 413 body over the
  limit; 501 CONNECT (a reverse proxy tunnels nowhere); 505 an HTTP version other than 1.0
  and 1.1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import final

from hbfork.core.errors import ProtocolError
from hbfork.core.grammar import (
    ABSOLUTE_TARGET,
    CONTROL,
    DIGITS,
    FIELD,
    FIELDS,
    HOST,
    STATUS_LINE,
    TARGET,
    TOKEN,
    TRAILING_SPACE,
)

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
_SELECTED = frozenset((b"content-length", b"transfer-encoding", b"host", b"connection",
                       b"upgrade", b"expect"))

# HTTP2-Settings belongs to an h2c upgrade, which is never passed on (hbfork.core.upgrade).
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"upgrade", b"transfer-encoding", b"http2-settings"))
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
# Standard reason phrases for the answers hbfork writes itself (RFC 9110's names).
REASONS = {status.value: status.phrase for status in HTTPStatus} | {
    413: "Content Too Large", 422: "Unprocessable Content"}

Header = tuple[bytes, bytes, bytes]  # (name as sent, lower-case name, value)


@dataclass(slots=True)
class Limits:
    max_request_line: int = 8192
    max_header_size: int = 16384
    max_body_size: int = 0  # 0 = none


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: int                   # 10 or 11
    headers: list[Header]
    content_length: int            # body length when not chunked
    chunked: bool
    keep_alive: bool
    connection_tokens: frozenset[bytes]
    host: bytes
    upgrade: bytes                 # b"" unless the client asks to switch protocols
    expect_continue: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT


@dataclass(slots=True)
class ResponseHead:
    version: int
    status: int
    reason: bytes
    headers: list[Header]
    content_length: int | None     # None: chunked or read until close
    chunked: bool
    keep_alive: bool               # the member will keep the connection open afterwards
    connection_tokens: frozenset[bytes]

    @property
    def interim(self) -> bool:
        return 100 <= self.status < 200 and self.status != 101


# --- heads


def find_head(buf: bytes | bytearray, start: int, line_limit: int, head_limit: int,
              request: bool = True) -> int:
    """End offset of a complete head starting at `start`, or -1 when more bytes are needed.

    Raises 414/431 as soon as the bytes seen prove a limit is exceeded, and 400 for a first
    line ended by a bare LF (HTTP/0.9 or a sloppy client would otherwise wait for a blank line
    that never comes in the form we need)."""
    newline = buf.find(b"\n", start, start + line_limit + 2)
    if newline >= 0 and (newline == start or buf[newline - 1] != 13):
        raise ProtocolError(400 if request else 502, "bare LF ending the first line")
    end = buf.find(HEAD_END, start, start + head_limit + 4)
    if end >= 0:
        line_end = buf.find(CRLF, start, end + 2)
        if request and line_end - start > line_limit:
            raise ProtocolError(414, "request line too long")
        return end + 4
    available = len(buf) - start
    _refuse_bare_line_ends(buf, start, min(len(buf), start + head_limit + 4), request)
    if request and newline < 0 and available > line_limit:
        raise ProtocolError(414, "request line too long")
    if available > head_limit:
        raise ProtocolError(431 if request else 502, "header section too large")
    return -1


def _refuse_bare_line_ends(buf: bytes | bytearray, start: int, stop: int,
                           request: bool) -> None:
    """A head still incomplete that holds a LF without its CR, or a CR without its LF, can
    never end in CRLFCRLF: answer at once instead of waiting for header_timeout (Apache
    answers 400 too). A CR as the very last byte may still get its LF."""
    pairs = buf.count(CRLF, start, stop)
    if buf.count(b"\n", start, stop) != pairs or \
            buf.count(b"\r", start, stop) - (buf[stop - 1:stop] == b"\r") != pairs:
        raise ProtocolError(400 if request else 502, "bare CR or LF in the head")


def skip_empty_lines(buf: bytes | bytearray, start: int) -> int:
    """RFC 9112 §2.2: a server should ignore empty lines before a request line."""
    while buf[start:start + 2] == CRLF:
        start += 2
    return start


def _fields(block: bytes) -> list[Header]:
    """The header fields of a head, given the bytes between the first line's CRLF and the
    final blank line (every field ends in CRLF).

    The common case is one regex pass in C; only a section it refuses goes through the
    line-by-line check, which says what is wrong."""
    if FIELDS.fullmatch(block) is None:
        _explain_fields(block)
        raise ProtocolError(400, "malformed header section")
    if TRAILING_SPACE.search(block):
        return [(name, name.lower(), value.rstrip(b" \t"))
                for name, value in FIELD.findall(block)]
    return [(name, name.lower(), value) for name, value in FIELD.findall(block)]


def _explain_fields(block: bytes) -> None:
    """Raise the reason `block` is not a valid header section."""
    if b"\r" in block.replace(CRLF, b"") or b"\n" in block.replace(CRLF, b""):
        raise ProtocolError(400, "bare CR or LF in the head")
    for line in block.split(CRLF)[:-1]:
        if not line or line[0] in b" \t":
            raise ProtocolError(400, "obsolete line folding or empty header line")
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):
            raise ProtocolError(400, "invalid header name")
        if CONTROL.search(value.strip(b" \t")):
            raise ProtocolError(400, "control character in a header value")


def _split_head(head: bytes) -> tuple[bytes, list[Header]]:
    """(first line, header fields) of a complete head."""
    if not head.endswith(HEAD_END):
        raise ProtocolError(400, "incomplete head")
    first = head.find(CRLF)
    return head[:first], _fields(head[first + 2:-2])


def _select(headers: list[Header]) -> dict[bytes, list[bytes]]:
    """The values of the few fields that framing and routing depend on, in one pass."""
    found: dict[bytes, list[bytes]] = {}
    for _, lower, value in headers:
        if lower in _SELECTED:
            if lower in found:
                found[lower].append(value)
            else:
                found[lower] = [value]
    return found


def _tokens(values: list[bytes] | None) -> list[bytes]:
    out: list[bytes] = []
    for value in values or ():
        out.extend(t.strip(b" \t").lower() for t in value.split(b",") if t.strip(b" \t"))
    return out


def _framing(found: dict[bytes, list[bytes]], version: int,
             request: bool) -> tuple[int | None, bool]:
    """(content_length, chunked) per RFC 9112 §6.3, refusing every ambiguous combination."""
    status = 400 if request else 502
    lengths = found.get(b"content-length")
    encodings = found.get(b"transfer-encoding")
    if encodings is not None:
        codings = _tokens(encodings)
        if not codings:  # some servers take the mere presence of the field as chunked
            raise ProtocolError(status, "empty Transfer-Encoding")
        if lengths and request:  # a response's TE overrides its CL (parse_response_head)
            raise ProtocolError(status, "both Content-Length and Transfer-Encoding")
        if request and version == 10:
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            if request or b"chunked" in codings:
                raise ProtocolError(status, "Transfer-Encoding must end in chunked")
            return None, False  # a response's body then runs until the member closes (§6.3)
        return None, True
    if not lengths:
        return None, False
    if len(lengths) == 1 and DIGITS.fullmatch(lengths[0]):
        return int(lengths[0]), False
    values = {v.strip() for item in lengths for v in item.split(b",")}
    if len(values) != 1:
        raise ProtocolError(status, "conflicting Content-Length values")
    value = values.pop()
    if not DIGITS.fullmatch(value):
        raise ProtocolError(status, "invalid Content-Length")
    return int(value), False


def _request_line(line: bytes) -> tuple[bytes, bytes, int]:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise ProtocolError(400, "malformed request line")
    method, target, version_text = parts
    if not TOKEN.fullmatch(method) or not TARGET.fullmatch(target):
        raise ProtocolError(400, "malformed request line")
    if version_text == b"HTTP/1.1":
        version = 11
    elif version_text == b"HTTP/1.0":
        version = 10
    elif re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version_text):
        raise ProtocolError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    else:
        raise ProtocolError(400, "malformed request line")
    if method == b"CONNECT":
        raise ProtocolError(501, "CONNECT is not supported")
    return method, target, version


def origin_form(target: bytes) -> tuple[bytes, bytes]:
    """(path and query, authority) of an absolute-form target; 400 for anything else, or
    userinfo (`http://user@host/`: credentials have no business in a request line)."""
    match = ABSOLUTE_TARGET.fullmatch(target)
    if match is None:
        raise ProtocolError(400, "the request target is not a path or an http URL")
    authority, rest = match.group(1), match.group(2) or b"/"
    if b"@" in authority:
        raise ProtocolError(400, "userinfo in the request target")
    if not authority or not HOST.fullmatch(authority):
        raise ProtocolError(400, "invalid authority in the request target")
    return (rest if rest[:1] == b"/" else b"/" + rest), authority


def parse_request_head(head: bytes, limits: Limits) -> RequestHead:
    """Parse a complete request head (as delimited by find_head)."""
    line, headers = _split_head(head)
    method, target, version = _request_line(line)
    found = _select(headers)
    length, chunked = _framing(found, version, request=True)
    if limits.max_body_size and length is not None and length > limits.max_body_size:
        raise ProtocolError(413, "request body too large")
    hosts: Sequence[bytes] = found.get(b"host", ())
    if len(hosts) > 1 or (version == 11 and not hosts):
        raise ProtocolError(400, "an HTTP/1.1 request needs exactly one Host header")
    if hosts and not HOST.fullmatch(hosts[0]):
        raise ProtocolError(400, "invalid Host header")
    if target[:1] != b"/" and target != b"*":
        # RFC 9112 §3.2.2: the target's authority replaces Host; members get origin-form.
        target, authority = origin_form(target)
        hosts = (authority,)
        headers = [h for h in headers if h[1] != b"host"]
        headers.insert(0, (b"Host", b"host", authority))
    if b"\\" in target:
        # Back ends read a backslash differently (IIS and WHATWG URLs: a "/"); encoded, it
        # is one thing for route matching and for the member alike, as Apache sends it.
        target = target.replace(b"\\", b"%5C")
    connection = frozenset(_tokens(found.get(b"connection")))
    keep_alive = b"close" not in connection if version == 11 else b"keep-alive" in connection
    upgrade = b""
    if b"upgrade" in connection and version == 11:  # RFC 9110 §7.8: ignored in HTTP/1.0
        upgrade = found.get(b"upgrade", (b"",))[0]
    expect = version == 11 and b"100-continue" in _tokens(found.get(b"expect"))
    return RequestHead(method, target, version, headers, length or 0, chunked, keep_alive,
                       connection, hosts[0] if hosts else b"", upgrade, expect)


def parse_response_head(head: bytes, request_method: bytes) -> ResponseHead:
    """Parse a member's response head; malformed answers raise ProtocolError(502)."""
    try:
        line, headers = _split_head(head)
    except ProtocolError as err:
        raise ProtocolError(502, f"bad response from member: {err.detail}") from None
    match = STATUS_LINE.fullmatch(line)
    if not match:
        raise ProtocolError(502, "bad status line from member")
    version, status = 10 + int(match.group(1)), int(match.group(2))
    reason = line[13:]
    found = _select(headers)
    connection = frozenset(_tokens(found.get(b"connection")))
    length: int | None  # None: until the member closes
    if status < 200 or status in (204, 304) or request_method == b"HEAD":
        length, chunked = 0, False
        if status >= 200:  # framing fields mean nothing here but must still be unambiguous
            _framing(found, version, request=False)
    else:
        length, chunked = _framing(found, version, request=False)
    keep_alive = (b"close" not in connection if version == 11 else
                  b"keep-alive" in connection) and (length is not None or chunked)
    if b"transfer-encoding" in found and b"content-length" in found:
        # RFC 9112 §6.3: Transfer-Encoding wins; the length is not forwarded and the
        # connection, which may be out of step, is not used again.
        headers = [field for field in headers if field[1] != b"content-length"]
        keep_alive = False
    return ResponseHead(version, status, reason, headers, length, chunked, keep_alive,
                        connection)


# --- bodies


@final  # sessions tell bodies apart with `type(body) is ...` (mypy narrows on final)
class LengthBody:
    """A body of known length: `take(n)` says how many of n available bytes are body."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def scan(self, buf: bytes | bytearray | memoryview, start: int, end: int) -> int:
        # (Compared, not min(): ~9x cheaper, and this runs per read of a body.)
        take = end - start if end - start < self.remaining else self.remaining
        self.remaining -= take
        return take


@final
class UntilClose:
    """A response body delimited by the member closing the connection."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def scan(self, buf: bytes | bytearray | memoryview, start: int, end: int) -> int:
        return end - start
