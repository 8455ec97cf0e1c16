"""The two head writers of hbfork.core.http_heads agree: what a lean request or response
(hbfork.core.lean) is written as equals what the full writer makes of the same head parsed in
full, for heads spelled the way the full writer spells them. By table."""

from __future__ import annotations

import pytest

from hbfork.core.http11 import Limits, parse_request_head, parse_response_head
from hbfork.core.http_heads import (
    lean_request_for_member,
    lean_response_for_client,
    request_head_for_member,
    response_head_for_client,
)
from hbfork.core.lean import lean_request, lean_response

LIMITS = Limits(8190, 65536, 1 << 20)
FORWARDED = b"X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: http\r\n"

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
    b"GET /x?y=1 HTTP/1.1\r\nHost: a.example:8080\r\nAccept: */*\r\nCookie: a=b\r\n\r\n",
    b"DELETE /item/7 HTTP/1.1\r\nUser-Agent: t\r\nHost: a.example\r\nX-Trace: 1\r\n\r\n",
    b"GET /close HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\nAccept: */*\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\n\r\n",
]
# (the route's target for the member, replace the Host with the member's, X-Forwarded-*)
ROUTES = [(b"", False, True), (b"/app/x", False, True), (b"", True, True), (b"/y", True, False)]


@pytest.mark.parametrize("head", REQUESTS)
@pytest.mark.parametrize(("member_target", "replace_host", "forwarded"), ROUTES)
def test_request_writers_agree(head: bytes, member_target: bytes, replace_host: bool,
                               forwarded: bool) -> None:
    lean = lean_request(head, LIMITS.max_request_line)
    assert lean is not None, "the corpus holds lean heads only"
    method, target, host, _, forward = lean
    fast = lean_request_for_member(forward, method, target, member_target,
                                   b"10.0.0.2:80" if replace_host else None,
                                   FORWARDED if forwarded else None, host)
    full = request_head_for_member(parse_request_head(head, LIMITS), "198.51.100.7", forwarded,
                                   b"http", b"10.0.0.2:80", member_target or None, replace_host)
    assert fast == full


RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\n\r\n",
]


@pytest.mark.parametrize("head", RESPONSES)
@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("extra", [b"", b"Strict-Transport-Security: max-age=60\r\n"])
def test_response_writers_agree(head: bytes, keep_alive: bool, extra: bytes) -> None:
    assert lean_response(head) is not None, "the corpus holds lean heads only"
    fast = lean_response_for_client(head, keep_alive, extra)
    full = response_head_for_client(parse_response_head(head, b"GET"), keep_alive, False,
                                    11, None, (extra[:-2],) if extra else ())
    assert fast == full
