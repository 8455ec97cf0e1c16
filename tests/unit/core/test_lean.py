"""hbfork.core.lean: the fast path's head parsers. What they accept must mean exactly what the
full parser (hbfork.core.http11 + http_heads) makes of it; everything else, every
request-smuggling case included, must be left to the full parser (None)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import Limits, parse_request_head, parse_response_head
from hbfork.core.http_heads import request_head_for_member, response_head_for_client
from hbfork.core.lean import (
    field_value,
    field_values,
    lean_request,
    lean_response,
    replace_host,
    without_hop_fields,
)
from tests.unit.core.test_http11 import SMUGGLING

LIMITS = Limits()
MAX_LINE = LIMITS.max_request_line

COMMON_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",  # wrk
    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n",
    b"GET /app/page?id=7&x=%20 HTTP/1.1\r\nHost: shop.example.com\r\nConnection: keep-alive\r\n"
    b"sec-ch-ua: \"Chromium\";v=\"120\"\r\nUpgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n"
    b"Cookie: JSESSIONID=abc.node1; theme=dark\r\nReferer: https://shop.example.com/\r\n\r\n",
    b"DELETE /api/v1/items/3 HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n"
    b"Authorization: Bearer x\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: \t Example.COM \t\r\nconnection: CLOSE\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
]
COMMON_RESPONSES = [
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 10:25:44 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: 612\r\n"
    b"Last-Modified: Thu, 03 Dec 2026 10:00:00 GMT\r\nConnection: keep-alive\r\n"
    b"ETag: \"abc-264\"\r\nAccept-Ranges: bytes\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nDate: Thu, 03 Dec 2026 10:25:44 GMT\r\nServer: Apache/2.4.57\r\n"
    b"Content-Length: 45\r\nKeep-Alive: timeout=5, max=100\r\nConnection: Keep-Alive\r\n"
    b"Content-Type: text/html\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
    b"Connection: close\r\n\r\n",
    b"HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.2:8080/app/\r\nContent-Length: 0\r\n\r\n",
]


def fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, value) of every field, in order, as the full parser reads them."""
    return [(lower, value) for _, lower, value in parse_request_head(head, LIMITS).headers] \
        if not head.startswith(b"HTTP/") else \
        [(lower, value) for _, lower, value in parse_response_head(head, b"GET").headers]


def without(items: list[tuple[bytes, bytes]], *names: bytes) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in items if name not in names]


def check_request(head: bytes) -> bool:
    """Whatever lean_request accepts, the full parser accepts and reads the same; the head it
    forwards reaches the member with the fields the full path sends. True if it was taken."""
    lean = lean_request(head, MAX_LINE)
    if lean is None:
        return False
    method, target, host, keep_alive, forward = lean
    full = parse_request_head(head, LIMITS)  # must not raise
    assert (full.method, full.target, full.host, full.keep_alive, full.version) == \
        (method, target, host, keep_alive, 11)
    assert not full.has_body and not full.upgrade and not full.expect_continue
    ours = fields(forward + b"\r\n")
    theirs = fields(request_head_for_member(full, "192.0.2.1", forwarded=False))
    # A client's Connection: keep-alive is forwarded as our own option; the full path drops it.
    assert without(ours, b"connection") == theirs
    assert (b"connection", b"close") not in [(n, v.lower()) for n, v in ours]
    return True


def check_response(head: bytes) -> bool:
    """Whatever lean_response accepts, the full parser reads the same, and what the fast path
    sends a keep-alive client carries the fields the full path would send."""
    lean = lean_response(head)
    if lean is None:
        return False
    status, length, member_keeps, verbatim = lean
    full = parse_response_head(head, b"GET")
    assert (full.status, full.content_length, full.keep_alive, full.chunked, full.version) == \
        (status, length, member_keeps, False, 11)
    client_head = response_head_for_client(full, True, False, 11)
    expected = fields(client_head)
    if verbatim:
        assert without(fields(head), b"connection") == expected
        assert all(v.lower() == b"keep-alive" for n, v in fields(head) if n == b"connection")
    assert fields(without_hop_fields(head) + b"\r\n") == expected
    return True


@pytest.mark.parametrize("head", COMMON_REQUESTS)
def test_common_requests_are_taken_and_mean_the_same(head: bytes) -> None:
    assert check_request(head)


def test_the_forwarded_head_is_the_received_one_when_nothing_is_cut() -> None:
    head = COMMON_REQUESTS[2]
    assert lean_request(head, MAX_LINE)[4] == head[:-2]  # type: ignore[index]
    closing = COMMON_REQUESTS[4]
    forward = lean_request(closing, MAX_LINE)[4]  # type: ignore[index]
    assert forward == b"GET / HTTP/1.1\r\nhost: \t Example.COM \t\r\n"


@pytest.mark.parametrize("head", COMMON_RESPONSES)
def test_common_responses_are_taken_and_mean_the_same(head: bytes) -> None:
    assert check_response(head)


def test_which_responses_may_go_as_received() -> None:
    nginx, apache, close, empty, redirect = (lean_response(h) for h in COMMON_RESPONSES)
    assert nginx == (200, 612, True, True)
    assert apache == (200, 45, True, False)   # Keep-Alive: timeout=... is the member's
    assert close == (404, 9, False, False)   # its close must not reach a keep-alive client
    assert empty == (503, 0, True, True)
    assert redirect == (302, 0, True, True)
    assert lean_response(COMMON_RESPONSES[4], mapped=True) is None  # Location: mapped back


@pytest.mark.parametrize("lines", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_no_request_smuggling_case_takes_the_lean_path(lines: list[bytes]) -> None:
    for start in (b"GET /", b"POST /upload"):
        head = start + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(x + b"\r\n" for x in lines) \
            + b"\r\n"
        assert lean_request(head, MAX_LINE) is None, head
        response = b"HTTP/1.1 200 OK\r\n" + b"".join(x + b"\r\n" for x in lines) + b"\r\n"
        assert lean_response(response) is None, response


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nHost: x\rX-Evil: 1\r\n\r\n",           # bare CR
    b"GET / HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n",  # bare LF
    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",                        # HTTP/1.0
    b"GET / HTTP/1.1\r\n\r\n",                                   # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",             # two Hosts
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",                      # not an authority
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",   # a body
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-hop\r\nX-Hop: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: 300\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",                       # two spaces
    b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\nHost: a\r\n\r\n",  # request line too long
])
def test_anything_unusual_is_left_to_the_full_parser(head: bytes) -> None:
    assert lean_request(head, MAX_LINE) is None


@pytest.mark.parametrize("head", [
    b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n",                                   # read until close
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close, x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTrailer: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nProxy-Connection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX: a\nY: b\r\n\r\n",  # bare LF
    b"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n",
])
def test_unusual_responses_are_left_to_the_full_parser(head: bytes) -> None:
    assert lean_response(head) is None


def test_replace_host_and_field_value() -> None:
    forward = lean_request(COMMON_REQUESTS[1], MAX_LINE)[4]  # type: ignore[index]
    replaced = replace_host(forward, b"10.0.0.2:8080")
    parsed = dict(fields(replaced + b"\r\n"))
    assert parsed == {b"host": b"10.0.0.2:8080", b"user-agent": b"curl/7.88.1",
                      b"accept": b"*/*"}
    last = b"GET / HTTP/1.1\r\nAccept: */*\r\nHost: a\r\n"  # Host as the last field
    assert dict(fields(replace_host(last, b"m:1") + b"\r\n")) == {b"accept": b"*/*",
                                                                  b"host": b"m:1"}
    browser = COMMON_REQUESTS[2]
    assert field_value(browser, b"referer") == b"https://shop.example.com/"
    assert field_value(browser, b"user-agent") == b"Mozilla/5.0 (X11; Linux x86_64)"
    assert field_value(browser, b"x-missing") == b""


# --- fuzz: random edits of realistic heads

_PIECES = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b",", b"\x00", b"\x7f", b"\xe9", b"0",
           b"5", b"chunked", b"Host: x\r\n", b"Content-Length: 0\r\n", b"Content-Length: 5\r\n",
           b"Connection: close\r\n", b"Connection: keep-alive\r\n", b"Transfer-Encoding: ",
           b"Keep-Alive: 5\r\n", b"Upgrade: x\r\n", b"Expect: 100-continue\r\n", b"TE: x\r\n",
           b"X-Forwarded-For: 1\r\n", b"Proxy-Connection: x\r\n", b"HTTP/1.0", b"HTTP/1.1",
           b"Location: /x\r\n", b"Set-Cookie: a=b\r\n"]


def _mutate(head: bytes, rng: random.Random, edits: int) -> bytes:
    data = bytearray(head)
    for _ in range(edits):
        at = rng.randrange(len(data) + 1)
        kind = rng.random()
        if kind < 0.45:
            data[at:at] = rng.choice(_PIECES)
        elif kind < 0.7 and data:
            del data[at:at + rng.randint(1, 4)]
        elif kind < 0.85 and at < len(data):
            data[at] = rng.randrange(256)
        else:
            data[at:at] = bytes(data[at:at + rng.randint(1, 12)]).swapcase()
    return bytes(data)


def _complete(data: bytes) -> bytes | None:
    """The head as find_head delimits it, if the bytes hold one."""
    end = data.find(b"\r\n\r\n")
    return data[:end + 4] if end >= 0 else None


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(0, 4))
def test_fuzzed_requests_are_read_by_both_parsers_alike(seed: int, edits: int) -> None:
    rng = random.Random(seed)
    head = _complete(_mutate(rng.choice(COMMON_REQUESTS), rng, edits))
    if head is None:
        return
    try:
        check_request(head)
    except ProtocolError as err:  # the full parser refused what the lean one took
        raise AssertionError(f"lean took a head the full parser refuses ({err}): {head!r}")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(0, 4))
def test_fuzzed_responses_are_read_by_both_parsers_alike(seed: int, edits: int) -> None:
    rng = random.Random(seed)
    head = _complete(_mutate(rng.choice(COMMON_RESPONSES), rng, edits))
    if head is None:
        return
    try:
        check_response(head)
    except ProtocolError as err:
        raise AssertionError(f"lean took a head the full parser refuses ({err}): {head!r}")


def test_the_fuzz_exercises_both_outcomes() -> None:
    """The property above is not vacuous: edited heads are often still lean, often not."""
    rng = random.Random(7)
    taken = [check_request(h) for _ in range(2000)
             if (h := _complete(_mutate(rng.choice(COMMON_REQUESTS), rng, 2))) is not None]
    assert 0.1 < sum(taken) / len(taken) < 0.9, sum(taken) / len(taken)


def test_field_values_finds_every_field_of_a_name() -> None:
    head = (b"GET / HTTP/1.1\r\nHost: h\r\ncookie: a=1\r\nX: y\r\nCOOKIE:  b=2 \r\n"
            b"Set-Cookie: no\r\n\r\n")
    assert field_values(head, b"cookie") == [b"a=1", b"b=2"]
    assert field_values(head, b"referer") == []
