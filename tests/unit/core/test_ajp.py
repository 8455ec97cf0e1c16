"""hbfork.core.ajp: FORWARD_REQUEST and body packets by layout, the container's packets
decoded (fed whole and byte by byte), and the fuzz invariant of the decoder."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.core.ajp import (
    CPING,
    END_OF_BODY,
    AjpError,
    BodyChunk,
    Cpong,
    Decoder,
    EndResponse,
    Forward,
    GetBodyChunk,
    Headers,
    body_packet,
    body_packets,
    body_room,
    forward_request,
    http_head,
)


def s(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value + b"\0"


def from_container(payload: bytes) -> bytes:
    return b"AB" + struct.pack("!H", len(payload)) + payload


FWD = Forward(remote_addr=b"192.0.2.7", server_name=b"www.example.com", server_port=443,
              is_ssl=True, route=b"node1", secret=b"s3cret")


def test_forward_request_layout():
    packet = forward_request(b"GET", b"/app/x?a=1", [(b"host", b"www.example.com"),
                                                     (b"x-custom", b"v")], FWD)
    assert packet[:2] == b"\x12\x34" and struct.unpack("!H", packet[2:4])[0] == len(packet) - 4
    body = packet[4:]
    expected = (b"\x02\x02" + s(b"HTTP/1.1") + s(b"/app/x") + s(b"192.0.2.7") + s(b"192.0.2.7")
                + s(b"www.example.com") + struct.pack("!H?H", 443, True, 2)
                + b"\xa0\x0b" + s(b"www.example.com") + s(b"x-custom") + s(b"v")
                + b"\x05" + s(b"a=1") + b"\x06" + s(b"node1") + b"\x0c" + s(b"s3cret") + b"\xff")
    assert body == expected


def test_an_unlisted_method_is_stored_as_an_attribute():
    packet = forward_request(b"PATCH", b"/", [], Forward(b"1.2.3.4", b"h", 80))
    assert packet[5] == 0xFF and b"\x0d" + s(b"PATCH") + b"\xff" in packet


def test_a_head_too_big_for_the_packet_is_refused():
    with pytest.raises(AjpError, match="packetSize"):
        forward_request(b"GET", b"/", [(b"cookie", b"x" * 9000)], FWD)
    assert forward_request(b"GET", b"/", [(b"cookie", b"x" * 9000)], FWD, packet_size=16384)


def test_body_packets_and_the_end():
    packets = body_packets(b"a" * 10000)
    assert [len(p) for p in packets] == [8192, 10000 - 8186 + 6]
    assert packets[0][:6] == b"\x12\x34" + struct.pack("!HH", 8188, 8186)
    assert END_OF_BODY == b"\x12\x34\x00\x00" and CPING == b"\x12\x34\x00\x01\x0a"


RESPONSE = (from_container(b"\x04" + struct.pack("!H", 200) + s(b"OK") + struct.pack("!H", 3)
                           + b"\xa0\x01" + s(b"text/html") + b"\xa0\x07" + s(b"JSESSIONID=a.n1")
                           + s(b"X-Powered") + s(b"tomcat"))
            + from_container(b"\x03" + struct.pack("!H", 5) + b"hello\0")
            + from_container(b"\x06" + struct.pack("!H", 8186))
            + from_container(b"\x05\x01")
            + from_container(b"\x09"))
EVENTS = [Headers(200, b"OK", ((b"Content-Type", b"text/html"),
                               (b"Set-Cookie", b"JSESSIONID=a.n1"), (b"X-Powered", b"tomcat"))),
          BodyChunk(b"hello"), GetBodyChunk(8186), EndResponse(True), Cpong()]


def test_decoder_whole():
    assert Decoder().feed(RESPONSE) == EVENTS


def test_decoder_byte_by_byte():
    decoder = Decoder()
    events = []
    for byte in RESPONSE:
        events += decoder.feed(bytes((byte,)))
    assert events == EVENTS


@pytest.mark.parametrize("bad", [
    b"HTTP/1.1 200 OK\r\n", b"AB\x00\x00", from_container(b"\x04\x00"),
    from_container(b"\x04" + struct.pack("!H", 200) + s(b"OK") + struct.pack("!H", 1)
                   + b"\xa0\x99" + s(b"x")),           # unknown header code
    from_container(b"\x07"),                          # not a container packet type
    from_container(b"\x04" + struct.pack("!H", 0) + s(b"") + b"\x00\x00"),  # status 0
])
def test_malformed(bad):
    with pytest.raises(AjpError):
        Decoder().feed(bad)


def test_http_head_frames_the_body():
    event = EVENTS[0]
    assert http_head(event, chunked=True, keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: JSESSIONID=a.n1\r\n"
        b"X-Powered: tomcat\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert http_head(Headers(204, b"", ()), chunked=False, keep_alive=False) == \
        b"HTTP/1.1 204 \r\nConnection: close\r\n\r\n"
    with pytest.raises(AjpError):
        http_head(Headers(200, b"OK", ((b"X", b"a\r\nInjected: 1"),)), False, True)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise(data):
    try:
        events = Decoder().feed(b"AB" + data)
    except AjpError:
        return
    assert isinstance(events, list)


def test_remote_port_and_local_address_travel_as_request_attributes():
    packet = forward_request(b"GET", b"/", [(b"Host", b"h"), (b"X-Mixed-Case", b"v")],
                             Forward(b"1.2.3.4", b"h", 80, remote_port=40123,
                                     local_addr=b"10.0.0.1"))
    assert b"\xa0\x0b" + s(b"h") in packet  # Host found by its lower-case name
    assert s(b"X-Mixed-Case") + s(b"v") in packet  # other names as the client sent them
    assert packet.endswith(b"\x0a" + s(b"AJP_REMOTE_PORT") + s(b"40123")
                           + b"\x0a" + s(b"AJP_LOCAL_ADDR") + s(b"10.0.0.1") + b"\xff")


def test_one_body_packet_and_its_room():
    assert body_packet(b"abc") == b"\x12\x34\x00\x05\x00\x03abc"
    assert body_room(8192) == 8186 and body_room(8192, 100) == 100
    assert body_room(8192, 65000) == 8186 and body_room(65536, 65000) == 65000


@given(st.lists(st.tuples(st.sampled_from([b"accept", b"Cookie", b"x-a", b"Host"]),
                          st.binary(max_size=40).filter(lambda v: b"\0" not in v)),
                max_size=8),
       st.sampled_from([b"GET", b"POST", b"PATCH", b"MKACTIVITY"]),
       st.binary(min_size=1, max_size=30).filter(lambda v: b"?" not in v),
       st.binary(max_size=20), st.booleans(), st.integers(0, 65535))
def test_forward_request_read_by_an_independent_parser(headers, method, uri, query, ssl, port):
    """Every FORWARD_REQUEST reads back, field by field, with tests.ajp_server's parser."""
    from tests.ajp_server import parse_forward
    target = b"/" + uri + (b"?" + query if query else b"")
    packet = forward_request(method, target, headers,
                             Forward(b"192.0.2.1", b"h", 443, is_ssl=ssl, secret=b"k",
                                     remote_port=port))
    assert struct.unpack("!H", packet[2:4])[0] == len(packet) - 4
    seen = parse_forward(packet[4:])
    assert seen["uri"] == (b"/" + uri).decode("latin-1") and seen["ssl"] is ssl
    assert seen["attributes"]["12"] == "k"
    assert seen["attributes"].get("5", "") == query.decode("latin-1")
    if method in (b"PATCH",):
        assert seen["attributes"]["13"] == "PATCH"
    assert len(seen["headers"]) == len({n.lower() for n, _ in headers})


@given(st.lists(st.one_of(
    st.binary(max_size=300).map(lambda d: b"\x03" + struct.pack("!H", len(d)) + d + b"\0"),
    st.integers(0, 65535).map(lambda n: b"\x06" + struct.pack("!H", n)),
    st.booleans().map(lambda r: b"\x05" + bytes((r,))),
    st.just(b"\x09")), max_size=10), st.integers(1, 50))
def test_packets_decode_the_same_however_they_are_split(payloads, step):
    data = b"".join(from_container(p) for p in payloads)
    whole = Decoder().feed(data)
    decoder, pieces = Decoder(), []
    for at in range(0, len(data), step):
        pieces += decoder.feed(data[at:at + step])
    assert pieces == whole and len(whole) == len(payloads) and not decoder.buffer
