"""Apache `LogFormat` strings for the access log, compiled once at load. Pure.

`compile_format(text)` reads a format as mod_log_config does and returns its parts: literal
text (with `\\n`, `\\t`, `\\r` and `\\\\` unescaped) and one function per directive; `render`
joins them for one record. Supported directives (mod_log_config's meaning):

    %h %a      the client's address (%{c}a, %{c}h: the connection's peer)
    %l %u      "-" (no identd, no authenticated user)
    %t         [time the request came]  %{FORMAT}t strftime FORMAT, begin:/end:, sec, msec,
                                                   usec, msec_frac, usec_frac
    %r         the request line         %>s %<s %s the status
    %b %B      response bytes ("-" / 0) %I %O      bytes from / to the client (TCP mode;
                                                   HTTP: %O is %B, %I is "-")
    %D %T      time taken: µs / s       %{ms}T %{us}T %{s}T
    %{X}i %{X}o  a request / response header ("-" when absent; repeated fields joined)
    %{X}C      cookie X of the request  %L         the request ID, if one was given
    %v %V      the Host asked for       %p         the port asked for (Host's, else the
                                                   listener's: UseCanonicalName Off)
    %P         the worker's pid         %m %U %q %H  method, path, "?query", protocol
    %X         "+" kept alive, "-" closed
    %{BALANCER_WORKER_NAME}e  the member that answered (or caused the answer), as a URL
    %{BALANCER_NAME}e         its pool (balancer://NAME)   %{member}e  its address
    %{outcome}e  how it ended when not plainly: slow_head, slow_body, slow_reader (HTTP;
                 TCP mode: closed, reset, ...); "-" when it ended plainly
    %%         a percent sign

Status conditions are honoured (`%400,501{User-agent}i`, `%!200,304{Referer}i`: "-" unless
the status is / is not one of those), and `<` / `>` are accepted (hbfork has no internal
redirects: both are the final request). Values from the request or the members are escaped as
mod_log_config escapes them (`"` and `\\` by a backslash, \\b \\n \\r \\t \\v, any other
control or non-ASCII byte as \\xhh), so a line can always be split again.

Anything else (%f, %R, %{VAR}e, %n, %k, ...) is refused at load, naming the directive, rather
than logged as nonsense.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol


class LogRecord(Protocol):
    """What one request (or TCP connection) offers the formatter."""

    @property
    def fields(self) -> Mapping[str, Any]: ...  # hbfork.ops.access_record's (client, ...)

    def request_header(self, lower_name: bytes) -> bytes | None: ...
    def response_header(self, lower_name: bytes) -> bytes | None: ...


Part = Callable[[LogRecord, str], str]   # (record, the %t text) -> text
Parts = list[Part | str]

# One directive: %, then conditions (!, digits and commas), an {argument}, < or >, a letter.
_DIRECTIVE = re.compile(r"%(!?)([0-9,]*)(?:\{([^}]*)\})?([<>]*)(.?)", re.DOTALL)
_LITERAL_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_NAMED = {"\b": "\\b", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
          '"': '\\"', "\\": "\\\\"}
_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def escape(text: str) -> str:
    """As mod_log_config escapes a logged value (ap_escape_logitem)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()) & 0xff:02x}"), text)


def _get(record: LogRecord, name: str) -> Any:
    """A field, or None. Records may fill their fields on first use (a dict's __missing__),
    which `get` would bypass: hence the lookup by key."""
    try:
        return record.fields[name]
    except KeyError:
        return None


def _field(name: str, zero: str = "-", escaped: bool = False) -> Part:
    """A field as text: "-" when missing or empty; `zero` for 0 (Apache's %b is "-")."""
    def part(record: LogRecord, stamp: str) -> str:
        try:
            value = record.fields[name]  # (_get, inlined: the most common part)
        except KeyError:
            return "-"
        if value is None or value == "":
            return "-"
        if value.__class__ is str:
            return escape(value) if escaped else value
        if value == 0 and value.__class__ is int:
            return zero
        return escape(str(value)) if escaped else str(value)
    return part


def _seconds(scale: float) -> Part:
    def part(record: LogRecord, stamp: str) -> str:
        return str(int(float(_get(record, "total_seconds") or 0) * scale))
    return part


def _header(name: str, response: bool) -> Part:
    lower = name.lower().encode("latin-1")

    def part(record: LogRecord, stamp: str) -> str:
        value = record.response_header(lower) if response else record.request_header(lower)
        return "-" if value is None else escape(value.decode("latin-1"))
    return part


def cookie_value(header: bytes, name: bytes) -> bytes | None:
    """The value of cookie `name` in a Cookie header, None when it is not there."""
    for pair in header.split(b";"):
        key, eq, value = pair.strip(b" \t").partition(b"=")
        if eq and key == name:
            return value
    return None


def _cookie(name: str) -> Part:
    wanted = name.encode("latin-1")

    def part(record: LogRecord, stamp: str) -> str:
        header = record.request_header(b"cookie")
        value = cookie_value(header, wanted) if header is not None else None
        return "-" if value is None else escape(value.decode("latin-1"))
    return part


def _time(argument: str) -> Part:
    """%{FORMAT}t: the request's start (or with end:, its end) as FORMAT says."""
    end = argument.startswith("end:")
    argument = argument.removeprefix("end:").removeprefix("begin:")

    def when(record: LogRecord) -> float:
        started = float(_get(record, "started") or 0.0)
        return started + float(_get(record, "total_seconds") or 0) if end else started

    scales = {"sec": 1, "msec": 1000, "usec": 1_000_000}
    if argument in scales:
        scale = scales[argument]
        return lambda record, stamp: str(int(when(record) * scale))
    if argument in ("msec_frac", "usec_frac"):
        digits, scale = (3, 1000) if argument == "msec_frac" else (6, 1_000_000)
        return lambda record, stamp: f"{int(when(record) * scale) % scale:0{digits}d}"
    strftime = argument or "[%d/%b/%Y:%H:%M:%S %z]"
    return lambda record, stamp: datetime.fromtimestamp(when(record)).astimezone() \
        .strftime(strftime)


def _connection_status(record: LogRecord, stamp: str) -> str:
    return "+" if _get(record, "keep_alive") else "-"


_SIMPLE: dict[str, Part] = {
    "h": _field("client"), "a": _field("client"),
    "l": lambda r, t: "-", "u": lambda r, t: "-",
    "t": lambda r, t: f"[{t}]",
    "r": _field("request", escaped=True),
    "s": _field("status"),
    "b": _field("bytes"), "B": _field("bytes", zero="0"),
    "I": _field("bytes_in", zero="0"), "O": _field("bytes_out", zero="0"),
    "D": _seconds(1e6), "T": _seconds(1),
    "v": _field("host", escaped=True), "V": _field("host", escaped=True),
    "p": _field("port"), "P": _field("pid"), "L": _field("request_id", escaped=True),
    "m": _field("method", escaped=True), "U": _field("path", escaped=True),
    "q": lambda r, t: "?" + escape(str(query)) if (query := _get(r, "query")) else "",
    "H": _field("protocol", escaped=True), "X": _connection_status,
    "%": lambda r, t: "%",
}
_ARGUMENTS: dict[tuple[str, str], Part] = {
    ("c", "a"): _field("peer"), ("c", "h"): _field("peer"),
    ("ms", "T"): _seconds(1e3), ("us", "T"): _seconds(1e6), ("s", "T"): _seconds(1),
    ("canonical", "p"): _field("port"), ("local", "p"): _field("port"),
    ("pid", "P"): _field("pid"),
    ("member", "e"): _field("member"), ("outcome", "e"): _field("outcome"),
    ("BALANCER_WORKER_NAME", "e"): _field("member_url"),
    ("BALANCER_NAME", "e"): _field("pool_url"),
}


def _conditional(part: Part, statuses: frozenset[int], negated: bool) -> Part:
    def conditional(record: LogRecord, stamp: str) -> str:
        status = _get(record, "status") or 0
        if (status in statuses) == negated:
            return "-"
        return part(record, stamp)
    return conditional


def _directive(match: re.Match[str]) -> Part:
    negated, conditions, argument, _, letter = match.groups()
    whole = match.group(0)
    if not letter:
        raise ValueError(f"{whole!r} ends the format without a directive letter")
    if argument is not None and letter in "io":
        part = _header(argument, letter == "o")
    elif argument is not None and letter == "C":
        part = _cookie(argument)
    elif argument is not None and letter == "t":
        part = _time(argument)
    elif argument is not None and (argument, letter) in _ARGUMENTS:
        part = _ARGUMENTS[argument, letter]
    elif argument is None and letter in _SIMPLE:
        part = _SIMPLE[letter]
    else:
        raise ValueError(f"{whole!r} is not supported in hbfork's access log")
    if not conditions.strip(","):
        if negated:
            raise ValueError(f"{whole!r}: '!' without status codes")
        return part
    codes = [c for c in conditions.split(",") if c]
    if any(not 100 <= int(c) <= 999 for c in codes):
        raise ValueError(f"{whole!r}: status conditions must be 3-digit codes")
    return _conditional(part, frozenset(int(c) for c in codes), bool(negated))


def _literal(text: str) -> str:
    """Literal text with mod_log_config's backslash escapes (\\n \\t \\r \\\\) applied."""
    return re.sub(r"\\([ntr\\])", lambda m: _LITERAL_ESCAPES[m.group(1)], text)


def compile_format(text: str) -> Parts:
    """The parts of a LogFormat string; raises ValueError naming what is not supported."""
    parts: Parts = []
    at = 0
    for match in _DIRECTIVE.finditer(text):
        if match.start() > at:
            parts.append(_literal(text[at:match.start()]))
        parts.append(_directive(match))
        at = match.end()
    if at < len(text):
        parts.append(_literal(text[at:]))
    # Adjacent literal text (a %% was one) is joined, so rendering does less.
    merged: Parts = []
    for part in parts:
        if part is _SIMPLE["%"]:
            part = "%"
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def render(parts: Parts, record: LogRecord, stamp: str) -> str:
    """One line (without its newline)."""
    return "".join([part if part.__class__ is str else part(record, stamp)  # type: ignore
                    for part in parts])


def uses_response_headers(text: str) -> bool:
    """Whether a (valid) format logs response headers (%{X}o)."""
    return any(m.group(3) is not None and m.group(5) == "o" for m in _DIRECTIVE.finditer(text))


# Every field a JSON line may carry ([log] access_fields), in HTTP and in TCP mode.
HTTP_FIELDS = ("time", "client", "peer", "request", "method", "path", "query", "protocol",
               "host", "status", "bytes", "referer", "user_agent", "member", "member_name",
               "pool", "upstream_seconds", "total_seconds", "keep_alive", "request_id",
               "port", "pid", "started", "outcome")
TCP_FIELDS = ("time", "client", "peer", "member", "member_name", "bytes_in", "bytes_out",
              "total_seconds", "outcome", "port", "pid", "started")
ALL_FIELDS = tuple(dict.fromkeys(HTTP_FIELDS + TCP_FIELDS))
BUILTIN = ("combined", "combined+", "json")


def access_format(value: Any) -> str:
    """[log] access_format: a built-in name, or a LogFormat string that compiles."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if value in BUILTIN:
        return value
    if "%" not in value:
        raise ValueError(f"expected one of {', '.join(map(repr, BUILTIN))} or an Apache "
                         f"LogFormat string (with %-directives), got {value!r}")
    compile_format(value)
    return value


def access_fields(value: Any) -> tuple[str, ...]:
    """[log] access_fields: names from ALL_FIELDS, each once."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of field names, got {value!r}")
    unknown = [v for v in value if v not in ALL_FIELDS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (known: {', '.join(ALL_FIELDS)})")
    return tuple(dict.fromkeys(value))


COMMON = '%h %l %u %t "%r" %>s %b'
COMBINED = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"'
NAMED = {"common": COMMON, "combined_apache": COMBINED}
