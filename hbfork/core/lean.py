"""Lean head parsing for the HTTP fast path: the common request and response heads, read with a
few C-level scans and forwarded mostly as received.

The full parser (hbfork.core.http11 + http_heads) builds a list of every field and rebuilds
each head line by line; for a plain GET and its 200 that is most of a worker's CPU. These
functions take only heads whose every feature they can handle exactly as the full path would,
and answer None for anything else, which means "use the full parser". So the full parser stays
the one place that decides every hard case: chunked bodies, any Transfer-Encoding, Upgrade,
Expect, TE, Trailer, a repeated or odd Content-Length or Host, hop-by-hop headers other than a
plain Connection, X-Forwarded-* or Proxy-* from the client, HTTP/1.0, CONNECT, interim, 204 and
304 responses. The grammar check is the full parser's own regex (one fullmatch over the field
block), so a lean head is never one that the full parser would refuse.

What is forwarded differs from the full path's output only in spelling the full path
normalises: header-name case and the spaces around values are kept as received.
"""

from __future__ import annotations

import re

from hbfork.core.grammar import (
    DIGITS,
    FIELDS,
    HOST,
    LEAN_REQUEST_LINE,
    LEAN_STATUS_LINE,
    LOWER_NAME,
)
from hbfork.core.http11 import RequestHead, ResponseHead

_NAME = LOWER_NAME
_VALUE = rb":[ \t]*([^\r]*)"  # up to the CRLF (the grammar was checked): trailing blanks too
# In one pass over the lower-cased head, (name, value) of the fields the fast path reads, and
# of every field that sends the head to the full parser instead.
_REQUEST_FIELDS = re.compile(
    rb"\r\n(host|content-length|connection|transfer-encoding|upgrade|expect|te|trailer|"
    rb"keep-alive|proxy-" + _NAME + rb"|x-forwarded-" + _NAME + rb")" + _VALUE)
_RESPONSE_FIELDS = re.compile(
    rb"\r\n(content-length|connection|keep-alive|transfer-encoding|upgrade|te|trailer|"
    rb"proxy-connection)" + _VALUE)
# With ProxyPassReverse on the route, heads carrying what it maps go to the full path.
_MAPPED_RESPONSE_FIELDS = re.compile(
    rb"\r\n(content-length|connection|keep-alive|transfer-encoding|upgrade|te|trailer|"
    rb"proxy-connection|location|content-location|uri|set-cookie)" + _VALUE)
_CONNECTION_VALUES = {b"close": False, b"keep-alive": True}
_HOP_LINES = (b"\r\nconnection:", b"\r\nkeep-alive:")

# (method, target, host, keep_alive, head to forward without its final CRLF)
LeanRequest = tuple[bytes, bytes, bytes, bool, bytes]
# (status, content_length, the member keeps the connection, forward as received to a client
#  that keeps the connection open)
LeanResponse = tuple[int, int, bool, bool]


def _cut_line(head: bytes, lower: bytes, needle: bytes) -> bytes:
    """`head` without the field line that starts with `needle` (CRLF, lower-case name, colon),
    which is there."""
    at = lower.find(needle)
    end = lower.find(b"\r\n", at + len(needle))
    return head[:at] + head[end:]


def lean_request(head: bytes, max_line: int) -> LeanRequest | None:
    """A common HTTP/1.1 request head without a body (complete, as find_head delimits it), or
    None: the full parser must read it. The head to forward lacks only the X-Forwarded-* fields
    and the final CRLF. A client's `Connection: keep-alive` is kept (it is our own option
    towards the member too); `Connection: close` is cut (we keep the member connection)."""
    line = LEAN_REQUEST_LINE.match(head)
    if line is None:
        return None
    start = line.end()
    if start - 2 > max_line or not FIELDS.fullmatch(head, start, len(head) - 2):
        return None  # too long, or malformed: the full parser says what is wrong
    method, target = line.groups()
    if method == b"CONNECT" or (target[:1] != b"/" and target != b"*") or b"\\" in target:
        return None  # absolute-form and backslashes are rewritten by the full parser
    lower = head.lower()
    hosts = 0
    keep_alive = True
    connection = length = False
    for name, value in _REQUEST_FIELDS.findall(lower, start - 2):
        if name == b"host":
            hosts += 1
        elif name == b"connection" and not connection:
            connection = True
            keep = _CONNECTION_VALUES.get(value.rstrip(b" \t"))
            if keep is None:
                return None  # tokens naming other fields to drop: the full parser's job
            keep_alive = keep
        elif name == b"content-length" and not length and value.rstrip(b" \t") == b"0":
            length = True
        else:
            return None  # a body, a hop-by-hop field, a proxy's field, or a repeated one
    if hosts != 1:
        return None
    at = lower.find(b"\r\nhost:", start - 2) + 7
    host = head[at:head.find(b"\r\n", at)].strip(b" \t")
    if not HOST.fullmatch(host):
        return None
    forward = head[:-2]
    if not keep_alive:
        forward = _cut_line(forward, lower, b"\r\nconnection:")
    return method, target, host, keep_alive, forward


def lean_response(head: bytes, mapped: bool = False) -> LeanResponse | None:
    """A common response head (HTTP/1.1, 2xx-5xx but 204 and 304, a body framed by exactly one
    Content-Length) to a request other than HEAD, or None: the full parser must read it.
    `mapped`: the route maps member URLs back (ProxyPassReverse), so a head with a field it
    rewrites (Location, Content-Location, URI, Set-Cookie) is the full path's.

    The head may go to a client as received when the connection stays open and the member sent
    no hop-by-hop field but `Connection: keep-alive` (which is then our own option too);
    otherwise without_hop_fields() makes the head to send."""
    line = LEAN_STATUS_LINE.match(head)
    if line is None:
        return None
    status = int(line.group(1))
    start = line.end()
    if status == 204 or status == 304 or not FIELDS.fullmatch(head, start, len(head) - 2):
        return None
    length = -1
    member_keeps = True
    connection = keep_alive_field = False
    for name, value in (_MAPPED_RESPONSE_FIELDS if mapped else _RESPONSE_FIELDS).findall(
            head.lower(), start - 2):
        if name == b"content-length" and length < 0:
            value = value.rstrip(b" \t")
            if not DIGITS.fullmatch(value):
                return None
            length = int(value)
        elif name == b"connection" and not connection:
            connection = True
            keep = _CONNECTION_VALUES.get(value.rstrip(b" \t"))
            if keep is None:
                return None
            member_keeps = keep
        elif name == b"keep-alive" and not keep_alive_field:
            keep_alive_field = True
        else:
            return None  # framing or hop-by-hop fields for the full parser, or a repeat
    if length < 0:
        return None
    return status, length, member_keeps, member_keeps and not keep_alive_field


NO_TOKENS: frozenset[bytes] = frozenset()
CACHE_ENTRIES = 1024   # per kind and worker
CACHE_HEAD_MAX = 1024  # longer heads are parsed every time (memory stays ~2 MiB per kind)


class LeanCache:
    """The lean parses of the heads a worker sees, remembered. Most heads repeat byte for byte
    (the same GET from many clients; a member's response head for a whole second, until its
    Date changes) and the parse is a pure function of the bytes, so a dictionary lookup replaces
    it. The parse comes with the RequestHead / ResponseHead the session keeps (never changed
    once made, so one object serves every exchange with that head). A full cache is emptied:
    heads that never repeat cost a lookup and an insert, and memory stays bounded."""

    __slots__ = ("mapped", "max_line", "requests", "responses")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.requests: dict[bytes, tuple[RequestHead, bytes] | None] = {}
        self.responses: dict[bytes, tuple[ResponseHead, bool] | None] = {}
        self.mapped: dict[bytes, tuple[ResponseHead, bool] | None] = {}

    def request(self, head: bytes) -> tuple[RequestHead, bytes] | None:
        """(the request, the head to forward without X-Forwarded-* and final CRLF), or None."""
        try:
            return self.requests[head]
        except KeyError:
            pass
        lean = lean_request(head, self.max_line)
        found = None
        if lean is not None:
            method, target, host, keep_alive, forward = lean
            found = (RequestHead(method, target, 11, [], 0, False, keep_alive, NO_TOKENS, host,
                                 b"", False), forward)
        if len(head) <= CACHE_HEAD_MAX:
            if len(self.requests) >= CACHE_ENTRIES:
                self.requests.clear()
            self.requests[head] = found
        return found

    def response(self, head: bytes, mapped: bool) -> tuple[ResponseHead, bool] | None:
        """(the response, whether it may go to a keep-alive client as received), or None."""
        cache = self.mapped if mapped else self.responses
        try:
            return cache[head]
        except KeyError:
            pass
        lean = lean_response(head, mapped)
        found = None
        if lean is not None:
            status, length, member_keeps, verbatim = lean
            found = (ResponseHead(11, status, b"", [], length, False, member_keeps, NO_TOKENS),
                     verbatim)
        if len(head) <= CACHE_HEAD_MAX:
            if len(cache) >= CACHE_ENTRIES:
                cache.clear()
            cache[head] = found
        return found


def without_hop_fields(head: bytes) -> bytes:
    """A lean response head without its final CRLF and without Connection and Keep-Alive."""
    lower = head.lower()
    head = head[:-2]
    for needle in _HOP_LINES:
        if needle in lower:
            head = _cut_line(head, head.lower(), needle)
    return head


def replace_host(forward: bytes, host: bytes) -> bytes:
    """`forward` (a lean request's head, which has one Host field) with `host` as its Host: the
    member's own authority, for a route that does not preserve the client's."""
    at = forward.lower().find(b"\r\nhost:")
    end = forward.find(b"\r\n", at + 2)
    return forward[:at] + b"\r\nHost: " + host + (forward[end:] if end >= 0 else b"")


def field_values(head: bytes, name: bytes) -> list[bytes]:
    """The values of every field `name` (lower-case) in a head, in order: the Cookie fields
    of a lean request, for its sticky session."""
    lower = head.lower()
    needle = b"\r\n" + name + b":"
    out = []
    at = lower.find(needle)
    while at >= 0:
        start = at + len(needle)
        end = head.find(b"\r\n", start)
        out.append(head[start:end].strip(b" \t"))
        at = lower.find(needle, end)
    return out


def field_value(head: bytes, name: bytes) -> bytes:
    """The value of the first field `name` (lower-case) in a head, b"" if there is none: the
    access log's Referer and User-Agent of a lean request."""
    at = head.lower().find(b"\r\n" + name + b":")
    if at < 0:
        return b""
    value_at = at + 3 + len(name)
    return head[value_at:head.find(b"\r\n", value_at)].strip(b" \t")
