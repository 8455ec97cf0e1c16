"""Heartbeats POSTed to a client listener ([heartbeat] http_path): what Apache's
`SetHandler heartbeat` location takes, and where Tomcat's TcpSender posts. The worker answers
them itself (they never reach a member) and hands every body it read to the master over its
report socket (hbfork.core.reports.Beat), where it goes through the same checks and counters
as a datagram (hbfork.master.monitor). The answer is decided by hbfork.core.beat_post.

The request's body is read whole before the head is taken: while it is incomplete the head is
put back and the session stays in HEAD (bounded: the body is at most 1000 bytes, and the head
and body must come within header_timeout, as a head alone must).
"""

from __future__ import annotations

import ipaddress

from hbfork.core import beat_post
from hbfork.core.addresses import ip_allowed, normalize_ip
from hbfork.core.http11 import RequestHead
from hbfork.proxy.http.client import ClientConnection
from hbfork.proxy.http.parts import SessionCore
from hbfork.proxy.http.router import Decision


def take(s: SessionCore, client: ClientConnection, request: RequestHead,
         head: bytes) -> Decision:
    """A request whose target is under http_path, on session `s` whose client is `client`.
    Returns the router's beat decision when the beat was answered (or waits for its body),
    else where the request goes as any other (its listener does not take heartbeats)."""
    router = s.ctx.router
    if router.beat_listens and client.listen.address not in router.beat_listens:
        return router.decide(request, beats=False)
    answer = beat_post.check_head(request.method, request.content_length, request.chunked)
    if answer is not None:
        _answer(s, answer)
        return router.beat
    inbuf, length = client.inbuf, request.content_length
    if len(inbuf) < length:
        if client.eof:
            s.fail(400, "connection closed inside a heartbeat body")
        else:
            inbuf[:0] = head  # taken again once the body is here
            s.set_deadline(s.head_started + s.ctx.http.header_timeout - s.ctx.loop.now)
        return router.beat
    body = bytes(inbuf[:length])
    del inbuf[:length]
    s.ex.body = None
    s.ex.request_done = True
    peer = _peer(client)
    try:
        source = normalize_ip(ipaddress.ip_address(peer.split("%", 1)[0]))
        allowed = ip_allowed(source, router.beat_allow)
    except ValueError:
        allowed = False
    answer = beat_post.check_body(body, allowed)
    if not s.ctx.report_beat(peer, body):
        answer = beat_post.Answer(503, "the heartbeat monitor is busy; send it again")
    _answer(s, answer)
    return router.beat


def _peer(client: ClientConnection) -> str:
    """The sender is the TCP peer (never a forwarded or PROXY-protocol address)."""
    try:
        return str(client.sock.getpeername()[0])
    except (OSError, IndexError):
        return client.ip


def _answer(s: SessionCore, answer: beat_post.Answer) -> None:
    body = beat_post.OK_BODY if answer.status == 200 else None
    s.fail(answer.status, answer.detail, answer.extra, sound=answer.sound, body=body)
