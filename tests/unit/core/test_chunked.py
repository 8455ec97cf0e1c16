"""Chunked bodies re-framed (hbfork.core.chunked.Rechunker), driven with bytes."""

from __future__ import annotations

import pytest

from hbfork.core.chunked import Rechunker
from hbfork.core.errors import ProtocolError


def relay_all(data: bytes, step: int, status: int = 400) -> tuple[bytes, int, bool]:
    """Feed `data` `step` bytes at a time, keeping what was not consumed, as the relays do:
    (what came out, bytes left unconsumed, done)."""
    body = Rechunker(status=status)
    out = bytearray()
    pending = bytearray()
    for start in range(0, len(data), step):
        pending += data[start:start + step]
        taken = body.relay(pending, len(pending), out)
        del pending[:taken]
    return bytes(out), len(pending), body.done


def unchunk(framed: bytes) -> bytes:
    data, position = bytearray(), 0
    while True:
        line_end = framed.index(b"\r\n", position)
        size = int(framed[position:line_end], 16)
        position = line_end + 2
        if not size:
            return bytes(data)
        data += framed[position:position + size]
        assert framed[position + size:position + size + 2] == b"\r\n"
        position += size + 2


TOLERATED = [
    (b"a \r\n0123456789\r\n0\r\n\r\n", b"a\r\n0123456789\r\n0\r\n\r\n"),         # space
    (b"2;\r\nab\r\n0\r\n\r\n", b"2\r\nab\r\n0\r\n\r\n"),                            # empty ext
    (b"2;name=\"v;x\"\r\nab\r\n0;last\r\n\r\n", b"2\r\nab\r\n0\r\n\r\n"),           # extensions
    (b"0002\r\nab\r\n0\r\n\r\n", b"2\r\nab\r\n0\r\n\r\n"),                          # leading 0s
    (b"A\r\n0123456789\r\n0\r\n\r\n", b"a\r\n0123456789\r\n0\r\n\r\n"),           # upper hex
    (b"1\r\nx\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", b"1\r\nx\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n"),
    (b"0\r\n\r\n", b"0\r\n\r\n"),                                                      # empty
]


@pytest.mark.parametrize(("sent", "relayed"), TOLERATED)
def test_tolerated_framings_are_relayed_clean_in_one_read(sent, relayed):
    out, left, done = relay_all(sent, len(sent))
    assert (out, left, done) == (relayed, 0, True)


@pytest.mark.parametrize(("sent", "relayed"), TOLERATED)
def test_reads_of_any_size_give_the_same_data(sent, relayed):
    for step in (1, 2, 3, 7):
        out, left, done = relay_all(sent, step)
        assert done and left == 0
        assert unchunk(out) == unchunk(relayed)  # pieces may be framed apart, never lost
        last = b"0\r\n" + relayed.split(b"\r\n0\r\n", 1)[1] if b"\r\n0\r\n" in relayed \
            else relayed
        assert out.endswith(last)  # the last chunk and trailers, once


def test_bytes_after_the_body_are_left_for_the_next_message():
    body = Rechunker()
    out = bytearray()
    data = bytearray(b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n")
    taken = body.relay(data, len(data), out)
    assert data[taken:] == b"GET / HTTP/1.1\r\n"
    assert bytes(out) == b"1\r\nx\r\n0\r\n\r\n"


@pytest.mark.parametrize("bad", [b"zz\r\nab\r\n", b"2\r\nabc\r\n", b"-1\r\n",
                                 b"2\r\nab\r\n0\r\n bad: fold\r\n\r\n", b"2\rx\r\n"])
@pytest.mark.parametrize("status", [400, 502])
def test_malformed_framing_raises_the_sides_status(bad, status):
    with pytest.raises(ProtocolError) as err:
        relay_all(bad, len(bad), status)
    assert err.value.status == status


def test_a_limit_is_kept():
    body = Rechunker(limit=3)
    with pytest.raises(ProtocolError) as err:
        body.relay(bytearray(b"4\r\nabcd\r\n"), 9, bytearray())
    assert err.value.status == 413


CLEAN = b"1a\r\n" + b"x" * 26 + b"\r\n3\r\nabc\r\n0\r\nX-Sum: 9\r\n\r\n"


def test_a_clean_framing_goes_on_byte_for_byte_whatever_the_reads():
    for step in (1, 2, 5, len(CLEAN)):
        out, left, done = relay_all(CLEAN, step)
        assert (out, left, done) == (CLEAN, 0, True), step


def test_clean_and_tolerated_chunks_mix_at_chunk_boundaries_only():
    sent = b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n2\r\nhi\r\n0003\r\njkl\r\n0;x\r\nT: 1\r\n\r\n"
    whole, _, _ = relay_all(sent, len(sent))
    assert whole == b"3\r\nabc\r\n4\r\ndefg\r\n2\r\nhi\r\n3\r\njkl\r\n0\r\nT: 1\r\n\r\n"
    for step in range(1, 12):
        out, left, done = relay_all(sent, step)
        assert done and left == 0
        assert unchunk(out) == b"abcdefghijkl", step
        assert out.startswith(b"3\r\nabc\r\n") and out.endswith(b"0\r\nT: 1\r\n\r\n")
        # every size line that goes out is clean
        assert all(line == b"%x" % int(line, 16) for line in _size_lines(out)), (step, out)


def _size_lines(framed: bytes) -> list[bytes]:
    lines, position = [], 0
    while True:
        line_end = framed.index(b"\r\n", position)
        lines.append(framed[position:line_end])
        size = int(framed[position:line_end], 16)
        if not size:
            return lines
        position = line_end + 2 + size + 2


def test_what_came_before_a_bad_chunk_has_gone_on_and_nothing_of_it():
    body = Rechunker(status=502)
    out = bytearray()
    with pytest.raises(ProtocolError):
        body.relay(bytearray(b"2\r\nab\r\n3;e\r\ncde\r\nzz\r\n"), 22, out)
    assert bytes(out) == b"2\r\nab\r\n3\r\ncde\r\n"  # as is, re-framed, then "zz": none
