"""A prototype of the HTTP fast path's parsers, for docs/fast-path-notes.md and
scripts/bench-fastpath. Not wired into hbfork: the fast path belongs in proxy/http.

The idea: for the common head, find only what routing and framing need with a few C-level
scans, and forward the head mostly as received (cut out the hop-by-hop Connection line, append
X-Forwarded-*), instead of building a header list and re-joining it. Anything unusual returns
None, which means "take the full parser" (core.http11), so the full parser stays the one place
that decides every hard case: chunked, Transfer-Encoding, Upgrade, Expect, a repeated or odd
Content-Length or Host, hop-by-hop headers other than a plain Connection, X-Forwarded-* or
Proxy-* from the client, HTTP/1.0, CONNECT. The grammar check is the full parser's own regex
(one fullmatch over the header block), so the fast path accepts nothing the full one refuses.
"""

from __future__ import annotations

import re

from hbfork.core import http11

_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.1\r\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9]{2})(?: [^\r\n]*)?\r\n")
# In one pass over the lower-cased head: every field the fast path reads, and every field that
# sends a head to the full parser (anything but the first three, or any of them twice).
_NAME = rb"[!#$%&'*+\-.^_`|~0-9a-z]*"
_REQUEST_FIELDS = re.compile(
    rb"\r\n(host|content-length|connection|transfer-encoding|upgrade|expect|te|trailer|"
    rb"keep-alive|proxy-" + _NAME + rb"|x-forwarded-" + _NAME + rb"):")
_RESPONSE_FIELDS = re.compile(
    rb"\r\n(content-length|connection|transfer-encoding|upgrade|te|trailer|keep-alive|"
    rb"proxy-connection):")


def _value(head: bytes, name: bytes, lower: bytes) -> tuple[int, int, bytes]:
    """(line start, line end, value) of the field `name` (known to be there once)."""
    at = lower.find(b"\r\n" + name + b":")
    end = head.find(b"\r\n", at + 3 + len(name))
    return at, end, head[at + 3 + len(name):end].strip(b" \t")


def lean_request(head: bytes, client_ip: bytes) -> tuple | None:
    """(method, target, host, content_length, keep_alive, head for the member) for a common
    HTTP/1.1 request head (complete, as find_head delimits it); None: use the full parser."""
    line = _REQUEST_LINE.match(head)
    if line is None:
        return None
    start = line.end()
    if not http11._FIELDS.fullmatch(head, start, len(head) - 2):
        return None  # malformed: the full parser says what is wrong
    lower = head.lower()
    names = _REQUEST_FIELDS.findall(lower, start - 2)
    if b"host" not in names or len(set(names)) != len(names) or not {
            b"host", b"content-length", b"connection"}.issuperset(names):
        return None
    method, target = line.groups()
    if method == b"CONNECT":
        return None
    host = _value(head, b"host", lower)[2]
    if not http11._HOST.fullmatch(host):
        return None
    content_length = 0
    if b"content-length" in names:
        length = _value(head, b"content-length", lower)[2]
        if not http11._DIGITS.fullmatch(length):
            return None
        content_length = int(length)
    keep_alive = True
    forward = head[:-2]
    if b"connection" in names:
        at, end, token = _value(head, b"connection", lower)
        token = token.lower()
        if token not in (b"close", b"keep-alive"):
            return None  # tokens naming other fields to drop: the full parser's job
        keep_alive = token != b"close"
        forward = head[:at] + head[end:-2]
    forward += b"X-Forwarded-For: " + client_ip + b"\r\nX-Forwarded-Proto: http\r\n" + (
        b"X-Forwarded-Host: " + host + b"\r\n\r\n" if host else b"\r\n")
    return method, target, host, content_length, keep_alive, forward


def lean_response(head: bytes, keep_alive: bool) -> tuple | None:
    """(status, content_length, member keeps the connection, head for an HTTP/1.1 client) for
    a common response to a GET: HTTP/1.1, 2xx-5xx with a body framed by one Content-Length;
    None: use the full parser (chunked, 1xx/204/304, HEAD requests are its business)."""
    line = _STATUS_LINE.match(head)
    if line is None:
        return None
    status = int(line.group(1))
    start = line.end()
    if status in (204, 304) or not http11._FIELDS.fullmatch(head, start, len(head) - 2):
        return None
    lower = head.lower()
    names = _RESPONSE_FIELDS.findall(lower, start - 2)
    if b"content-length" not in names or len(set(names)) != len(names) or not {
            b"content-length", b"connection"}.issuperset(names):
        return None
    length = _value(head, b"content-length", lower)[2]
    if not http11._DIGITS.fullmatch(length):
        return None
    member_keeps = True
    forward = head[:-2]
    if b"connection" in names:
        at, end, token = _value(head, b"connection", lower)
        token = token.lower()
        if token not in (b"close", b"keep-alive"):
            return None
        member_keeps = token != b"close"
        forward = head[:at] + head[end:-2]
    forward += b"\r\n" if keep_alive else b"Connection: close\r\n\r\n"
    return status, int(length), member_keeps, forward
