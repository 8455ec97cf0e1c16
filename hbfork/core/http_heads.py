"""The heads hbfork writes: the request as the member gets it, the response as the client gets
it, and the proxy's own short answers. Pure.

Rewritten heads never let a Connection header remove what frames the message or names its
host: a client sending `Connection: Content-Length` must not make the member see a body-less
request followed by a second one (the body).
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate

from hbfork.core.http11 import CRLF, HOP_BY_HOP, REASONS, RequestHead, ResponseHead
from hbfork.core.lean import replace_host as lean_replace_host
from hbfork.core.lean import without_hop_fields


def http_date(epoch_seconds: float) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7) for the Date field."""
    return formatdate(epoch_seconds, usegmt=True)

# Headers a Connection token must not remove: dropping them would change the framing or the
# target the member sees.
END_TO_END = frozenset((b"content-length", b"transfer-encoding", b"host"))


def request_head_for_member(head: RequestHead, client_ip: str, forwarded: bool,
                            proto: bytes = b"http", member_host: bytes = b"",
                            target: bytes | None = None, replace_host: bool = False,
                            port: int = 0) -> bytes:
    """The request head to send upstream, always as HTTP/1.1: hop-by-hop headers removed,
    Content-Length sent once as a plain number, Expect: 100-continue answered by us (so
    removed), a Host added for an HTTP/1.0 client that sent none (or, with `replace_host`,
    the member's Host instead of the client's), X-Forwarded-* added. `target` replaces the
    request-target (a routed, rewritten path)."""
    drop = HOP_BY_HOP | (head.connection_tokens - END_TO_END)
    out = [b"%s %s HTTP/1.1" % (head.method, head.target if target is None else target)]
    prior_for = b""
    length_sent = False
    for name, lower, value in head.headers:
        if lower == b"content-length":
            if not length_sent:  # "5, 5" and repeated headers become one unambiguous value
                out.append(b"Content-Length: %d" % head.content_length)
                length_sent = True
        elif lower == b"transfer-encoding":
            out.append(name + b": " + value)  # the body is forwarded as it came, chunked
        elif lower == b"host" and replace_host:
            out.append(b"Host: " + member_host)  # in its place, as the fast path puts it
        elif lower in drop or lower.startswith(b"proxy-") or (
                lower == b"expect" and head.expect_continue):
            continue
        elif forwarded and lower.startswith(b"x-forwarded-"):
            if lower == b"x-forwarded-for":  # a prior hop's claim, kept ahead of ours
                prior_for = value if not prior_for else prior_for + b", " + value
            # the rest are replaced below: a client must not choose what the member believes
        else:
            out.append(name + b": " + value)
    if member_host and not any(lower == b"host" for _, lower, _ in head.headers):
        out.append(b"Host: " + member_host)
    if head.upgrade:
        out.append(b"Connection: Upgrade")
        out.append(b"Upgrade: " + head.upgrade)
    if forwarded:
        out.extend(_forwarded(head, client_ip, prior_for, proto, port))
    out.append(b"")
    out.append(b"")
    return CRLF.join(out)


def _forwarded(head: RequestHead, client_ip: str, prior_for: bytes,
               proto: bytes, port: int) -> list[bytes]:
    ip = client_ip.encode()
    out = [b"X-Forwarded-For: " + (prior_for + b", " + ip if prior_for else ip),
           b"X-Forwarded-Proto: " + proto]
    if port:
        out.append(b"X-Forwarded-Port: %d" % port)
    if head.host:
        out.append(b"X-Forwarded-Host: " + head.host)
    return out


# Maps a response header (lower-case name, value) to the value the client gets.
HeaderMap = Callable[[bytes, bytes], bytes]


def lean_request_for_member(forward: bytes, method: bytes, target: bytes,
                            member_target: bytes, member_host: bytes | None,
                            forwarded: bytes | None, host: bytes) -> bytes:
    """request_head_for_member() for a lean request (hbfork.core.lean): `forward` as
    lean_request made it (the head as received, without X-Forwarded-* and its final CRLF), given
    the route's `member_target` (b"": as it came), the member's authority as Host
    (`member_host`, None to keep the client's) and `forwarded`, this client's X-Forwarded-For,
    -Proto and -Port lines (None when forwarded_headers is off)."""
    if member_target:
        forward = method + b" " + member_target + forward[len(method) + 1 + len(target):]
    if member_host is not None:
        forward = lean_replace_host(forward, member_host)
    if forwarded is None:
        return forward + CRLF
    return forward + forwarded + (b"X-Forwarded-Host: " + host + b"\r\n\r\n" if host else CRLF)


def lean_response_for_client(head: bytes, keep_alive: bool, extra: bytes = b"") -> bytes:
    """response_head_for_client() for a lean response head (hbfork.core.lean) to a
    keep-alive HTTP/1.1 request: without its hop-by-hop fields, with the `extra` lines (each
    ending in CRLF) and our own Connection."""
    return without_hop_fields(head) + extra + (
        CRLF if keep_alive else b"Connection: close\r\n\r\n")


def response_head_for_client(response: ResponseHead, keep_alive: bool, dechunk: bool,
                             client_version: int, rewrite: HeaderMap | None = None,
                             extra: tuple[bytes, ...] = ()) -> bytes:
    """The member's response head as the client gets it: hop-by-hop headers removed, our own
    Connection header set, values passed through `rewrite` (ProxyPassReverse), `extra` header
    lines added (a sticky-session Set-Cookie)."""
    drop = HOP_BY_HOP | (response.connection_tokens - END_TO_END)
    version = b"HTTP/1.1" if client_version == 11 else b"HTTP/1.0"
    # The member's reason phrase as it sent it, an empty one included (Tomcat sends none):
    # the fast path forwards status lines verbatim, and both paths must agree.
    out = [b"%s %d %s" % (version, response.status, response.reason)]
    for name, lower, value in response.headers:
        if lower in drop:
            if lower == b"transfer-encoding" and not dechunk:
                out.append(name + b": " + value)
            continue
        if rewrite is not None:
            value = rewrite(lower, value)
        out.append(name + b": " + value)
    out.extend(extra)
    if response.status == 101:
        out.append(b"Connection: Upgrade")
        upgrade = next((v for _, lower, v in response.headers if lower == b"upgrade"), b"")
        if upgrade:
            out.append(b"Upgrade: " + upgrade)
    elif not keep_alive:
        out.append(b"Connection: close")
    elif client_version == 10:
        out.append(b"Connection: keep-alive")
    out.append(b"")
    out.append(b"")
    return CRLF.join(out)


def error_response(status: int, detail: str = "", *, keep_alive: bool = False,
                   extra: tuple[tuple[str, str], ...] = (), head_only: bool = False,
                   date: str = "", body: bytes | None = None) -> bytes:
    """A short response the proxy itself sends (4xx for the client's mistakes, 5xx for ours).
    `date`: the Date field's value (RFC 9110 §6.6.1: an origin with a clock sends one).
    `body`: instead of the status line and detail (a heartbeat's "OK")."""
    reason = REASONS.get(status, "Error")
    if body is None:
        body = f"{status} {reason}{': ' + detail if detail else ''}\n".encode()
    lines = [f"HTTP/1.1 {status} {reason}", *((f"Date: {date}",) if date else ()),
             "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Cache-Control: no-store",
             "Connection: keep-alive" if keep_alive else "Connection: close"]
    lines.extend(f"{name}: {value}" for name, value in extra)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head if head_only else head + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def hsts_value(max_age: int, subdomains: bool) -> str:
    """The Strict-Transport-Security value of a listener with `hsts` (seconds)."""
    return f"max-age={max_age}" + ("; includeSubDomains" if subdomains else "")


def hsts_line(max_age: int, subdomains: bool) -> bytes:
    """The Strict-Transport-Security field line (without its CRLF)."""
    return b"Strict-Transport-Security: " + hsts_value(max_age, subdomains).encode()
