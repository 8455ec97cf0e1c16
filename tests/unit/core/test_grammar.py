"""The HTTP grammar both head parsers share (hbfork.core.grammar), by table."""

from __future__ import annotations

import re

import pytest

from hbfork.core import grammar

# (pattern, text, matches whole)
CASES = [
    (grammar.TOKEN, b"GET", True),
    (grammar.TOKEN, b"X-Custom_Name.1~!", True),
    (grammar.TOKEN, b"bad name", False),
    (grammar.TOKEN, b"bad:name", False),
    (grammar.TOKEN, b"", False),
    (grammar.TARGET, b"/a?b=c%20d", True),
    (grammar.TARGET, b"/a b", False),
    (grammar.TARGET, b"/\x7f", False),
    (grammar.DIGITS, b"0", True),
    (grammar.DIGITS, b"123456789012345678", True),
    (grammar.DIGITS, b"1234567890123456789", False),  # over 63 bits
    (grammar.DIGITS, b"+1", False),
    (grammar.HEX, b"fF09", True),
    (grammar.HEX, b"0x1", False),
    (grammar.STATUS_LINE, b"HTTP/1.1 200 OK", True),
    (grammar.STATUS_LINE, b"HTTP/1.0 404", True),
    (grammar.STATUS_LINE, b"HTTP/1.1 200 ", True),    # an empty reason
    (grammar.STATUS_LINE, b"HTTP/2 200 OK", False),
    (grammar.STATUS_LINE, b"HTTP/1.1 600 X", False),
    (grammar.FIELDS, b"Host: a\r\nX: \tb c\r\n", True),
    (grammar.FIELDS, b"", True),
    (grammar.FIELDS, b"Host : a\r\n", False),          # space before the colon
    (grammar.FIELDS, b" folded\r\n", False),           # obsolete line folding
    (grammar.FIELDS, b"X: a\rb\r\n", False),           # a bare CR
    (grammar.FIELDS, b"X: a\x00\r\n", False),
    (grammar.HOST, b"example.com:8080", True),
    (grammar.HOST, b"[::1]:80", True),
    (grammar.HOST, b"user@host", False),               # no userinfo
    (grammar.HOST, b"a/b", False),
    (grammar.LEAN_REQUEST_LINE, b"GET / HTTP/1.1\r\n", True),
    (grammar.LEAN_REQUEST_LINE, b"GET / HTTP/1.0\r\n", False),  # the full parser's
    (grammar.LEAN_STATUS_LINE, b"HTTP/1.1 200 OK\r\n", True),
    (grammar.LEAN_STATUS_LINE, b"HTTP/1.1 101 Switching\r\n", False),
]


@pytest.mark.parametrize(("pattern", "text", "whole"), CASES)
def test_grammar(pattern: re.Pattern[bytes], text: bytes, whole: bool) -> None:
    assert (pattern.fullmatch(text) is not None) is whole


def test_a_field_is_split_into_name_and_value() -> None:
    assert grammar.FIELD.findall(b"Host: a\r\nX-A:\tb \r\n") == [(b"Host", b"a"), (b"X-A", b"b ")]


def test_the_lean_parser_shares_the_full_parsers_grammar() -> None:
    """lean.py and http11.py import these patterns; neither keeps a copy of its own."""
    from hbfork.core import http11, lean
    assert lean.FIELDS is http11.FIELDS is grammar.FIELDS
    assert lean.HOST is http11.HOST is grammar.HOST
    assert lean.DIGITS is http11.DIGITS is grammar.DIGITS
