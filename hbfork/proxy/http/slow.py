"""Slow clients in an HTTP session: what keeps a client that sends or reads slowly from holding
a member's capacity (or a place in the front queue) for long.

- Request buffering: a request with a body is read into memory, up to `request_buffering`
  bytes (the whole body when smaller), before a member is chosen (state BUFFERING). A client
  that trickles its body holds only its own connection meanwhile, never a member's place.
- Minimum rates while a member is held (mod_reqtimeout's `body=20,MinRate=500` model,
  hbfork.core.slow_clients.rate_deadline): a request body must arrive within `body_timeout`
  plus a second per `body_min_rate` bytes (in BUFFERING too), else 408 and close. A client
  that falls behind reading a response while its member connection is held must take
  `send_min_rate` bytes a second over every window of `send_timeout` seconds (core.slow_clients
  .kept_up), else the member connection is closed and the client cut. A slow head
  (header_timeout) is counted with them.

Each cut-off is counted by kind (SessionContext.count_slow, /metrics hbfork_slow_clients) and
named in the exchange's `outcome` (the access log). The session calls in at three points:
after reading a head (start_buffering), after each step (pace), and when its deadline passes
(cut_slow).
"""

from __future__ import annotations

import fcntl
import math
import socket
import struct
import termios

from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import LengthBody
from hbfork.core.slow_clients import (
    SLOW_BODY,
    SLOW_HEAD,
    SLOW_READER,
    BodyProbe,
    body_ready,
    kept_up,
    rate_deadline,
    sent_bytes,
)
from hbfork.proxy.http.exchange import Exchange
from hbfork.proxy.http.parts import SessionCore
from hbfork.proxy.http.spool import feed_client, watch_lag
from hbfork.proxy.http.state import BUFFERING, FORWARD, HEAD, SPOOLED

PACED = (FORWARD, SPOOLED)  # the states whose client is held to minimum rates (pace)

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_INT = struct.Struct("i")
_ZERO = bytes(_INT.size)
SIOCOUTQ = termios.TIOCOUTQ  # the same request on a TCP socket: bytes not yet acknowledged
SIOCOUTQNSD = 0x894B         # bytes not yet sent (linux/sockios.h)


def read_size(ex: Exchange, client: socket.socket, waiting: int, room: int, most: int) -> int:
    """How much to read from a member for this client: no more than the client's side has
    room for (`room`, below the high-water mark), so a reader that does not read holds little;
    but when nothing waits for it and its socket sends what it is given (less than `room`
    not yet sent), as much as that socket can still take, up to `most`: a client that keeps
    up gets large reads, which cost far less CPU per byte (a 1 MiB response in 48 KiB reads
    took 1.8x the worker CPU of 256 KiB reads). SO_SNDBUF counts the kernel's overhead too
    (measured on loopback: 3.9 MB held ~2.6 MB), hence 5/8 of it.

    Asking the kernel costs three syscalls, which at every read made 100 MiB downloads cost
    ~20 % more worker CPU than reads without them; so what one look finds free is kept as the
    exchange's `send_credit` and each read made on it is taken off: the kernel frees more
    only as the client reads, so the credit errs low, and large reads go on without a look
    while it covers them (one look per ~8 reads for a client that keeps up)."""
    if waiting:
        ex.send_credit = 0
        return room
    credit = ex.send_credit
    if credit >= most:
        ex.send_credit = credit - most
        return most
    fd = client.fileno()
    try:
        if _INT.unpack(fcntl.ioctl(fd, SIOCOUTQNSD, _ZERO))[0] >= room:
            ex.send_credit = 0
            return room  # it is behind already: the kernel holds what it has not taken
        free: int = (client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) * 5 >> 3) - \
            _INT.unpack(fcntl.ioctl(fd, SIOCOUTQ, _ZERO))[0]
    except (OSError, ValueError):  # closed under us (fd -1)
        return room
    size = most if free >= most else room if free < room else free
    ex.send_credit = free - size
    return size


def start_buffering(s: SessionCore) -> bool:
    """A request head was just read and routed: if it has a body to buffer first, enter
    BUFFERING (and say True); else the member is chosen now."""
    ex, http = s.ex, s.ctx.http
    request = ex.request
    if http.request_buffering <= 0 or ex.request_done or request is None or request.upgrade:
        return False
    ex.probe = BodyProbe(request.content_length, request.chunked, http.max_body_size)
    ex.body_started = s.ctx.loop.now
    s.set_deadline(http.client_timeout)  # idle between reads, as when streaming
    s.state = BUFFERING
    if request.expect_continue and not s.client.inbuf:
        # The client waits for this before it sends its body; no member is needed to say it
        # (and the member leg does not say it again: the body is there by then).
        s.client.out += CONTINUE
    buffering_step(s)
    return True


def buffering_step(s: SessionCore) -> None:
    """In BUFFERING: go to a member once the body is all here or `request_buffering` bytes
    of it are; until then, wait for the client (under the body's minimum rate)."""
    ex, client = s.ex, s.client
    probe = ex.probe
    assert probe is not None
    http = s.ctx.http
    if body_ready(len(client.inbuf), probe.complete(client.inbuf), http.request_buffering):
        ex.probe = None
        s.state = FORWARD  # between members; dispatch() decides what is next
        s.dispatch()
        return
    if client.eof:
        raise ProtocolError(400, "connection closed inside a request body")
    _bound(s, rate_deadline(ex.body_started, len(client.inbuf), http.body_timeout,
                            http.body_min_rate))


def _bound(s: SessionCore, when: float) -> None:
    """The session's deadline is `when` if that comes first."""
    timer = s.timer
    if when != math.inf and (timer.when is None or when < timer.when):
        s.ctx.loop.set_timer(timer, when)


def _body_received(ex: Exchange, buffered: int) -> int:
    body, request = ex.body, ex.request
    if type(body) is LengthBody:
        assert request is not None  # a body's framing comes from its request's head
        return request.content_length - body.remaining + buffered
    return (body.total if body is not None else 0) + buffered


def pace(s: SessionCore) -> None:
    """After a step in FORWARD or SPOOLED: feed the client from the response spool (or see
    whether it lags enough to start one), and bound
    the session's deadline by the minimum rate of what the client is doing while a member (or
    a spool) is held for it (sending its body, or reading the response)."""
    ex = s.ex
    http = s.ctx.http
    loop = s.ctx.loop
    if ex.response is None:
        if ex.request_done or s.member.out or s.member.conn is None:
            return  # the member's turn: response_timeout
        if not ex.body_started:
            ex.body_started = loop.now
        when = rate_deadline(ex.body_started, _body_received(ex, len(s.client.inbuf)),
                             http.body_timeout, http.body_min_rate)
    else:
        spool = ex.spool
        if spool is None:
            watch_lag(s)  # does it lag enough to spool the rest? (hbfork.proxy.http.spool)
        elif not feed_client(s):  # the client's share of the spool
            return
        waiting = _waiting(s)
        if s.state == SPOOLED:  # the client taking bytes is the only progress left
            s.set_deadline(http.client_timeout)
        if not waiting or (s.member.conn is None and spool is None) or not ex.send_window:
            # The client keeps up (or holds nothing): a window starts later.
            ex.send_window = loop.now
            ex.sent_mark = sent_bytes(ex.bytes_to_client, waiting)
            return
        if http.send_timeout <= 0:
            return
        when = ex.send_window + http.send_timeout
    _bound(s, when)


def _waiting(s: SessionCore) -> int:
    """Response bytes queued for the client: in memory and in the response spool."""
    spool = s.ex.spool
    return len(s.client.out) + (spool.pending if spool is not None else 0)


def cut_slow(s: SessionCore) -> bool:
    """The session's deadline passed: if a slow client is why, count it, answer or cut it,
    and say True; False leaves the deadline to the session."""
    state, ex = s.state, s.ex
    if state == BUFFERING or (state == FORWARD and ex.response is None and
                              not ex.request_done and not s.member.out):
        _count(s, SLOW_BODY)
        s.fail(408, "request body not received in time")
    elif state == HEAD and s.client.inbuf:
        _count(s, SLOW_HEAD)
        s.fail(408, "request head not received in time")
    elif state in PACED and ex.response is not None and _waiting(s) and \
            (s.member.conn is not None or ex.spool is not None):
        http, now = s.ctx.http, s.ctx.loop.now
        sent = sent_bytes(ex.bytes_to_client, _waiting(s))
        if http.send_timeout > 0 and now >= ex.send_window + http.send_timeout and \
                kept_up(sent - ex.sent_mark, http.send_timeout, http.send_min_rate):
            ex.send_window, ex.sent_mark = now, sent  # fast enough: judged again later
            return True
        # Too slow in its window, or idle for client_timeout with a member (or a spool) held
        # for it.
        _count(s, SLOW_READER)
        s.close()  # the member connection goes with it (mid-response: not reusable)
    else:
        return False
    return True


def _count(s: SessionCore, kind: str) -> None:
    s.ex.outcome = kind
    s.ctx.count_slow(kind)
