"""The HTTP/1.1 grammar (RFC 9110 §5.6, RFC 9112), as the compiled patterns both head parsers
use: the full one (hbfork.core.http11) and the lean one (hbfork.core.lean). Pure.

One definition of each character class, so the two parsers cannot drift apart: a head the lean
parser takes is always one the full parser would take.
"""

from __future__ import annotations

import re

TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"        # token characters (RFC 9110 §5.6.2)
LOWER_TCHAR = rb"!#$%&'*+\-.^_`|~0-9a-z"     # the same in a lower-cased head
VCHAR = rb"\x21-\x7e"                        # visible characters: a request-target's
NOT_FIELD_VALUE = rb"\x00-\x08\x0a-\x1f\x7f"  # controls but HTAB: never in a field value

TOKEN = re.compile(rb"[" + TCHAR + rb"]+")
TARGET = re.compile(rb"[" + VCHAR + rb"]+")
CONTROL = re.compile(rb"[" + NOT_FIELD_VALUE + rb"]")
DIGITS = re.compile(rb"[0-9]{1,18}")   # a Content-Length that fits in 63 bits
HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")  # a chunk size
STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9]{2})(?: [^\r\n]*)?")
# One field: the value is taken greedily (a lazy match costs twice as much) and trailing
# whitespace, which is rare, is stripped afterwards.
FIELD = re.compile(rb"([" + TCHAR + rb"]+):[\t ]*([^" + NOT_FIELD_VALUE + rb"]*)\r\n")
TRAILING_SPACE = re.compile(rb"[\t ]\r\n")
# A whole field block. Possessive (nothing to give back: a name cannot hold ':', a value cannot
# hold CR), which spares the regex engine its backtracking bookkeeping: a quarter faster on a
# typical head.
FIELDS = re.compile(rb"(?:[" + TCHAR + rb"]++:[^" + NOT_FIELD_VALUE + rb"]*+\r\n)*+")
ABSOLUTE_TARGET = re.compile(rb"(?i)https?://([^/?#]*)([/?][^#]*)?")
HOST = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*")  # RFC 3986 authority, no userinfo

# The lean parser's: the common request and status lines (HTTP/1.1 only, 2xx-5xx).
LEAN_REQUEST_LINE = re.compile(rb"([" + TCHAR + rb"]+) ([" + VCHAR + rb"]+) HTTP/1\.1\r\n")
LEAN_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9]{2})(?: [^\r\n]*)?\r\n")
LOWER_NAME = rb"[" + LOWER_TCHAR + rb"]*"  # the rest of a field name in a lower-cased head
