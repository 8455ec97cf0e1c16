"""hbfork.core.ajp_lean: the fast path's FORWARD_REQUEST is byte for byte the general path's,
the client head made from a SEND_HEADERS payload is what the general path writes (or None
where the fast path must not answer), split_response() takes exactly the common shape of a
whole answer (and agrees with the decoder on everything it takes), and the cache serves a
head's parts only for the route, member and listener they were made for."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.core import ajp, http11
from hbfork.core.ajp_http import request_fields, server_name
from hbfork.core.ajp_lean import (
    CACHE_ENTRIES,
    AjpLeanCache,
    client_head,
    request_parts,
    response_prefix,
    split_response,
)

LIMITS = http11.Limits()
# What Tomcat 10 answered the bench servlet (captured): SEND_HEADERS with reason "200",
# Content-Type and Content-Length as codes, one SEND_BODY_CHUNK (with its trailing NUL) and
# END_RESPONSE with reuse.
TOMCAT_HEADERS = (b"\x04\x00\xc8\x00\x03200\x00\x00\x02\xa0\x01\x00\ntext/plain\x00"
                  b"\xa0\x03\x00\x0212\x00")
BODY = b"hello world\n"


def packet(payload: bytes) -> bytes:
    return b"AB" + struct.pack("!H", len(payload)) + payload


def chunk(data: bytes) -> bytes:
    return packet(b"\x03" + struct.pack("!H", len(data)) + data + b"\x00")


END = packet(b"\x05\x01")
TOMCAT_ANSWER = packet(TOMCAT_HEADERS) + chunk(BODY) + END


def s(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value + b"\0"


def headers_payload(status: int, reason: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x04" + struct.pack("!H", status) + s(reason) + struct.pack("!H", len(fields))
    for name, value in fields:
        out += s(name) + s(value)
    return out


# --- the request


def general_packet(head: bytes, member: bytes, *, member_target: bytes = b"",
                   preserve_host: bool = True, port: int = 8080, ssl: bool = False,
                   secret: bytes = b"s3cret", client: bytes = b"192.0.2.9",
                   client_port: int = 50123) -> bytes:
    """What the general path's AjpLeg._send_request writes for `head`."""
    request = http11.parse_request_head(head, LIMITS)
    forward = ajp.Forward(remote_addr=client, server_name=server_name(request.host, member),
                          server_port=port, is_ssl=ssl, secret=secret,
                          remote_port=client_port, protocol=b"HTTP/1.1")
    fields = request_fields(request, None if preserve_host else member)
    return ajp.forward_request(request.method, member_target or request.target, fields, forward)


HEADS = {
    "plain GET": b"GET /bench HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: wrk\r\n\r\n",
    "query, odd fields": b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h:8080\r\nX-Custom:  v v \r\n"
                        b"Cookie: JSESSIONID=abc.node1\r\nAccept: */*\r\n\r\n",
    "connection close": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    "keep-alive asked": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
    "zero length": b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    "HEAD": b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n",
    "unlisted method": b"PATCH /x HTTP/1.1\r\nHost: h\r\n\r\n",
    "IPv6 host": b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
}


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("route", [{}, {"member_target": b"/rewritten?q=1"},
                                   {"preserve_host": False}, {"port": 443, "ssl": True},
                                   {"secret": b""}])
def test_the_fast_packet_is_the_general_one(name, route):
    head = HEADS[name]
    member = b"127.0.0.2:8009"
    parts = request_parts(head, LIMITS, route.get("member_target", b""), member,
                          route.get("preserve_host", True), route.get("port", 8080),
                          route.get("ssl", False), route.get("secret", b"s3cret"))
    assert parts is not None
    before, middle, after = parts
    fast = ajp.assemble(before, ajp.client_part(b"192.0.2.9"), middle, ajp.port_part(50123),
                        after, ajp.DEFAULT_PACKET_SIZE)
    assert fast == general_packet(head, member, **route)


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",   # a body: the general path's
    b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nBad Field: x\r\n\r\n",          # refused by the parser
    b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-" + b"n" * 0xA000 + b": v\r\n\r\n",  # name too long
])
def test_heads_the_fast_path_leaves_to_the_general_one(head):
    limits = http11.Limits(max_header_size=1 << 20)
    assert request_parts(head, limits, b"", b"m:1", True, 80, False, b"") is None


def test_the_cache_serves_parts_only_for_their_route_member_and_listener():
    cache = AjpLeanCache()
    head = HEADS["plain GET"]
    route, other_route = object(), object()
    member, other_member = object(), object()
    assert cache.request((head, member), route, 80, False) is None
    made = cache.add_request((head, member), route, 80, False, LIMITS, b"m:1", b"", True, "x")
    assert made is not None and cache.request((head, member), route, 80, False) is made
    assert cache.request((head, other_member), route, 80, False) is None
    assert cache.request((head, member), other_route, 80, False) is None  # after a reload
    assert cache.request((head, member), route, 443, False) is None
    assert cache.request((head, member), route, 80, True) is None
    assert cache.add_request((b"GET / HTTP/1.0\r\nHost: h\r\n\r\n", member), route, 80, False,
                             LIMITS, b"m:1", b"", True, "x") is None
    for n in range(CACHE_ENTRIES + 5):  # bounded: a full cache starts again
        cache.add_request((head, n), route, 80, False, LIMITS, b"m:1", b"", True, "x")
    assert len(cache.requests) <= CACHE_ENTRIES


# --- the response head


def test_tomcats_head_as_the_client_gets_it():
    found = client_head(TOMCAT_HEADERS)
    assert found is not None and found.length == 12 and found.response.status == 200
    # the reason as Tomcat sent it, as the general path (and Apache) forward it
    assert found.head == b"HTTP/1.1 200 200\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"


def test_hop_by_hop_fields_are_dropped_and_values_trimmed():
    payload = headers_payload(404, b"Not Found", [
        (b"Content-Length", b" 3 "), (b"Connection", b"close"), (b"Keep-Alive", b"x"),
        (b"Transfer-Encoding", b"chunked"), (b"X-App", b"a  b")])  # AJP frames the body
    found = client_head(payload)
    assert found is not None
    assert found.head == b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-App: a  b\r\n"


@pytest.mark.parametrize("payload", [
    headers_payload(204, b"", []),
    headers_payload(304, b"", [(b"Content-Length", b"3")]),
    headers_payload(100, b"", []),
    headers_payload(200, b"", [(b"Content-Type", b"x")]),          # no length: chunked
    headers_payload(200, b"", [(b"Content-Length", b"0")]),         # no body
    headers_payload(200, b"", [(b"Content-Length", b"1x")]),
    headers_payload(200, b"", [(b"Content-Length", b"1"), (b"Content-Length", b"2")]),
    headers_payload(200, b"", [(b"Content-Length", b"1"), (b"X", b"a\r\nb")]),
    headers_payload(200, b"bad\r\n", [(b"Content-Length", b"1")]),
    b"\x05\x01",                                                    # not SEND_HEADERS
    b"\x04\x00",                                                    # truncated
])
def test_heads_the_fast_path_does_not_send(payload):
    assert client_head(payload) is None


def test_response_heads_are_remembered():
    cache = AjpLeanCache()
    first = cache.response(TOMCAT_HEADERS)
    assert first is not None and cache.response(TOMCAT_HEADERS) is first
    assert cache.response(b"\x05\x01") is None and b"\x05\x01" in cache.heads


# --- a whole answer in one read


def test_tomcats_answer_is_split():
    data = bytearray(TOMCAT_ANSWER) + bytearray(100)  # the worker's buffer is larger
    found = split_response(data, len(TOMCAT_ANSWER))
    assert found is not None
    payload, spans, total, reuse = found
    assert payload == TOMCAT_HEADERS and total == 12 and reuse is True
    assert [bytes(data[a:b]) for a, b in spans] == [BODY]


def test_a_packet_larger_than_the_packet_size_is_the_general_paths():
    big = packet(TOMCAT_HEADERS) + chunk(b"x" * 9000) + END
    assert split_response(big, len(big), 65536) is not None
    assert split_response(big, len(big), 8192) is None  # its decoder refuses it: a 502
    with pytest.raises(ajp.AjpError):
        ajp.Decoder(8192).feed(big)


def test_several_chunks_an_empty_flush_and_no_reuse():
    data = (packet(TOMCAT_HEADERS) + chunk(b"hello ") + chunk(b"") + chunk(b"world\n")
            + packet(b"\x05\x00"))
    found = split_response(data, len(data))
    assert found is not None
    _, spans, total, reuse = found
    assert [data[a:b] for a, b in spans] == [b"hello ", b"world\n"] and total == 12
    assert reuse is False
    short = packet(TOMCAT_HEADERS) + chunk(BODY) + packet(b"\x05")  # no reuse byte
    assert split_response(short, len(short))[3] is False  # type: ignore[index]


@pytest.mark.parametrize("data", [
    TOMCAT_ANSWER[:-1],                           # END_RESPONSE not here yet
    packet(TOMCAT_HEADERS),                       # the head alone (Tomcat's first write)
    packet(TOMCAT_HEADERS) + chunk(BODY),
    TOMCAT_ANSWER + packet(b"\x05\x01"),          # something after the end
    packet(TOMCAT_HEADERS) + packet(b"\x06\x1f\xfa") + chunk(BODY) + END,  # GET_BODY_CHUNK
    packet(b"\x03\x00\x01x\x00") + END,           # a body before the head
    b"HTTP/1.1 200 OK\r\n\r\n",                  # not AJP
    packet(TOMCAT_HEADERS) + packet(b"\x03\x00\x09ab\x00") + END,  # a chunk longer than its packet
    packet(TOMCAT_HEADERS) + packet(b"\x05\x02"),  # an unknown reuse flag
    b"",
])
def test_anything_else_is_the_general_paths(data):
    assert split_response(data, len(data)) is None


@given(st.lists(st.sampled_from([packet(TOMCAT_HEADERS), chunk(b"abc"), chunk(b""), END,
                                 packet(b"\x06\x00\x10"), packet(b"\x05\x00"), b"A", b"\x00"]),
                max_size=6), st.binary(max_size=8))
def test_what_it_takes_the_decoder_reads_alike(pieces, noise):
    data = b"".join(pieces) + noise
    found = split_response(data, len(data))
    if found is None:
        return
    payload, spans, total, reuse = found
    events = ajp.Decoder().feed(data)
    assert events[0] == ajp.event_of(payload)
    body = [e.data for e in events[1:-1] if isinstance(e, ajp.BodyChunk) and e.data]
    assert body == [data[a:b] for a, b in spans] and total == sum(map(len, body))
    assert all(isinstance(e, ajp.BodyChunk) for e in events[1:-1])
    assert events[-1] == ajp.EndResponse(reuse)


@pytest.mark.parametrize("cut", [1, 2, 4, 5, len(packet(TOMCAT_HEADERS)),
                                 len(packet(TOMCAT_HEADERS)) + 3, len(TOMCAT_ANSWER) - 1])
def test_the_beginning_of_an_answer_is_held_for_the_rest(cut):
    assert split_response(TOMCAT_ANSWER, cut) is None
    assert response_prefix(TOMCAT_ANSWER, cut)


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200",                                      # not AJP
    b"AC",
    chunk(b"x"),                                          # no head first
    packet(TOMCAT_HEADERS) + packet(b"\x06\x1f\xfa"),     # GET_BODY_CHUNK
    packet(TOMCAT_HEADERS) + packet(TOMCAT_HEADERS),      # a second head
    TOMCAT_ANSWER + b"AB",                                # something after the end
    packet(TOMCAT_HEADERS) + packet(b"\x05\x02"),         # a whole end it does not take
])
def test_what_cannot_become_one_is_not_held(data):
    assert not response_prefix(data, len(data))


@given(st.binary(max_size=64), st.integers(0, 64))
def test_a_prefix_of_a_taken_answer_is_a_prefix(noise, cut):
    data = TOMCAT_ANSWER + noise
    if split_response(data, len(data)) is not None:  # (noise empty)
        assert response_prefix(data, min(cut, len(data) - 1))
    assert response_prefix(TOMCAT_ANSWER, min(cut, len(TOMCAT_ANSWER) - 1))
