"""Request targets as routing sees them: split, checked, and normalised once, so that the path a
route is matched on is exactly the path the member is sent. Pure: text in, text out.

The normal form (what is forwarded):
* %-escapes of unreserved characters are decoded (`%2e` is `.`, `%41` is `A`), every other
  escape is kept, upper-cased; an invalid escape or `%00` is 400, and an encoded slash `%2F` is
  404, as Apache answers with its default `AllowEncodedSlashes Off` (a member that decoded it
  would see a different path than the one routed);
* dot segments are removed (RFC 3986 §5.2.4) and runs of slashes merged (Apache's MergeSlashes).

Routes are matched on that form with path parameters (`;jsessionid=...`) cut from each
segment, as Tomcat and other servlet containers read paths, so `/admin;x` is `/admin`. A dot
segment carrying parameters (`..;x`) is refused (400): servers disagree on what it means.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from hbfork.core.errors import ProtocolError

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})|%")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SLASHES = re.compile(r"//+")
_PARAMS = re.compile(r";[^/]*")
_ABSOLUTE = re.compile(r"(?i)(https?)://([^/?#]*)([^#]*)")


class Target(NamedTuple):
    """A request target, split and normalised (a tuple: one is made per request)."""
    path: str                 # the normal form, as the member is sent it
    match: str                # what routes are matched on (path parameters cut)
    query: str                # "" or "?..." as it came
    authority: str | None     # the host of an absolute-form target


def parse_target(raw: bytes) -> Target:
    """Split and normalise a request target; raises ProtocolError (400, or 404 for an encoded
    slash). "*" (OPTIONS *) is kept as it is."""
    text = raw.decode("latin-1")
    path, mark, query = text.partition("?")
    if path[:1] == "/" and "%" not in path and "//" not in path and "/." not in path \
            and ";" not in path and "#" not in text:
        return Target(path, path, mark + query, None)  # the common case: nothing to do
    authority = None
    if text == "*":
        return Target("*", "*", "", None)
    if not text.startswith("/"):
        absolute = _ABSOLUTE.fullmatch(text)
        if absolute is None:
            raise ProtocolError(400, "the request target is not a path or an http URL")
        authority = absolute.group(2)
        if not authority or "@" in authority:
            raise ProtocolError(400, "invalid authority in the request target")
        text = absolute.group(3) or "/"
        if not text.startswith(("/", "?")):
            raise ProtocolError(400, "invalid request target")
        if text.startswith("?"):
            text = "/" + text
    if "#" in text:
        raise ProtocolError(400, "a fragment in the request target")
    path, mark, query = text.partition("?")
    normal = normalize_path(path)
    return Target(normal, match_form(normal), mark + query, authority)


def normalize_path(path: str) -> str:
    """The normal form of an origin-form path (see the module docstring)."""
    if "%" in path:
        path = _ESCAPE.sub(_unescape, path)
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." in path:
        path = remove_dot_segments(path)
    return path


def _unescape(match: re.Match[str]) -> str:
    hex_digits = match.group(1)
    if hex_digits is None:
        raise ProtocolError(400, "invalid %-escape in the path")
    value = int(hex_digits, 16)
    if value == 0:
        raise ProtocolError(400, "%00 in the path")
    if value == 0x2F:
        raise ProtocolError(404, "encoded slash (%2F) in the path")
    if value in _UNRESERVED:
        return chr(value)
    return "%" + hex_digits.upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on an absolute path ("/a/./b/../c" is "/a/c"); a path ending in a dot
    segment keeps its trailing slash ("/a/b/.." is "/a/")."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            if ";" in segment and _PARAMS.sub("", segment) in (".", ".."):
                raise ProtocolError(400, "a dot segment with path parameters")
            out.append(segment)
    return "/" + "/".join(out)


def match_form(path: str) -> str:
    """The path routes are matched on: path parameters cut from each segment."""
    if ";" not in path:
        return path
    cut = _PARAMS.sub("", path)
    if "//" in cut:
        cut = _SLASHES.sub("/", cut)
    return cut


def normalize_host(host: str) -> str:
    """The form hosts are compared in: lower case, no port, no trailing dot."""
    host = host.lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    colon = host.find(":")
    if colon >= 0:
        host = host[:colon]
    return host[:-1] if host.endswith(".") else host
