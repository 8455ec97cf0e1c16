"""hbfork.http11: framing, limits, every request-smuggling case of RFC 9112 §6.3, response
parsing, header rewriting, and a fuzz invariant: any bytes parse or raise ProtocolError, and an
accepted request means the same thing to the member after rewriting."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbfork.core.chunked import ChunkedBody
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import (
    LengthBody,
    Limits,
    RequestHead,
    UntilClose,
    find_head,
    parse_request_head,
    parse_response_head,
    skip_empty_lines,
)
from hbfork.core.http_heads import request_head_for_member

LIMITS = Limits()
GET = b"GET /path?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n"


def head_of(raw: bytes, limits: Limits = LIMITS) -> bytes:
    end = find_head(raw, 0, limits.max_request_line, limits.max_header_size)
    assert end > 0, raw
    return raw[:end]


def request(raw: bytes, limits: Limits = LIMITS) -> RequestHead:
    return parse_request_head(head_of(raw, limits), limits)


def refused(raw: bytes, status: int = 400, limits: Limits = LIMITS) -> ProtocolError:
    """`raw` (a head, possibly followed by a body) must be refused with `status`."""
    with pytest.raises(ProtocolError) as info:
        end = find_head(raw, 0, limits.max_request_line, limits.max_header_size)
        assert end > 0, "the head should be complete"
        parse_request_head(raw[:end], limits)
    assert info.value.status == status, info.value
    return info.value


def with_headers(*lines: bytes, version: bytes = b"HTTP/1.1",
                 start: bytes = b"POST /upload") -> bytes:
    return start + b" " + version + b"\r\n" + b"".join(line + b"\r\n" for line in lines) \
        + b"\r\n"


def stream_chunked(data: bytes, sizes: list[int] | None = None, limit: int = 0,
                   decode: bool = False) -> tuple[int, bytes, bool]:
    """Feed `data` to a ChunkedBody in pieces as the proxy does (unconsumed bytes are kept
    for the next call): (bytes consumed, decoded data, done)."""
    body = ChunkedBody(limit=limit, decode=decode)
    pending = bytearray()
    consumed = 0
    decoded = bytearray()
    position = 0
    sizes = sizes or [len(data) or 1]
    index = 0
    while position < len(data) and not body.done:
        size = sizes[index % len(sizes)]
        index += 1
        pending += data[position:position + size]
        position += size
        taken = body.scan(pending, 0, len(pending))
        for start, end in body.pieces:
            decoded += pending[start:end]
        del pending[:taken]
        consumed += taken
    return consumed, bytes(decoded), body.done


# --- finding the head


def test_find_head_returns_the_end_of_a_complete_head():
    raw = GET + b"next request"
    assert find_head(raw, 0, 8192, 16384) == len(GET)


def test_find_head_needs_more_bytes_until_the_blank_line():
    for i in range(len(GET)):
        assert find_head(GET[:i], 0, 8192, 16384) == -1, i
    assert find_head(GET, 0, 8192, 16384) == len(GET)


def test_find_head_byte_at_a_time_into_a_growing_buffer():
    buf = bytearray()
    ends = []
    for byte in GET + GET:
        buf.append(byte)
        ends.append(find_head(buf, 0, 8192, 16384))
    assert ends.index(len(GET)) == len(GET) - 1
    assert all(e == -1 for e in ends[:len(GET) - 1])
    assert find_head(buf, len(GET), 8192, 16384) == 2 * len(GET)


def test_find_head_from_an_offset():
    raw = b"junk" + GET
    assert find_head(raw, 4, 8192, 16384) == len(raw)


def test_skip_empty_lines_before_a_request():
    raw = b"\r\n\r\n" + GET
    assert skip_empty_lines(raw, 0) == 4
    assert skip_empty_lines(GET, 0) == 0
    assert skip_empty_lines(b"\r\n", 0) == 2


# --- limits


def test_request_line_over_the_limit_is_414_once_complete():
    limits = Limits(max_request_line=100)
    raw = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    refused(raw, 414, limits)


def test_request_line_over_the_limit_is_414_before_it_ends():
    with pytest.raises(ProtocolError) as info:
        find_head(b"GET /" + b"a" * 200, 0, 100, 16384)
    assert info.value.status == 414


def test_request_line_at_the_limit_is_accepted():
    line = b"GET /" + b"a" * 86 + b" HTTP/1.1"
    assert len(line) == 100
    limits = Limits(max_request_line=100)
    assert request(line + b"\r\nHost: x\r\n\r\n", limits).target.startswith(b"/a")


def test_head_over_the_limit_is_431_before_it_ends():
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 1000
    assert find_head(raw, 0, 8192, 2000) == -1
    with pytest.raises(ProtocolError) as info:
        find_head(raw + b"b" * 1000, 0, 8192, 2000)
    assert info.value.status == 431


def test_head_over_the_limit_is_431_when_complete():
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n"
    refused(raw, 431, Limits(max_header_size=2000))


def test_body_over_the_limit_by_content_length_is_413():
    limits = Limits(max_body_size=1000)
    refused(with_headers(b"Host: x", b"Content-Length: 1001"), 413, limits)
    assert request(with_headers(b"Host: x", b"Content-Length: 1000"), limits) \
        .content_length == 1000


def test_body_over_the_limit_by_chunked_total_is_413():
    data = b"200\r\n" + b"x" * 0x200 + b"\r\n" + b"200\r\n"
    with pytest.raises(ProtocolError) as info:
        stream_chunked(data, limit=0x3FF)
    assert info.value.status == 413
    _, _, done = stream_chunked(b"200\r\n" + b"x" * 0x200 + b"\r\n0\r\n\r\n",
                                       limit=0x200)
    assert done


def test_response_head_too_large_is_502():
    with pytest.raises(ProtocolError) as info:
        find_head(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 200, 0, 100, 100, request=False)
    assert info.value.status == 502


# --- request line and version


def test_a_plain_get():
    head = request(GET)
    assert (head.method, head.target, head.version) == (b"GET", b"/path?q=1", 11)
    assert head.host == b"example.test"
    assert not head.has_body and not head.chunked and head.content_length == 0
    assert head.keep_alive and head.idempotent and not head.upgrade


@pytest.mark.parametrize("line", [
    b"GET /", b"GET  / HTTP/1.1", b"GET / HTTP/1.1 ", b" GET / HTTP/1.1",
    b"GET / / HTTP/1.1", b"G(T / HTTP/1.1", b"GET /\x7f HTTP/1.1", b"GET /\xff HTTP/1.1",
    b"GET / HTTP/1", b"GET / http/1.1", b"GET / HTTP/1.1.1", b"GET\t/ HTTP/1.1",
])
def test_malformed_request_lines_are_400(line):
    refused(line + b"\r\nHost: x\r\n\r\n")


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2"])
def test_other_versions_are_505(version):
    refused(b"GET / " + version + b"\r\nHost: x\r\n\r\n", 505)


def test_connect_is_refused_by_a_reverse_proxy():
    refused(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", 501)


def test_methods_are_case_sensitive_tokens():
    assert request(b"PATCH / HTTP/1.1\r\nHost: x\r\n\r\n").method == b"PATCH"
    assert not request(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n").idempotent
    assert request(b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n").idempotent


@pytest.mark.parametrize(("target", "host", "path"), [
    (b"http://example.test/a?b=1", b"example.test", b"/a?b=1"),
    (b"HTTPS://b.test:8443", b"b.test:8443", b"/"),
    (b"http://b.test?q", b"b.test", b"/?q"),
])
def test_an_absolute_form_targets_authority_replaces_host(target, host, path):
    """RFC 9112 §3.2.2, with or without routes: members get origin-form and that Host."""
    head = request(b"GET " + target + b" HTTP/1.1\r\nHost: other.test\r\nX: y\r\n\r\n")
    assert (head.target, head.host) == (path, host)
    assert [v for _, lower, v in head.headers if lower == b"host"] == [host]


@pytest.mark.parametrize("target", [b"http://user:pw@b.test/", b"http:///x", b"ftp://b.test/",
                                    b"x/y", b"http://b.test/#frag"])
def test_absolute_form_with_userinfo_or_no_host_is_400(target):
    refused(b"GET " + target + b" HTTP/1.1\r\nHost: b.test\r\n\r\n")


def test_a_backslash_in_the_target_is_sent_encoded():
    head = request(b"GET /x\\..\\admin HTTP/1.1\r\nHost: b\r\n\r\n")
    assert head.target == b"/x%5C..%5Cadmin"


@pytest.mark.parametrize("partial", [b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n",
                                     b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n",
                                     b"GET / HTTP/1.1\r\nHost: a\n\n"])
def test_a_bare_cr_or_lf_in_an_unfinished_head_is_400_at_once(partial):
    with pytest.raises(ProtocolError) as info:
        find_head(partial, 0, 8192, 16384)
    assert info.value.status == 400


def test_a_cr_at_the_end_may_still_get_its_lf():
    assert find_head(b"GET / HTTP/1.1\r\nHost: a\r", 0, 8192, 16384) == -1


# --- Host


def test_http11_needs_a_host():
    refused(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")


def test_duplicate_host_is_400():
    refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    refused(b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n")


@pytest.mark.parametrize("host", [b"a b", b"a/b", b"a@b", b"a?b", b"a#b", b"a\\b"])
def test_host_with_characters_no_authority_has_is_400(host):
    refused(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")


@pytest.mark.parametrize("host", [b"example.test", b"example.test:8080", b"[::1]:80",
                                  b"127.0.0.1", b""])
def test_valid_hosts(host):
    assert request(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").host == host


def test_http10_without_host_is_fine():
    head = request(b"GET / HTTP/1.0\r\n\r\n")
    assert head.version == 10 and head.host == b""


# --- framing: Content-Length and chunked


def test_content_length_body():
    head = request(with_headers(b"Host: x", b"Content-Length: 12"))
    assert head.content_length == 12 and not head.chunked and head.has_body


def test_content_length_zero():
    head = request(with_headers(b"Host: x", b"Content-Length: 0"))
    assert head.content_length == 0 and not head.has_body


def test_identical_content_length_values_are_one_length():
    assert request(with_headers(b"Host: x", b"Content-Length: 5, 5")).content_length == 5
    assert request(with_headers(b"Host: x", b"Content-Length: 5",
                                b"content-length: 5")).content_length == 5


def test_chunked_request():
    head = request(with_headers(b"Host: x", b"Transfer-Encoding: chunked"))
    assert head.chunked and head.has_body


def test_transfer_codings_ending_in_chunked_are_accepted():
    assert request(with_headers(b"Host: x", b"Transfer-Encoding: gzip, chunked")).chunked
    assert request(with_headers(b"Host: x", b"Transfer-Encoding: gzip",
                                b"Transfer-Encoding: CHUNKED")).chunked


def test_length_body_counts_down():
    body = LengthBody(10)
    assert body.scan(b"12345", 0, 5) == 5 and not body.done
    assert body.scan(b"67890next", 0, 9) == 5 and body.done
    assert body.scan(b"more", 0, 4) == 0


def test_until_close_takes_everything():
    body = UntilClose()
    assert body.scan(b"abc", 0, 3) == 3 and not body.done


CHUNKED = (b"5\r\nhello\r\n"
           b"7;name=value;flag\r\n, world\r\n"
           b"1 ; spaced-ext\r\n!\r\n"
           b"0\r\n"
           b"Trailer-One: 1\r\n"
           b"Trailer-Two: 2\r\n"
           b"\r\n")


def test_chunked_with_extensions_and_trailers():
    consumed, decoded, done = stream_chunked(CHUNKED + b"GET / next", decode=True)
    assert (consumed, decoded, done) == (len(CHUNKED), b"hello, world!", True)


def test_chunked_without_trailers():
    data = b"3\r\nabc\r\n0\r\n\r\n"
    assert stream_chunked(data + b"tail", decode=True) == (len(data), b"abc", True)


def test_chunked_hex_sizes_in_either_case():
    data = b"a\r\n" + b"x" * 10 + b"\r\nA\r\n" + b"y" * 10 + b"\r\n0\r\n\r\n"
    assert stream_chunked(data)[2]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_chunked_split_across_feeds_gives_the_same_result(size):
    whole = stream_chunked(CHUNKED + b"tail", decode=True)
    assert stream_chunked(CHUNKED + b"tail", [size], decode=True) == whole


def test_chunked_with_random_splits():
    rng = random.Random(7)
    data = b"".join(b"%x\r\n" % n + bytes(rng.randrange(256) for _ in range(n)) + b"\r\n"
                    for n in (1, 100, 4000, 3, 70000)) + b"0\r\nX: y\r\n\r\n"
    whole = stream_chunked(data, decode=True)
    assert whole[2] and len(whole[1]) == 74104
    for _ in range(20):
        sizes = [rng.randint(1, 5000) for _ in range(10)]
        assert stream_chunked(data, sizes, decode=True) == whole


def test_chunked_scan_copies_nothing_and_counts_the_total():
    body = ChunkedBody()
    data = b"4\r\nwxyz\r\n0\r\n\r\n"
    assert body.scan(data, 0, len(data)) == len(data)
    assert body.total == 4 and body.done and body.pieces == []


@pytest.mark.parametrize("data", [
    b"-1\r\n", b"+5\r\nhello\r\n", b"0x5\r\nhello\r\n", b" 5\r\nhello\r\n",
    b"g\r\n", b"\r\n", b"5 5\r\nhello\r\n", b"1234567890abcdef0\r\n",
    b"5\x00\r\nhello\r\n", b"5\nhello\r\n", b"5\r\r\nhello\r\n", b"5;ext\x01\r\nhello\r\n",
])
def test_bad_chunk_sizes_are_400(data):
    with pytest.raises(ProtocolError) as info:
        stream_chunked(data + b"\r\n0\r\n\r\n")
    assert info.value.status == 400


def test_chunk_data_longer_than_its_size_is_400():
    with pytest.raises(ProtocolError) as info:
        stream_chunked(b"3\r\nabcd\r\n0\r\n\r\n")
    assert info.value.status == 400


def test_chunk_data_not_followed_by_crlf_is_400():
    with pytest.raises(ProtocolError):
        stream_chunked(b"3\r\nabc\n0\r\n\r\n")


def test_a_chunk_line_that_never_ends_is_refused():
    with pytest.raises(ProtocolError):
        stream_chunked(b"5;" + b"e" * 10000)


@pytest.mark.parametrize("trailer", [b" folded: x", b"no colon", b"X: \x00", b"bad name: x",
                                     b"X\x7f: y"])
def test_bad_trailers_are_400(trailer):
    with pytest.raises(ProtocolError) as info:
        stream_chunked(b"0\r\n" + trailer + b"\r\n\r\n")
    assert info.value.status == 400


def test_a_member_bad_chunk_is_502():
    body = ChunkedBody(status=502)
    with pytest.raises(ProtocolError) as info:
        body.scan(b"zz\r\n", 0, 4)
    assert info.value.status == 502


# --- request smuggling (RFC 9112 §6.3 and §2.2)


SMUGGLING = {
    "CL and TE": [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
    "TE and CL": [b"Transfer-Encoding: chunked", b"Content-Length: 0"],
    "conflicting CL headers": [b"Content-Length: 5", b"Content-Length: 6"],
    "conflicting CL list": [b"Content-Length: 5, 6"],
    "CL with an empty list item": [b"Content-Length: 5,"],
    "CL with a sign": [b"Content-Length: +5"],
    "CL negative": [b"Content-Length: -5"],
    "CL with an inner space": [b"Content-Length: 5 0"],
    "CL in hex": [b"Content-Length: 0x5"],
    "CL hex digits": [b"Content-Length: 5a"],
    "CL empty": [b"Content-Length:"],
    "CL huge": [b"Content-Length: 1" + b"0" * 30],
    "CL with a vertical tab": [b"Content-Length: \x0b5"],
    "TE not ending in chunked": [b"Transfer-Encoding: chunked, gzip"],
    "TE only gzip": [b"Transfer-Encoding: gzip"],
    "TE chunked twice": [b"Transfer-Encoding: chunked, chunked"],
    "TE chunked twice in two headers": [b"Transfer-Encoding: chunked",
                                        b"Transfer-Encoding: chunked"],
    "TE with junk": [b"Transfer-Encoding: xchunked"],
    "TE quoted": [b'Transfer-Encoding: "chunked"'],
    "TE empty": [b"Transfer-Encoding:"],
    "TE empty next to CL": [b"Transfer-Encoding: ", b"Content-Length: 5"],
    "TE only commas": [b"Transfer-Encoding: ,"],
    "TE with a tab-separated junk": [b"Transfer-Encoding: chunked\tx"],
    "space before the colon": [b"Transfer-Encoding : chunked"],
    "tab before the colon": [b"Content-Length\t: 5"],
    "obs-fold": [b"X-Folded: one", b" two"],
    "obs-fold with tab": [b"Transfer-Encoding:", b"\tchunked"],
    "header without a colon": [b"Content-Length 5"],
    "empty header name": [b": value"],
    "non-token header name": [b"Content(Length): 5"],
    "non-ASCII header name": [b"Cont\xe9nt-Length: 5"],
    "NUL in a value": [b"X-Nul: a\x00b"],
    "control byte in a value": [b"X-Ctl: a\x01b"],
    "DEL in a value": [b"X-Del: a\x7fb"],
    "escape in a value": [b"X-Esc: \x1b[31m"],
}


@pytest.mark.parametrize("lines", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_request_smuggling_defences(lines):
    refused(with_headers(b"Host: x", *lines))


def test_te_in_an_http10_request_is_400():
    refused(with_headers(b"Transfer-Encoding: chunked", version=b"HTTP/1.0"))


def test_bare_cr_in_a_header_is_400():
    refused(b"GET / HTTP/1.1\r\nHost: x\rX-Evil: 1\r\n\r\n")
    refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n")


def test_bare_lf_inside_the_head_is_400():
    refused(b"GET / HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n")
    refused(b"GET / HTTP/1.1\nHost: x\r\n\r\n")
    refused(b"GET / HTTP/1.1\r\nHost: x\r\n\nX: y\r\n\r\n")


def test_a_bare_lf_request_line_is_400_without_waiting_for_more():
    with pytest.raises(ProtocolError) as info:
        find_head(b"GET / HTTP/1.1\nHost: x\n\n", 0, 8192, 16384)
    assert info.value.status == 400


def test_bare_cr_in_the_request_line_is_400():
    refused(b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n")


def test_tab_in_a_value_is_fine_and_surrounding_whitespace_is_trimmed():
    head = request(b"GET / HTTP/1.1\r\nHost: \t x \t\r\nX-Tab: a\tb\r\n\r\n")
    assert head.host == b"x"
    assert (b"X-Tab", b"x-tab", b"a\tb") in head.headers


def test_obs_text_in_a_value_is_kept():
    head = request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\n\r\n")
    assert (b"X-Latin", b"x-latin", b"caf\xe9") in head.headers


# --- connection management


@pytest.mark.parametrize(("version", "connection", "keep"), [
    (b"HTTP/1.1", None, True), (b"HTTP/1.1", b"close", False),
    (b"HTTP/1.1", b"Keep-Alive, CLOSE", False), (b"HTTP/1.1", b"keep-alive", True),
    (b"HTTP/1.0", None, False), (b"HTTP/1.0", b"keep-alive", True),
    (b"HTTP/1.0", b"Keep-Alive", True), (b"HTTP/1.0", b"close", False),
])
def test_request_keep_alive_rules(version, connection, keep):
    lines = [b"Host: x"] + ([b"Connection: " + connection] if connection else [])
    assert request(with_headers(*lines, version=version, start=b"GET /")).keep_alive is keep


def test_upgrade_needs_the_connection_token():
    head = request(with_headers(b"Host: x", b"Connection: Upgrade", b"Upgrade: websocket",
                                start=b"GET /ws"))
    assert head.upgrade == b"websocket"
    head = request(with_headers(b"Host: x", b"Upgrade: websocket", start=b"GET /ws"))
    assert head.upgrade == b""


def test_upgrade_is_ignored_in_http10():
    head = request(with_headers(b"Connection: Upgrade", b"Upgrade: websocket",
                                version=b"HTTP/1.0", start=b"GET /ws"))
    assert head.upgrade == b""


def test_expect_continue():
    assert request(with_headers(b"Host: x", b"Content-Length: 5",
                                b"Expect: 100-continue")).expect_continue
    assert not request(with_headers(b"Content-Length: 5", b"Expect: 100-continue",
                                    version=b"HTTP/1.0")).expect_continue


# --- responses


def response(raw: bytes, method: bytes = b"GET"):
    end = find_head(raw, 0, 65536, 65536, request=False)
    assert end > 0
    return parse_response_head(raw[:end], method)


def bad_response(raw: bytes, method: bytes = b"GET") -> None:
    with pytest.raises(ProtocolError) as info:
        response(raw, method)
    assert info.value.status == 502


def test_response_with_content_length():
    r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
    assert (r.status, r.reason, r.content_length, r.chunked, r.keep_alive) == \
        (200, b"OK", 42, False, True)


def test_chunked_response():
    r = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert r.chunked and r.content_length is None and r.keep_alive


def test_close_delimited_response():
    r = response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
    assert r.content_length is None and not r.chunked and not r.keep_alive


def test_status_line_without_a_reason():
    r = response(b"HTTP/1.1 204\r\n\r\n")
    assert r.status == 204 and r.reason == b""


@pytest.mark.parametrize(("status", "method"), [(204, b"GET"), (304, b"GET"), (200, b"HEAD"),
                                                (404, b"HEAD"), (100, b"GET"), (103, b"GET")])
def test_responses_without_a_body(status, method):
    r = response(b"HTTP/1.1 %d X\r\nContent-Length: 99\r\n\r\n" % status, method)
    assert r.content_length == 0 and not r.chunked


def test_head_response_with_chunked_has_no_body():
    r = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"HEAD")
    assert r.content_length == 0 and not r.chunked and r.keep_alive


def test_interim_responses():
    assert response(b"HTTP/1.1 100 Continue\r\n\r\n").interim
    assert response(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").interim
    assert not response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").interim
    assert not response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").interim


@pytest.mark.parametrize(("version", "connection", "framing", "keep"), [
    (b"1.1", None, b"Content-Length: 1", True),
    (b"1.1", b"close", b"Content-Length: 1", False),
    (b"1.1", None, None, False),
    (b"1.0", None, b"Content-Length: 1", False),
    (b"1.0", b"keep-alive", b"Content-Length: 1", True),
    (b"1.0", b"keep-alive", None, False),
])
def test_response_keep_alive_rules(version, connection, framing, keep):
    lines = [b"HTTP/" + version + b" 200 OK"]
    lines += [b"Connection: " + connection] if connection else []
    lines += [framing] if framing else []
    assert response(b"\r\n".join(lines) + b"\r\n\r\n").keep_alive is keep


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 000 Zero\r\n\r\n",
    b"HTTP/1.1 600 Too far\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
])
def test_bad_responses_are_502(raw):
    bad_response(raw)


def test_response_framing_errors_are_502_not_400():
    with pytest.raises(ProtocolError) as info:
        response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
    assert info.value.status == 502


def test_a_response_coded_without_chunked_runs_until_close():
    """RFC 9112 §6.3 ¶4: chunked not the final coding of a response: read until close."""
    head = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert (head.content_length, head.chunked, head.keep_alive) == (None, False, False)


@pytest.mark.parametrize("status", [200, 204])
def test_a_responses_transfer_encoding_overrides_its_length(status):
    """RFC 9112 §6.3 ¶3: TE wins, the length is not forwarded, the connection not reused."""
    head = response(b"HTTP/1.1 %d X\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n"
                    b"\r\n" % status)
    assert head.chunked is (status == 200) and not head.keep_alive
    assert all(lower != b"content-length" for _, lower, _ in head.headers)


# --- fuzzing: any input parses or raises ProtocolError; accepted means unambiguous

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_NAME = st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection",
                         b"X-Forwarded-For", b"Upgrade", b"Expect", b"Accept", b"Keep-Alive",
                         b"TE", b"Proxy-Connection", b"X-Forwarded-Host", b"Cookie"])
_VALUE = st.one_of(
    st.sampled_from([b"chunked", b"gzip, chunked", b"5", b"0", b"5, 5", b"close",
                     b"keep-alive", b"Upgrade", b"websocket", b"100-continue", b"x",
                     b"content-length", b"host", b"10.0.0.1", b""]),
    st.binary(max_size=12))
_HEADER = st.tuples(_NAME, _VALUE).map(lambda nv: nv[0] + b": " + nv[1])
_REQUEST_LINE = st.tuples(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"CONNECT", b"get"]),
    st.sampled_from([b"/", b"/a?b=c", b"*", b"http://h/x", b"/%20"]),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2"]),
).map(b" ".join)


@st.composite
def requests(draw) -> bytes:
    line = draw(_REQUEST_LINE)
    headers = draw(st.lists(_HEADER, max_size=6))
    if draw(st.booleans()):
        headers.append(b"Host: h")
    body = draw(st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n",
                                 b"0\r\nT: 1\r\n\r\n"]))
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(requests()))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 44, 58, 59, 0x7F, 0xFF, 65]))
        if kind == "insert":
            data.insert(position, byte)
        elif position < len(data):
            if kind == "delete":
                del data[position]
            else:
                data[position] = byte
    return bytes(data)


def run_parser(data: bytes, limits: Limits = LIMITS) -> RequestHead | None:
    """The proxy's whole request path; only ProtocolError may escape."""
    start = skip_empty_lines(data, 0)
    end = find_head(data, start, limits.max_request_line, limits.max_header_size)
    if end < 0:
        return None
    head = parse_request_head(data[start:end], limits)
    if head.chunked:
        stream_chunked(data[end:], [3])
    return head


def _check_invariant(data: bytes) -> None:
    try:
        head = run_parser(data)
    except ProtocolError as err:
        assert 400 <= err.status < 600
        return
    if head is None:
        return
    rewritten = request_head_for_member(head, "192.0.2.1", True, member_host=b"m:1")
    again = parse_request_head(rewritten, LIMITS)
    assert (again.method, again.target) == (head.method, head.target)
    assert (again.chunked, again.content_length) == (head.chunked, head.content_length)
    assert again.upgrade == head.upgrade
    sent_host = any(lower == b"host" for _, lower, _ in head.headers)
    assert again.host == (head.host if sent_host else b"m:1")
    assert again.version == 11
    assert find_head(rewritten, 0, 1 << 20, 1 << 20) == len(rewritten)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data):
    _check_invariant(data)


@FUZZ
@given(requests())
def test_fuzz_generated_requests(data):
    _check_invariant(data)


@FUZZ
@given(mutated())
def test_fuzz_mutated_requests(data):
    _check_invariant(data)


@FUZZ
@given(st.binary(max_size=200), st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_fuzz_chunked_bodies_split_anywhere(data, sizes):
    """Feeding a body in pieces gives exactly what feeding it whole gives."""
    assert _chunked_outcome(data, None) == _chunked_outcome(data, sizes)


def _chunked_outcome(data: bytes, sizes: list[int] | None) -> object:
    try:
        return stream_chunked(data, sizes, decode=True)
    except ProtocolError as err:
        return err.status


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_response_heads(data):
    end = -1
    try:
        end = find_head(data, 0, 1024, 1024, request=False)
        if end > 0:
            for method in (b"GET", b"HEAD"):
                parse_response_head(data[:end], method)
    except ProtocolError as err:
        assert err.status == 502


@FUZZ
@given(st.binary(min_size=1, max_size=120))
def test_fuzz_find_head_byte_at_a_time(data):
    """A head found in a growing buffer is found at the same place as in the whole buffer."""
    raw = GET[:-2] + data
    try:
        whole = find_head(raw, 0, 8192, 16384)
    except ProtocolError as err:
        whole = err.status
    first = None
    for i in range(1, len(raw) + 1):
        try:
            found = find_head(raw[:i], 0, 8192, 16384)
        except ProtocolError as err:
            first = err.status
            break
        if found >= 0:
            first = found
            break
    assert first == whole or (whole == -1 and first is None)
