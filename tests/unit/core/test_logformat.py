"""hbfork.core.logformat: Apache LogFormat strings, compiled once, rendered per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from hbfork.core.logformat import COMBINED, compile_format, render

STAMP = "07/Dec/2026:08:00:00 +0000"


@dataclass
class Record:
    fields: dict[str, Any] = field(default_factory=lambda: {
        "client": "192.0.2.7", "request": "GET /a/b?x=1 HTTP/1.1", "status": 200,
        "bytes": 1234, "total_seconds": 0.0125, "member": "10.0.0.1:8080",
        "host": "www.example.com", "port": 443, "pid": 4242})
    request: dict[bytes, bytes] = field(default_factory=lambda: {
        b"referer": b"https://r.example/", b"user-agent": b'curl/8 "quoted"'})
    response: dict[bytes, bytes] = field(default_factory=lambda: {b"content-type": b"text/html"})

    def request_header(self, lower_name: bytes) -> bytes | None:
        return self.request.get(lower_name)

    def response_header(self, lower_name: bytes) -> bytes | None:
        return self.response.get(lower_name)


def line(fmt: str, record: Record | None = None) -> str:
    return render(compile_format(fmt), record or Record(), STAMP)


def test_combined_as_apache_writes_it():
    assert line(COMBINED) == ('192.0.2.7 - - [07/Dec/2026:08:00:00 +0000] "GET /a/b?x=1 '
                              'HTTP/1.1" 200 1234 "https://r.example/" "curl/8 \\"quoted\\""')


@pytest.mark.parametrize(("fmt", "out"), [
    ("%a %D %T", "192.0.2.7 12500 0"), ("%m %U %q %H", "GET /a/b ?x=1 HTTP/1.1"),
    ("%v:%p %P", "www.example.com:443 4242"), ("%{Content-Type}o %{X-None}i", "text/html -"),
    ("%{member}e 100%%", "10.0.0.1:8080 100%"), ("%s %>s", "200 200"),
])
def test_directives(fmt, out):
    assert line(fmt) == out


def test_no_body_is_a_dash_for_b_and_0_for_capital_b():
    record = Record()
    record.fields["bytes"] = 0
    assert line("%b %B", record) == "- 0"


@pytest.mark.parametrize("fmt", ["%Z", "%{X}c", "%{c}a", "100%", "%{X}x"])
def test_unsupported_is_refused_at_load(fmt):
    with pytest.raises(ValueError):
        compile_format(fmt)


def test_control_bytes_are_escaped():
    record = Record()
    record.request[b"user-agent"] = b"a\x1bb"
    assert line("%{User-Agent}i", record) == "a\\x1bb"
