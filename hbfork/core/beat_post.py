"""Heartbeats sent by HTTP POST: Apache mod_heartmonitor's `SetHandler heartbeat` location, to
which Tomcat's TcpSender (HeartbeatListener with `proxyList`) posts. Pure: a request's method,
length and body in, the answer out.

What mod_heartmonitor's handler does (httpd 2.4; answers checked against Debian's 2.4.71): a
method other than POST is answered 405; the body, of which the first 1000 bytes are read, is
the same `v=1&ready=N&busy=M[&port=P]` a datagram carries; the sender is the connection's peer
address; the answer is 200 with the body `OK` (text/plain), or 400 for a body without
ready/busy (2.4.69 and later; earlier ones crashed).

hbfork reads the body whole before it answers and is stricter about its size: Content-Length
required (411 for chunked, which Apache takes) and at most MAX_BODY bytes (413, where Apache
reads the first 1000 and ignores the rest; a beat is ~40). It checks the source against
[heartbeat] allow (403, as Apache's `Require ip`) and the syntax (400); every body read is
then handed to the master, which applies it exactly as a datagram (allow-list, rate limit,
signature, member rules, counters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hbfork.core import heartbeat
from hbfork.core.errors import HeartbeatError
from hbfork.core.values import text_value

MAX_BODY = heartbeat.MAX_DATAGRAM  # what mod_heartmonitor reads (MAX_MSG_LEN)
OK_BODY = b"OK"
ALLOW = (("Allow", "POST"),)


def http_path(value: Any) -> str | None:
    """`[heartbeat] http_path`: "" (off) or an absolute path such as "/HeartbeatListener"."""
    text = text_value(value)
    if not text:
        return None
    if not text.startswith("/") or any(c in text for c in "?#%") or \
            any(c.isspace() or not c.isprintable() for c in text) or not text.isascii():
        raise ValueError(f"expected a path like \"/HeartbeatListener\" (ASCII, no query), "
                         f"got {text!r}")
    return text


def matches(target: bytes, path: bytes) -> bool:
    """Whether a request-target falls under the heartbeat location `path`, as Apache's
    <Location> prefix does: the path itself or below it, any query string ignored."""
    if not target.startswith(path):
        return False
    rest = target[len(path):]
    return not rest or path.endswith(b"/") or rest[:1] in (b"/", b"?")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    detail: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def sound(self) -> bool:
        """The request was well-formed (the connection may carry on after the answer)."""
        return self.status in (200, 403, 405)


ACCEPTED = Answer(200)


def check_head(method: bytes, content_length: int, chunked: bool) -> Answer | None:
    """The answer a request head alone decides, or None: read its body (content_length
    bytes) and call check_body."""
    if method != b"POST":
        return Answer(405, "a heartbeat location takes POST only", ALLOW)
    if chunked:
        return Answer(411, "a heartbeat body needs a Content-Length")
    if content_length > MAX_BODY:
        return Answer(413, f"a heartbeat body is at most {MAX_BODY} bytes")
    return None


def check_body(body: bytes, allowed: bool) -> Answer:
    """The answer to a heartbeat body from a source that `allowed` says may send beats.
    What the master then decides (rate limit, signature, member rules) is counted and logged
    there, as for datagrams; it is not the sender's business."""
    if not allowed:
        return Answer(403, "this address may not send heartbeats")
    try:
        heartbeat.parse(body)
    except HeartbeatError as err:
        return Answer(400, f"{err.reason}: {err.detail}")
    return ACCEPTED
