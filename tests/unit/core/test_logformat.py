"""hbfork.core.logformat: Apache LogFormat strings, compiled once, rendered per request; the
expected lines are what Apache's mod_log_config writes for the same request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from hbfork.core.logformat import (
    COMBINED,
    COMMON,
    access_fields,
    access_format,
    compile_format,
    cookie_value,
    escape,
    render,
    uses_response_headers,
)

STAMP = "07/Dec/2026:08:00:00 +0000"
STARTED = 1796630400.25  # 2026-12-07T08:00:00.25Z


@dataclass
class Record:
    fields: dict[str, Any] = field(default_factory=lambda: {
        "client": "192.0.2.7", "peer": "10.9.9.9", "request": "GET /a/b?x=1 HTTP/1.1",
        "method": "GET", "path": "/a/b", "query": "x=1", "protocol": "HTTP/1.1",
        "status": 200, "bytes": 1234, "total_seconds": 0.0125, "member": "10.0.0.1:8080",
        "member_url": "http://10.0.0.1:8080", "pool_url": "balancer://web",
        "host": "www.example.com", "port": 443, "pid": 4242, "started": STARTED,
        "keep_alive": True, "request_id": None, "bytes_in": 10, "bytes_out": 20})
    request: dict[bytes, bytes] = field(default_factory=lambda: {
        b"referer": b"https://r.example/", b"user-agent": b'curl/8 "quoted"',
        b"cookie": b"a=1; sid=abc.node1; b"})
    response: dict[bytes, bytes] = field(default_factory=lambda: {b"content-type": b"text/html"})

    def request_header(self, lower_name: bytes) -> bytes | None:
        return self.request.get(lower_name)

    def response_header(self, lower_name: bytes) -> bytes | None:
        return self.response.get(lower_name)


def line(fmt: str, record: Record | None = None) -> str:
    return render(compile_format(fmt), record or Record(), STAMP)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_combined_and_common_as_apache_writes_them():
    assert line(COMBINED) == ('192.0.2.7 - - [07/Dec/2026:08:00:00 +0000] "GET /a/b?x=1 '
                              'HTTP/1.1" 200 1234 "https://r.example/" "curl/8 \\"quoted\\""')
    assert line(COMMON) == ('192.0.2.7 - - [07/Dec/2026:08:00:00 +0000] "GET /a/b?x=1 '
                            'HTTP/1.1" 200 1234')


@pytest.mark.parametrize(("fmt", "out"), [
    ("%h %a %{c}a %{c}h", "192.0.2.7 192.0.2.7 10.9.9.9 10.9.9.9"),
    ("%l %u", "- -"),
    ("%D %T %{ms}T %{us}T %{s}T", "12500 0 12 12500 0"),
    ("%m %U %q %H", "GET /a/b ?x=1 HTTP/1.1"),
    ("%v %V:%p %{canonical}p %{local}p", "www.example.com www.example.com:443 443 443"),
    ("%P %{pid}P", "4242 4242"),
    ("%{Content-Type}o %{X-None}i %{x-none}o", "text/html - -"),
    ("%{member}e %{BALANCER_WORKER_NAME}e %{BALANCER_NAME}e",
     "10.0.0.1:8080 http://10.0.0.1:8080 balancer://web"),
    ("100%% %s %>s %<s", "100% 200 200 200"),
    ("%X %L %I %O", "+ - 10 20"),
    ("%{sid}C %{b}C %{none}C", "abc.node1 - -"),
    ("%t", "[07/Dec/2026:08:00:00 +0000]"),
    ("%{%Y-%m-%dT%H:%M:%S}t", "2026-12-07T08:00:00"),
    ("%{sec}t %{msec}t %{usec_frac}t %{msec_frac}t",
     "1796630400 1796630400250 250000 250"),
    ("%{begin:sec}t %{end:usec}t", "1796630400 1796630400262500"),
    ("%{}t", "[07/Dec/2026:08:00:00 +0000]"),
    ("tab\\there\\nnew\\\\ \\x", "tab\there\nnew\\ \\x"),
    ("%200{Referer}i %400,501{Referer}i %!200,304{Referer}i %!404{Referer}i",
     "https://r.example/ - - https://r.example/"),
    ("no directives", "no directives"),
])
def test_directives(fmt, out):
    assert line(fmt) == out


def test_no_body_is_a_dash_for_b_and_0_for_capital_b():
    record = Record()
    record.fields["bytes"] = 0
    assert line("%b %B", record) == "- 0"


def test_missing_fields_are_dashes_and_no_query_is_empty():
    """A TCP-mode record (no request, no status): what it lacks is "-", as Apache does."""
    record = Record(fields={"client": "192.0.2.7", "started": STARTED}, request={},
                    response={})
    assert line('%h "%r" %>s %{Referer}i %m%q|', record) == '192.0.2.7 "-" - - -|'


@pytest.mark.parametrize(("raw", "logged"), [
    (b"plain ascii", "plain ascii"),
    (b'say "hi"', 'say \\"hi\\"'),
    (b"back\\slash", "back\\\\slash"),
    (b"a\x1bb", "a\\x1bb"),
    (b"\x08\n\r\t\x0b", "\\b\\n\\r\\t\\v"),
    (b"del\x7f", "del\\x7f"),
    (b"caf\xc3\xa9", "caf\\xc3\\xa9"),  # non-ASCII bytes: \xhh each, as Apache
    (b"\x00", "\\x00"),
])
def test_escaping_as_mod_log_config(raw, logged):
    record = Record()
    record.request[b"user-agent"] = raw
    assert line("%{User-Agent}i", record) == logged
    assert escape(raw.decode("latin-1")) == logged


def test_a_logged_request_line_cannot_forge_a_second_line():
    record = Record()
    record.fields["request"] = 'GET /x\n127.0.0.1 - - "GET /admin HTTP/1.1'
    out = line('%h "%r"', record)
    assert "\n" not in out and out.replace('\\"', '').count('"') == 2


@pytest.mark.parametrize("fmt", [
    "%Z", "%{X}c", "100%", "%{X}x", "%f", "%R", "%{FOO}e", "%{note}n", "%k", "%{X}^ti",
    "%!{Referer}i", "%99{Referer}i", "%{remote}p", "%A", "% ",
])
def test_unsupported_is_refused_at_load(fmt):
    with pytest.raises(ValueError) as err:
        compile_format(fmt)
    assert repr(fmt.strip()[fmt.index("%"):][:2])[:-1] in str(err.value)  # names it


def test_compiled_once_literals_merged():
    parts = compile_format("a %% b %h c")
    assert parts[0] == "a % b " and parts[-1] == " c" and len(parts) == 3


def test_cookie_value():
    assert cookie_value(b"a=1; sid=x", b"sid") == b"x"
    assert cookie_value(b"a=1;sid", b"sid") is None
    assert cookie_value(b"", b"a") is None


def test_uses_response_headers():
    assert uses_response_headers("%h %{Location}o")
    assert not uses_response_headers(COMBINED)


@pytest.mark.parametrize(("value", "ok"), [
    ("combined", True), ("combined+", True), ("json", True), (COMBINED, True),
    ("%h %{X-Request-ID}i", True), ("common", False), ("", False), ("%h %Q", False),
    (3, False),
])
def test_access_format_setting(value, ok):
    if ok:
        assert access_format(value) == value
    else:
        with pytest.raises(ValueError):
            access_format(value)


def test_access_fields_setting():
    assert access_fields(["client", "status", "client"]) == ("client", "status")
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        access_fields(["client", "nope"])
    with pytest.raises(ValueError):
        access_fields("client")
