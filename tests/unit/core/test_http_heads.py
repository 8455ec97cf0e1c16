"""hbfork.core.http_heads: the request head a member gets, the response head a client gets, and
the proxy's own answers."""

from __future__ import annotations

import re

import pytest

from hbfork.core.http11 import (
    Limits,
    RequestHead,
    find_head,
    parse_request_head,
    parse_response_head,
)
from hbfork.core.http_heads import (
    CONTINUE,
    error_response,
    http_date,
    request_head_for_member,
    response_head_for_client,
)
from tests.unit.core.test_http11 import refused, response, with_headers

LIMITS = Limits()
GET = b"GET /path?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n"


def request(raw: bytes) -> RequestHead:
    return parse_request_head(raw, LIMITS)


# --- rewriting the request for the member


def member_head(raw: bytes, client_ip: str = "192.0.2.7", forwarded: bool = True,
                host: bytes = b"10.0.0.1:80") -> bytes:
    return request_head_for_member(request(raw), client_ip, forwarded, member_host=host)


def header_lines(head: bytes) -> list[bytes]:
    return head.split(b"\r\n")[1:-2]


def values(head: bytes, name: bytes) -> list[bytes]:
    out = []
    for line in header_lines(head):
        key, _, value = line.partition(b":")
        if key.lower() == name:
            out.append(value.strip())
    return out


def test_member_head_keeps_the_request_line_and_host():
    out = member_head(GET)
    assert out.startswith(b"GET /path?q=1 HTTP/1.1\r\n")
    assert out.endswith(b"\r\n\r\n")
    assert values(out, b"host") == [b"example.test"]


def test_hop_by_hop_headers_are_removed():
    raw = with_headers(b"Host: x", b"Connection: keep-alive, X-Private", b"Keep-Alive: 5",
                       b"X-Private: secret", b"TE: trailers", b"Trailer: X-Sum",
                       b"Upgrade: h2c", b"Proxy-Connection: keep-alive",
                       b"Proxy-Authorization: Basic Zm9v", b"X-Kept: yes", start=b"GET /")
    out = member_head(raw)
    for name in (b"connection", b"keep-alive", b"x-private", b"te", b"trailer", b"upgrade",
                 b"proxy-connection", b"proxy-authorization"):
        assert values(out, name) == [], name
    assert values(out, b"x-kept") == [b"yes"]


def test_connection_cannot_remove_framing_or_host():
    raw = with_headers(b"Host: x", b"Connection: Content-Length, Host, Transfer-Encoding",
                       b"Content-Length: 5")
    out = member_head(raw)
    assert values(out, b"content-length") == [b"5"]
    assert values(out, b"host") == [b"x"]
    raw = with_headers(b"Host: x", b"Connection: transfer-encoding",
                       b"Transfer-Encoding: chunked")
    assert values(member_head(raw), b"transfer-encoding") == [b"chunked"]


def test_transfer_encoding_is_kept_with_the_raw_body():
    out = member_head(with_headers(b"Host: x", b"Transfer-Encoding: gzip, chunked"))
    assert values(out, b"transfer-encoding") == [b"gzip, chunked"]
    assert values(out, b"content-length") == []


def test_content_length_is_sent_once_as_a_plain_number():
    out = member_head(with_headers(b"Host: x", b"Content-Length: 5, 5",
                                   b"content-length: 5"))
    assert values(out, b"content-length") == [b"5"]
    out = member_head(with_headers(b"Host: x", b"Content-Length: 007"))
    assert values(out, b"content-length") == [b"7"]


def test_content_length_values_that_differ_only_in_leading_zeros_conflict():
    refused(with_headers(b"Host: x", b"Content-Length: 5", b"Content-Length: 05"))
    out = member_head(with_headers(b"Host: x", b"Content-Length: 0"))
    assert values(out, b"content-length") == [b"0"]


def test_upgrade_is_kept_only_when_upgrading():
    out = member_head(with_headers(b"Host: x", b"Connection: Upgrade", b"Upgrade: websocket",
                                   b"Sec-WebSocket-Key: k", start=b"GET /ws"))
    assert values(out, b"connection") == [b"Upgrade"]
    assert values(out, b"upgrade") == [b"websocket"]
    assert values(out, b"sec-websocket-key") == [b"k"]
    out = member_head(with_headers(b"Host: x", b"Upgrade: websocket", start=b"GET /ws"))
    assert values(out, b"upgrade") == [] and values(out, b"connection") == []


def test_expect_continue_is_answered_by_the_proxy_not_forwarded():
    out = member_head(with_headers(b"Host: x", b"Content-Length: 5", b"Expect: 100-continue"))
    assert values(out, b"expect") == []


def test_x_forwarded_headers_are_added():
    out = member_head(GET, client_ip="192.0.2.7")
    assert values(out, b"x-forwarded-for") == [b"192.0.2.7"]
    assert values(out, b"x-forwarded-proto") == [b"http"]
    assert values(out, b"x-forwarded-host") == [b"example.test"]


def test_a_client_sent_x_forwarded_for_is_a_prior_hop_not_the_client():
    raw = with_headers(b"Host: x", b"X-Forwarded-For: 10.9.9.9",
                       b"X-Forwarded-For: 10.8.8.8, 10.7.7.7", b"X-Forwarded-Proto: https",
                       b"X-Forwarded-Host: evil.test", b"X-Forwarded-Port: 1",
                       start=b"GET /")
    out = member_head(raw, client_ip="192.0.2.7")
    assert values(out, b"x-forwarded-for") == [b"10.9.9.9, 10.8.8.8, 10.7.7.7, 192.0.2.7"]
    assert values(out, b"x-forwarded-proto") == [b"http"]
    assert values(out, b"x-forwarded-host") == [b"x"]
    assert values(out, b"x-forwarded-port") == []


def test_forwarded_headers_can_be_turned_off():
    raw = with_headers(b"Host: x", b"X-Forwarded-For: 10.9.9.9", start=b"GET /")
    out = member_head(raw, forwarded=False)
    assert values(out, b"x-forwarded-for") == [b"10.9.9.9"]
    assert values(out, b"x-forwarded-proto") == []


def test_http10_request_goes_upstream_as_http11_with_a_host():
    out = member_head(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                      host=b"10.0.0.1:8080")
    assert out.startswith(b"GET /old HTTP/1.1\r\n")
    assert values(out, b"host") == [b"10.0.0.1:8080"]
    assert values(out, b"connection") == []
    assert values(out, b"x-forwarded-host") == []


# --- rewriting the response for the client


def test_response_head_for_a_keep_alive_http11_client():
    r = response(b"HTTP/1.1 200 Fine\r\nContent-Length: 3\r\nConnection: keep-alive, X-Hop\r\n"
                 b"Keep-Alive: timeout=5\r\nX-Hop: 1\r\nX-Backend: a\r\n\r\n")
    out = response_head_for_client(r, keep_alive=True, dechunk=False, client_version=11)
    assert out.startswith(b"HTTP/1.1 200 Fine\r\n")
    assert values(out, b"content-length") == [b"3"]
    assert values(out, b"x-backend") == [b"a"]
    for name in (b"connection", b"keep-alive", b"x-hop"):
        assert values(out, name) == [], name


def test_response_head_when_closing():
    r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
    out = response_head_for_client(r, keep_alive=False, dechunk=False, client_version=11)
    assert values(out, b"connection") == [b"close"]


def test_response_head_for_http10_keep_alive():
    r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
    out = response_head_for_client(r, keep_alive=True, dechunk=False, client_version=10)
    assert out.startswith(b"HTTP/1.0 200 OK\r\n")
    assert values(out, b"connection") == [b"keep-alive"]


def test_response_head_dechunked_for_http10():
    r = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    out = response_head_for_client(r, keep_alive=False, dechunk=True, client_version=10)
    assert values(out, b"transfer-encoding") == []
    assert values(out, b"content-length") == []
    assert values(out, b"connection") == [b"close"]
    out = response_head_for_client(r, keep_alive=True, dechunk=False, client_version=11)
    assert values(out, b"transfer-encoding") == [b"chunked"]


def test_member_connection_header_cannot_remove_content_length():
    r = response(b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\n")
    out = response_head_for_client(r, keep_alive=True, dechunk=False, client_version=11)
    assert values(out, b"content-length") == [b"3"]


def test_switching_protocols_head():
    r = response(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                 b"Upgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\r\n")
    out = response_head_for_client(r, keep_alive=True, dechunk=False, client_version=11)
    assert values(out, b"connection") == [b"Upgrade"]
    assert values(out, b"upgrade") == [b"websocket"]
    assert values(out, b"sec-websocket-accept") == [b"a"]


@pytest.mark.parametrize("line", [b"HTTP/1.1 200", b"HTTP/1.1 200 "])
def test_an_empty_reason_stays_empty_as_on_the_fast_path(line):
    r = response(line + b"\r\nContent-Length: 0\r\n\r\n")
    out = response_head_for_client(r, keep_alive=True, dechunk=False, client_version=11)
    assert out.startswith(b"HTTP/1.1 200 \r\n")


def test_the_proxys_own_answers_have_a_date_and_standard_reasons():
    out = error_response(403, date="Mon, 07 Dec 2026 08:00:00 GMT")
    assert out.startswith(b"HTTP/1.1 403 Forbidden\r\nDate: Mon, 07 Dec 2026 08:00:00 GMT\r\n")
    assert error_response(404).startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert error_response(429).startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


# --- the proxy's own responses


def parsed_error(raw: bytes, method: bytes = b"GET"):
    end = find_head(raw, 0, 65536, 65536, request=False)
    return parse_response_head(raw[:end], method), raw[end:]


@pytest.mark.parametrize("status", [400, 408, 413, 414, 431, 501, 502, 503, 504, 505])
def test_error_responses_are_short_and_well_framed(status):
    raw = error_response(status, "why it failed")
    head, body = parsed_error(raw)
    assert head.status == status and head.content_length == len(body)
    assert body.startswith(b"%d " % status) and b"why it failed" in body
    assert not head.keep_alive and len(raw) < 300


def test_error_response_keep_alive_and_extra_headers():
    raw = error_response(503, "no member", keep_alive=True, extra=(("Retry-After", "1"),))
    head, _ = parsed_error(raw)
    assert head.keep_alive
    assert (b"Retry-After", b"retry-after", b"1") in head.headers


def test_error_response_to_head_has_no_body():
    raw = error_response(502, "x", head_only=True)
    head, body = parsed_error(raw, b"HEAD")
    assert body == b"" and head.content_length == 0
    assert b"Content-Length: " in raw  # the length the body would have had


def test_continue_is_a_complete_interim_response():
    assert response(CONTINUE).status == 100 and CONTINUE.endswith(b"\r\n\r\n")



def test_rewritten_heads_have_only_crlf_line_ends():
    out = member_head(with_headers(b"Host: x", b"X-A: 1", start=b"GET /"))
    assert not re.search(rb"[^\r]\n", out)
