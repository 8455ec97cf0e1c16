"""hbfork.core.ajp_http: a container's events as the HTTP response the relay reads (framing,
and the rule that it completes only at END_RESPONSE), and the request's fields for AJP."""

from __future__ import annotations

import pytest

from hbfork.core import http11
from hbfork.core.ajp import AjpError, BodyChunk, Cpong, EndResponse, GetBodyChunk, Headers
from hbfork.core.ajp_http import SMALL, ResponseFramer, request_fields, server_name
from hbfork.core.http11 import Limits

OK = Headers(200, b"OK", ((b"Content-Type", b"text/plain"),))
SIZED = Headers(200, b"OK", ((b"Content-Length", b"5"),))


def test_a_small_response_goes_out_whole_at_the_end() -> None:
    framer = ResponseFramer(False)
    assert framer.feed([SIZED, BodyChunk(b"hel")]) == b""
    assert framer.feed([BodyChunk(b"lo")]) == b""
    assert framer.feed([EndResponse(True)]) == \
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert framer.ended and framer.reuse
    framer = ResponseFramer(False)
    assert framer.feed([OK, BodyChunk(b"abc"), BodyChunk(b""), BodyChunk(b"de"),
                        EndResponse(False)]).endswith(
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert not framer.reuse


def test_a_large_length_body_streams_and_holds_its_last_byte_until_the_end() -> None:
    size = SMALL + 10
    framer = ResponseFramer(False)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
    assert framer.feed([Headers(200, b"OK", ((b"Content-Length", b"%d" % size),)),
                        BodyChunk(b"a" * 8000)]) == head + b"a" * 8000
    assert framer.feed([BodyChunk(b"b" * (size - 8000))]) == b"b" * (size - 8001)
    assert framer.feed([EndResponse(True)]) == b"b"


def test_a_large_chunked_body_streams_once_past_small() -> None:
    framer = ResponseFramer(False)
    assert framer.feed([OK, BodyChunk(b"x" * 100)]) == b""
    out = framer.feed([BodyChunk(b"y" * SMALL)])
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"y" * SMALL + b"\r\n")
    assert b"64\r\n" + b"x" * 100 in out
    assert framer.feed([BodyChunk(b"z")]) == b"1\r\nz\r\n"
    assert framer.feed([EndResponse(True)]) == b"0\r\n\r\n"


@pytest.mark.parametrize(("head_only", "event"), [
    (True, SIZED), (False, Headers(204, b"No Content", ())),
    (False, Headers(304, b"", ())), (False, Headers(200, b"OK", ((b"content-length", b"0"),)))])
def test_bodiless_answers_hold_the_head_until_the_end(head_only, event) -> None:
    framer = ResponseFramer(head_only)
    assert framer.feed([event]) == b""
    head = framer.feed([BodyChunk(b"x" if head_only else b""), EndResponse(True)])
    assert head.startswith(b"HTTP/1.1 %d" % event.status) and head.endswith(b"\r\n\r\n")
    parsed = http11.parse_response_head(head, b"HEAD" if head_only else b"GET")
    assert parsed.status == event.status and not parsed.chunked


def test_interim_heads_are_skipped_and_asks_and_pongs_recorded() -> None:
    framer = ResponseFramer(False)
    assert framer.feed([Headers(103, b"Early", ()), GetBodyChunk(100), Cpong()]) == b""
    assert framer.asked == 100 and framer.pong and framer.mode == 0


@pytest.mark.parametrize("events", [
    [BodyChunk(b"x")], [EndResponse(True)], [OK, OK], [SIZED, BodyChunk(b"123456")],
    [SIZED, BodyChunk(b"12"), EndResponse(True)], [OK, EndResponse(True), BodyChunk(b"x")],
    [Headers(200, b"OK", ((b"Content-Length", b"5"), (b"Content-Length", b"6")))],
    [Headers(200, b"OK", ((b"Content-Length", b"-1"),))],
    [Headers(200, b"OK\r\nX: y", ())],
])
def test_impossible_sequences_are_malformed(events) -> None:
    with pytest.raises(AjpError):
        ResponseFramer(False).feed(events)


def test_request_fields_drop_hop_by_hop_and_frame_the_length() -> None:
    head = http11.parse_request_head(
        b"POST /x HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        b"Content-Length: 3\r\nExpect: 100-continue\r\nProxy-Authorization: x\r\n"
        b"Keep-Alive: 5\r\nX-Custom: v\r\n\r\n", Limits())
    assert request_fields(head, None) == [(b"Host", b"a.example"), (b"content-length", b"3"),
                                          (b"X-Custom", b"v")]
    assert request_fields(head, b"10.0.0.1:8009")[0] == (b"host", b"10.0.0.1:8009")
    chunked = http11.parse_request_head(b"PUT / HTTP/1.1\r\nHost: h\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n", Limits())
    assert request_fields(chunked, None) == [(b"Host", b"h"),
                                             (b"transfer-encoding", b"chunked")]


def test_server_name() -> None:
    assert server_name(b"www.example.com:8080", b"d") == b"www.example.com"
    assert server_name(b"[::1]:80", b"d") == b"[::1]"
    assert server_name(b"", b"d") == b"d"
