"""Apache `LogFormat` strings for the access log, compiled once at load. Pure.

Supported directives (mod_log_config's meaning):

    %h %a      the client's address            %l %u    "-" (no identd, no user)
    %t         [time] as Apache writes it      %r       the request line
    %>s %s     the final status                %b %B    response bytes ("-" / 0 when none)
    %D %T      the time taken, µs / seconds    %{X}i    request header X ("-" if absent)
    %{X}o      response header X               %v %p    the Host asked for / the port
    %P         the worker's pid                %m %U %q %H  method, path, query, protocol
    %{member}e the member that answered (hbfork's own)    %%  a percent sign

Anything else is refused at load (naming the directive), rather than logged as nonsense.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class LogRecord(Protocol):
    """What one request offers the formatter."""

    fields: Mapping[str, Any]   # hbfork.ops.accesslog's fields (client, request, status, ...)

    def request_header(self, lower_name: bytes) -> bytes | None: ...
    def response_header(self, lower_name: bytes) -> bytes | None: ...


Part = Callable[[LogRecord, str], str]   # (record, the %t text) -> text

_DIRECTIVE = re.compile(r"%(?:\{([^}]*)\})?([<>]?)([a-zA-Z%])")


def _field(name: str, dash: bool = True) -> Part:
    def part(record: LogRecord, stamp: str) -> str:
        value = record.fields.get(name)
        return "-" if dash and value in (None, "", 0) else str(value)
    return part


def _request_part(index: int) -> Part:
    def part(record: LogRecord, stamp: str) -> str:
        words = str(record.fields.get("request", "-")).split(" ")
        if index == 1:  # %U: the path without the query
            return words[1].partition("?")[0] if len(words) > 1 else "-"
        if index == 3:  # %q: "?query" or ""
            query = words[1].partition("?")[2] if len(words) > 1 else ""
            return "?" + query if query else ""
        return words[index] if len(words) > index else "-"
    return part


def _header(name: str, response: bool) -> Part:
    lower = name.lower().encode("latin-1")

    def part(record: LogRecord, stamp: str) -> str:
        value = record.response_header(lower) if response else record.request_header(lower)
        return "-" if value is None else _escape(value.decode("latin-1"))
    return part


def _escape(text: str) -> str:
    """As Apache escapes logged values: quotes, backslashes and control bytes."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(c if " " <= c != "\x7f" else f"\\x{ord(c):02x}" for c in out)


_SIMPLE: dict[str, Part] = {
    "h": _field("client"), "a": _field("client"),
    "l": lambda r, t: "-", "u": lambda r, t: "-",
    "t": lambda r, t: f"[{t}]",
    "r": lambda r, t: _escape(str(r.fields.get("request", "-"))),
    "s": _field("status"),
    "b": _field("bytes"),
    "B": _field("bytes", dash=False),
    "D": lambda r, t: str(int(float(r.fields.get("total_seconds") or 0) * 1e6)),
    "T": lambda r, t: str(int(float(r.fields.get("total_seconds") or 0))),
    "v": _field("host"), "p": _field("port"), "P": _field("pid"),
    "m": _request_part(0), "U": _request_part(1), "q": _request_part(3),
    "H": _request_part(2),
    "%": lambda r, t: "%",
}


def compile_format(text: str) -> list[Part | str]:
    """The parts of a LogFormat string; raises ValueError naming what is not supported."""
    parts: list[Part | str] = []
    at = 0
    for match in _DIRECTIVE.finditer(text):
        if match.start() > at:
            parts.append(text[at:match.start()])
        argument, _, letter = match.groups()
        if argument is not None and letter in "io":
            parts.append(_header(argument, letter == "o"))
        elif argument == "member" and letter == "e":
            parts.append(_field("member"))
        elif argument is None and letter in _SIMPLE:
            parts.append(_SIMPLE[letter])
        else:
            raise ValueError(f"{match.group(0)!r} is not supported in hbfork's access log")
        at = match.end()
    rest = text[at:]
    if "%" in rest:
        raise ValueError(f"a stray % in {rest!r}")
    if rest:
        parts.append(rest)
    return parts


def render(parts: list[Part | str], record: LogRecord, stamp: str) -> str:
    """One line (without its newline)."""
    return "".join(part if isinstance(part, str) else part(record, stamp) for part in parts)


COMMON = '%h %l %u %t "%r" %>s %b'
COMBINED = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"'
