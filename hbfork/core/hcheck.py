"""Active health checks (mod_proxy_hcheck's model): settings, the request, the judgement of
the answer, and the pass/fail count. Pure: bytes and `now` in, decisions out; the master's
hbfork.master.checks does the I/O, once per front.

A heartbeat says a member's web server has idle workers; a check asks its application. Every
`hcinterval` seconds the front connects to the member (hcmethod "tcp" stops there; over TLS to
a pool with tls = true) and sends it one request (OPTIONS, HEAD or GET of `hcuri`, HTTP/1.1
with Connection: close; to an AJP pool's member "cping", an AJP CPING that wants its CPONG, as
mod_proxy_hcheck's CPING method) and judges the answer: its status must be one of
`hcexpect_status` (Apache: 2xx or 3xx, a redirect is never followed) and, for GET, its body
must contain `hcexpect_body` when one is set. No answer within `hctimeout`, a refused or reset
connection, a failed TLS handshake or a malformed answer is a failed check. `hcfails` failures
in a row take the member out, whatever its heartbeat says; `hcpasses` passes in a row bring it
back (through the outlier slow start).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

from hbfork.core.ajp import CPING
from hbfork.core.retry import parse_statuses
from hbfork.core.values import integer, seconds, setting, text_value

METHODS = ("none", "tcp", "options", "head", "get", "cping")
CPONG = b"AB\x00\x01\x09"   # the one answer a CPING passes with (AJP13: from the container)
MAX_HEAD = 16 * 1024     # an answer's head longer than this is malformed
MAX_BODY = 64 * 1024     # of a body, only this much is searched for hcexpect_body
STAGGER = 2.0            # seconds over which the first checks of a front are spread
URI = re.compile(r"/[\x21-\x7e]*")
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?")
CHUNKED = re.compile(rb"\ntransfer-encoding:[^\n]*chunked")
CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*\r?(?:\n|$)")
NS = 1_000_000_000


def _method(value: Any) -> str:
    text = text_value(value).lower()
    if text not in METHODS:
        raise ValueError(f"expected one of {', '.join(map(repr, METHODS))}, got {value!r}")
    return text


def _uri(value: Any) -> str:
    text = text_value(value)
    if not URI.fullmatch(text):
        raise ValueError(f"expected a path starting with / (printable, no spaces), got "
                         f"{text!r}")
    return text


def _interval(value: Any) -> float:
    number = seconds(0, 86400)(value)
    if number < 0.1:
        raise ValueError(f"must be at least 0.1 seconds, got {value}")
    return number


def _expect_body(value: Any) -> str:
    text = text_value(value)
    if len(text.encode()) > 1024 or any(c in text for c in "\r\n"):
        raise ValueError("expected up to 1024 bytes on one line")
    return text


@dataclass(frozen=True)
class HcheckSettings:
    """A pool's (or one of its members') active check. Hashable: equal settings are one
    check of a member however many pools list it."""

    hcmethod: str = setting("none", _method,
                            "active check: \"tcp\" (connect only), \"options\", \"head\", "
                            "\"get\" (over TLS where the pool has tls = true), \"cping\" "
                            "(AJP pools); \"none\" = no active checks (mod_proxy_hcheck "
                            "hcmethod)")
    hcuri: str = setting("/", _uri, "the path (and query) a check asks for", '"/"')
    hcinterval: float = setting(10.0, _interval,
                                "seconds between the starts of two checks of a member (Apache: "
                                "30; here as short as a silent member's [heartbeat] max_age)")
    hcpasses: int = setting(1, integer(1, 1000),
                            "checks in a row a failed member must pass to come back")
    hcfails: int = setting(1, integer(1, 1000),
                           "checks in a row a member must fail to be taken out")
    hctimeout: float = setting(3.0, seconds(0, 300),
                               "seconds a check may take, connect to last byte judged; "
                               "longer is a failure")
    hcexpect_status: tuple[int, ...] = setting(
        tuple(range(200, 400)), parse_statuses,
        "statuses that pass: numbers or \"200-399\" ranges (a redirect is not followed)",
        '["200-399"]')
    hcexpect_body: str = setting("", _expect_body,
                                 "hcmethod \"get\": text the body must contain (the first "
                                 f"{MAX_BODY // 1024} KiB are searched); \"\" = any body", '""')

    @property
    def enabled(self) -> bool:
        return self.hcmethod != "none"

    @property
    def label(self) -> str:
        """"GET /health" or "TCP connect", for logs and status."""
        if self.hcmethod == "tcp":
            return "TCP connect"
        if self.hcmethod == "cping":
            return "AJP CPING"
        return f"{self.hcmethod.upper()} {self.hcuri}"


HC_KEYS = frozenset(f.name for f in HcheckSettings.__dataclass_fields__.values())
NO_CHECK = HcheckSettings()


def problem(settings: HcheckSettings, ajp: bool) -> tuple[str, str] | None:
    """(key, problem) when the settings cannot work together (in a pool speaking AJP when
    `ajp`), else None."""
    if settings.hcexpect_body and settings.hcmethod != "get":
        return "hcexpect_body", f"needs hcmethod = \"get\" (it is {settings.hcmethod!r})"
    if ajp and settings.hcmethod not in ("none", "tcp", "cping"):
        return "hcmethod", ("an AJP pool's members are checked with \"cping\" or \"tcp\" "
                            "(HTTP checks would go to the AJP port)")
    if not ajp and settings.hcmethod == "cping":
        return "hcmethod", "\"cping\" is AJP's: it needs a pool with protocol = \"ajp\""
    return None


def request(settings: HcheckSettings, host: str) -> bytes:
    """The bytes of one check request (b"" for a TCP check: connecting is the check)."""
    if settings.hcmethod in ("none", "tcp"):
        return b""
    if settings.hcmethod == "cping":
        return CPING
    return (f"{settings.hcmethod.upper()} {settings.hcuri} HTTP/1.1\r\nHost: {host}\r\n"
            "User-Agent: hbfork-hcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode()


def first_due(now: int, interval: float, key: str) -> int:
    """When a new check first runs: soon, but spread over up to STAGGER seconds by `key`, so a
    (re)started front does not check every member at the same instant."""
    spread = min(interval, STAGGER)
    return now + int((zlib.crc32(key.encode()) % 1000) / 1000 * spread * NS)


# --- verdicts

# What a check found (stored as an index in the table, shown by describe()).
RESULTS = ("", "passed", "status", "body", "timeout", "refused", "closed", "reset",
           "malformed", "error", "tls")
(R_NONE, R_PASSED, R_STATUS, R_BODY, R_TIMEOUT, R_REFUSED, R_CLOSED, R_RESET, R_MALFORMED,
 R_ERROR, R_TLS) = range(len(RESULTS))


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    result: int          # R_*
    status: int = 0      # the answer's status, when there was one


def describe(result: int, status: int) -> str:
    """A check's result in words: "passed (200)", "answered 500", "timed out", ..."""
    if result == R_PASSED:
        return f"passed ({status})" if status else "passed"
    return {R_STATUS: f"answered {status}", R_BODY: f"answered {status} without the "
            "expected text", R_TIMEOUT: "timed out", R_REFUSED: "connect refused",
            R_CLOSED: "closed without an answer", R_RESET: "connection reset",
            R_MALFORMED: "malformed answer", R_ERROR: "could not connect",
            R_TLS: "TLS handshake failed"}.get(result, "-")


class ResponseReader:
    """Judges the answer to one check request, fed as it arrives; never raises.

    feed(data) returns a Verdict once one is reached, else None (feed b"" at end of input:
    that always reaches one)."""

    __slots__ = ("_buf", "_done", "body", "chunked", "expect", "head_only", "length",
                 "settings", "status")

    def __init__(self, settings: HcheckSettings) -> None:
        self.settings = settings
        self.expect = settings.hcexpect_body.encode()
        self.head_only = settings.hcmethod != "get" or not self.expect
        self.status = 0
        self.chunked = False
        self.length: int | None = None   # Content-Length, when the answer has one
        self.body = bytearray()
        self._buf = bytearray()
        self._done: Verdict | None = None

    def feed(self, data: bytes) -> Verdict | None:
        if self._done is None:
            self._done = self._body(data) if self.status else self._head(data)
        return self._done

    def _head(self, data: bytes) -> Verdict | None:
        self._buf += data
        while True:
            end = self._buf.find(b"\n\r\n")
            if end < 0:
                if not data:
                    return Verdict(False, R_MALFORMED if self._buf else R_CLOSED)
                return Verdict(False, R_MALFORMED) if len(self._buf) > MAX_HEAD else None
            head, rest = bytes(self._buf[:end]).lower(), bytes(self._buf[end + 3:])
            match = STATUS_LINE.fullmatch(head.split(b"\n", 1)[0].upper())
            if match is None:
                return Verdict(False, R_MALFORMED)
            status = int(match[1])
            if 100 <= status < 200 and status != 101:
                self._buf = bytearray(rest)  # an interim answer: the real one follows
                continue
            self.status = status
            if status not in self.settings.hcexpect_status:
                return Verdict(False, R_STATUS, status)
            if self.head_only:
                return Verdict(True, R_PASSED, status)
            self.chunked = CHUNKED.search(head) is not None
            length = CONTENT_LENGTH.search(head)
            self.length = int(length[1]) if length and not self.chunked else None
            return self._body(rest) if rest or not data else None

    def _body(self, data: bytes) -> Verdict | None:
        if len(self.body) < 2 * MAX_BODY:
            self.body += data
        text = dechunk(bytes(self.body)) if self.chunked else bytes(self.body)
        if self.expect in text[:MAX_BODY]:
            return Verdict(True, R_PASSED, self.status)
        complete = self.length is not None and len(self.body) >= self.length
        if not data or complete or len(text) >= MAX_BODY or len(self.body) >= 2 * MAX_BODY:
            return Verdict(False, R_BODY, self.status)
        return None


class CpongReader:
    """Judges the answer to an AJP CPING: exactly a CPONG passes; anything else, or the
    connection closing first, fails. Same interface as ResponseReader."""

    __slots__ = ("_buf", "_done")

    def __init__(self) -> None:
        self._buf = b""
        self._done: Verdict | None = None

    def feed(self, data: bytes) -> Verdict | None:
        if self._done is None:
            self._buf += data
            if self._buf[:len(CPONG)] == CPONG:
                self._done = Verdict(True, R_PASSED)
            elif not data:
                self._done = Verdict(False, R_MALFORMED if self._buf else R_CLOSED)
            elif not CPONG.startswith(self._buf[:len(CPONG)]):
                self._done = Verdict(False, R_MALFORMED)
        return self._done


def reader(settings: HcheckSettings) -> ResponseReader | CpongReader:
    """What judges the answer to `settings`' check request."""
    return CpongReader() if settings.hcmethod == "cping" else ResponseReader(settings)


def dechunk(raw: bytes) -> bytes:
    """The data of a chunked body as far as it is complete (best effort: for a search)."""
    out, at = bytearray(), 0
    while True:
        line_end = raw.find(b"\r\n", at)
        if line_end < 0:
            return bytes(out)
        size_text = raw[at:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return bytes(out)
        if size == 0:
            return bytes(out)
        start = line_end + 2
        out += raw[start:start + size]
        if start + size + 2 > len(raw):
            return bytes(out)
        at = start + size + 2


# --- the count


@dataclass(slots=True)
class CheckState:
    """One check of one member: passes or failures in a row, and whether it is failing.

    A member starts passing (as Apache's workers do): its heartbeat already gates it, and
    holding every member out until a first check would turn a restart into an outage."""

    passes: int = 0
    fails: int = 0
    failing: bool = False
    result: int = R_NONE
    status: int = 0
    at: int = 0          # monotonic ns of the last result

    def record(self, verdict: Verdict, settings: HcheckSettings, now: int) -> bool:
        """Count one result; True when the check turned failing or passing."""
        self.result, self.status, self.at = verdict.result, verdict.status, now
        if verdict.passed:
            self.passes, self.fails = min(self.passes + 1, 0xFFFF), 0
            if self.failing and self.passes >= settings.hcpasses:
                self.failing = False
                return True
        else:
            self.fails, self.passes = min(self.fails + 1, 0xFFFF), 0
            if not self.failing and self.fails >= settings.hcfails:
                self.failing = True
                return True
        return False


# A member's checks as the table publishes them: none, all passing, one failing.
CHECK_NONE, CHECK_PASSING, CHECK_FAILING = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Summary:
    """What a member's checks say, for the registry and the table (the failing check, if
    any, else the one that ran last)."""

    state: int = CHECK_NONE
    passes: int = 0
    fails: int = 0
    result: int = R_NONE
    status: int = 0
    at: int = 0

    @property
    def failing(self) -> bool:
        return self.state == CHECK_FAILING


NO_SUMMARY = Summary()


def summarize(states: list[CheckState]) -> Summary:
    if not states:
        return NO_SUMMARY
    failing = [s for s in states if s.failing]
    shown = failing[0] if failing else max(states, key=lambda s: s.at)
    return Summary(CHECK_FAILING if failing else CHECK_PASSING, shown.passes, shown.fails,
                   shown.result, shown.status, shown.at)
