"""The arithmetic of slow clients: rate deadlines, when a buffered body may go, the body
look-ahead."""

from __future__ import annotations

import math

import pytest

from hbfork.core.errors import ProtocolError
from hbfork.core.slow_clients import BodyProbe, body_ready, kept_up, rate_deadline, sent_bytes


@pytest.mark.parametrize(("started", "done", "grace", "rate", "expected"), [
    (100.0, 0, 20.0, 500, 120.0),          # nothing moved: the grace alone
    (100.0, 5000, 20.0, 500, 130.0),       # 5000 bytes at 500/s: 10 s more
    (100.0, 250, 20.0, 500, 120.5),
    (100.0, 10**9, 20.0, 0, 120.0),        # no rate: a whole-transfer deadline
    (100.0, 123, 0.0, 500, math.inf),      # grace 0: no limit at all
    (0.0, 1_000_000, 1.0, 1_000_000, 2.0),
])
def test_rate_deadline(started, done, grace, rate, expected):
    assert rate_deadline(started, done, grace, rate) == expected


@pytest.mark.parametrize(("buffered", "complete", "limit", "ready"), [
    (10, False, 65536, False),
    (10, True, 65536, True),      # a small body all here
    (65536, False, 65536, True),  # the buffer is full: the rest streams
    (70000, False, 65536, True),
    (0, True, 65536, True),
])
def test_body_ready(buffered, complete, limit, ready):
    assert body_ready(buffered, complete, limit) is ready


@pytest.mark.parametrize(("queued", "waiting", "sent"), [(1000, 200, 800), (100, 300, 0),
                                                          (0, 0, 0)])
def test_sent_bytes(queued, waiting, sent):
    assert sent_bytes(queued, waiting) == sent


def test_a_length_body_is_complete_once_its_bytes_are_here():
    probe = BodyProbe(10, chunked=False)
    assert not probe.complete(bytearray(b"123456789"))
    assert probe.complete(bytearray(b"0123456789"))
    assert probe.complete(bytearray(b"0123456789GET / HTTP/1.1\r\n"))  # a pipelined request


def test_a_chunked_body_is_looked_at_once_byte_by_byte():
    body = b"5;x=1\r\nhello\r\n3 \r\nabc\r\n0\r\nT: 1\r\n\r\n"
    probe = BodyProbe(0, chunked=True)
    buf = bytearray()
    verdicts = []
    for byte in body:
        buf.append(byte)
        verdicts.append(probe.complete(buf))
    assert verdicts == [False] * (len(body) - 1) + [True]
    assert probe.position == len(body)


def test_a_malformed_chunked_body_is_refused_before_a_member():
    with pytest.raises(ProtocolError) as err:
        BodyProbe(0, chunked=True).complete(bytearray(b"zz\r\n"))
    assert err.value.status == 400


def test_a_chunked_body_over_the_limit_is_413_while_buffered():
    with pytest.raises(ProtocolError) as err:
        BodyProbe(0, chunked=True, limit=4).complete(bytearray(b"5\r\nhello\r\n"))
    assert err.value.status == 413


# --- the keys


@pytest.mark.parametrize(("line", "key", "problem"), [
    ("request_buffering = -1", "[http] request_buffering", "must be from 0"),
    ("request_buffering = 1.5", "[http] request_buffering", "integer"),
    ("body_timeout = -2", "[http] body_timeout", ""),
    ("body_min_rate = \"fast\"", "[http] body_min_rate", "integer"),
    ("send_timeout = true", "[http] send_timeout", "seconds"),
    ("send_min_rate = -5", "[http] send_min_rate", "must be from 0"),
])
def test_invalid_slow_client_keys_are_refused_naming_the_key(line, key, problem):
    from tests.unit.core.test_config import MEMBER, error
    error(f"[http]\n{line}\n{MEMBER}", key, problem)


def test_slow_client_keys_load_with_their_defaults_and_zeroes():
    from tests.unit.core.test_config import MEMBER, load
    http = load(MEMBER).http
    assert (http.request_buffering, http.body_timeout, http.body_min_rate, http.send_timeout,
            http.send_min_rate) == (65536, 20.0, 500, 20.0, 500)
    off = load("[http]\nrequest_buffering = 0\nbody_timeout = 0\nsend_timeout = 0\n"
               "body_min_rate = 0\nsend_min_rate = 0\n" + MEMBER).http
    assert (off.request_buffering, off.body_timeout, off.send_timeout) == (0, 0.0, 0.0)


@pytest.mark.parametrize(("took", "window", "rate", "ok"), [
    (10_000, 20.0, 500, True),     # exactly 500 B/s over the window
    (9_999, 20.0, 500, False),
    (0, 20.0, 0, False),           # no rate: at least a byte per window (nginx)
    (1, 20.0, 0, True),
    (320, 20.0, 500, False),       # slowhttptest -X: 16 bytes a second
])
def test_kept_up(took, window, rate, ok):
    assert kept_up(took, window, rate) is ok
