"""Whether a client connection carries on after a response (hbfork.core.persistence), by
table."""

from __future__ import annotations

import pytest

from hbfork.core.persistence import client_keeps, own_answer_keeps, response_keeps

# (asked, client_eof, buffered, draining, keeps)
CLIENT = [
    (True, False, False, False, True),
    (False, False, False, False, False),   # Connection: close, or HTTP/1.0 without keep-alive
    (True, True, False, False, False),     # the client closed its side
    (True, True, True, False, True),       # ... after pipelining requests still buffered
    (True, False, False, True, False),     # the proxy drains
    (True, True, True, True, False),
]


@pytest.mark.parametrize(("asked", "eof", "buffered", "draining", "keeps"), CLIENT)
def test_client_keeps(asked: bool, eof: bool, buffered: bool, draining: bool,
                      keeps: bool) -> None:
    assert client_keeps(asked, eof, buffered, draining) is keeps


# (framed, dechunked, request_read, keeps) for a client that asked and is still there
RESPONSE = [
    (True, False, True, True),
    (False, False, True, False),   # read until the member closes: so must the client
    (True, True, True, False),     # de-chunked for HTTP/1.0: its end is the close
    (True, False, False, False),   # the request body was not read whole
]


@pytest.mark.parametrize(("framed", "dechunked", "request_read", "keeps"), RESPONSE)
def test_response_keeps(framed: bool, dechunked: bool, request_read: bool,
                        keeps: bool) -> None:
    assert response_keeps(True, False, False, False, framed, dechunked, request_read) is keeps
    assert response_keeps(False, False, False, False, framed, dechunked, request_read) is False


# (status, sound, request_read, keeps) for a client that asked and is still there
OWN = [
    (502, False, True, True),
    (503, False, True, True),
    (400, False, True, False),    # a malformed request: nothing after it can be trusted
    (404, True, True, True),      # a route's answer to a sound request
    (301, True, True, True),      # redirect_https
    (408, False, False, False),   # the body never came
    (502, False, False, False),   # the rest of the body would be taken as a request
]


@pytest.mark.parametrize(("status", "sound", "request_read", "keeps"), OWN)
def test_own_answer_keeps(status: int, sound: bool, request_read: bool, keeps: bool) -> None:
    assert own_answer_keeps(status, sound, request_read, True, False, False, False) is keeps
    assert own_answer_keeps(status, sound, request_read, True, False, False, True) is False
