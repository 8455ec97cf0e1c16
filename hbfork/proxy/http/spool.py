"""The response spool of an HTTP session (hbfork.core.spool; nginx's proxy_max_temp_file_size
model): a client that reads a response slower than its member sends it no longer holds the
member for the rest of it.

When the client lags (its queue was at the high-water mark, where the member is held back,
LAG_WINDOW (0.25 s) ago and is again, and it took little meanwhile: hbfork.core.spool.LagWindow),
the member goes on being read, at its own pace, into a nameless temporary file of the response
(hbfork.proxy.http.spool_file), up to [http] response_spool_max bytes and within the worker's
response_spool_total; a plain client's queue moves into the file too, so a reader that does not
read holds no response bytes in memory. Once the member has sent everything, its in-flight
count ends and its connection goes back to the pool, and the session waits in SPOOLED while the
client is fed from the file (sendfile(2) on plain sockets; TLS reads a queue's worth at a
time), under the same send_timeout/send_min_rate rules as a reader that holds a member
(hbfork.proxy.http.slow). Then the exchange ends as usual (access log, next request).

Where the spool's limits are reached, or its file cannot be opened or written, the member is
held back as without a spool. The fast path needs nothing of its own: a response it does not
finish in its first read is the general path's from the next read on, which spools it.

A client that keeps up is never spooled: it is relayed faster than the file could feed it.

The session calls in at six points: the member leg asks whether to read (spool_takes) and
reads into the spool (spool_read); the relay moves what was read into the spool (spool_body)
and, when the member is done, frees it early (hold); slow.pace watches the client for lag
(watch_lag) and feeds it from the spool what its socket takes (feed_client); and the session
watches the client's socket for room while the spool has bytes for it (wants_write), so the
feed goes on as soon as the client has read (in SPOOLED nothing else wakes the session: a
client queue that emptied with bytes still in the file stalled it until its deadline).
"""

from __future__ import annotations

from hbfork.core.chunked import ChunkedBody, Rechunker
from hbfork.core.http11 import LengthBody, UntilClose
from hbfork.core.slow_clients import sent_bytes
from hbfork.core.spool import READ, RELAY, SENDFILE, WAIT, feed, room, route
from hbfork.proxy.http.exchange import Exchange
from hbfork.proxy.http.parts import SessionCore
from hbfork.proxy.http.spool_file import BUDGET, Lag, SpoolFile
from hbfork.proxy.http.state import FORWARD, HIGH_WATER, SPOOLED
from hbfork.proxy.tls import WOULD_BLOCK

LOW_WATER = HIGH_WATER // 2  # a TLS client's queue is topped up from the file below this
READ_MOST = 1 << 20  # bytes read into a spool in one event at most (the others' turn then)


def spool_takes(s: SessionCore) -> int:
    """What the member's next bytes do (core.spool.route): RELAY (the relay's usual rules),
    WAIT, or the number of bytes the spool takes now. Opens the response's spool once its
    client lags (watch_lag), when spooling is on and there is room."""
    ex = s.ex
    body = ex.response_body
    if s.state != FORWARD or body is None or body.done:
        return RELAY
    http = s.ctx.http
    spool = ex.spool
    queued = len(s.client.out)
    behind = queued >= HIGH_WATER
    if spool is None:
        lag = ex.lag
        if not behind or lag is None or http.response_spool_max <= 0 or \
                not lag.lags(s.ctx.loop.now, sent_bytes(ex.bytes_to_client, queued)) or \
                not BUDGET.left(http.response_spool_total):
            return RELAY
        spool = ex.spool = SpoolFile(http.response_spool_dir)
        if not spool.opened():
            return RELAY
        if s.client.tls is None:  # its queue goes first, from the file: none kept in memory
            spool.write(s.client.out)
            s.client.out.clear()
            behind = False
    left = 0 if spool.broken else room(http.response_spool_max, spool.written,
                                       BUDGET.left(http.response_spool_total))
    return route(spool.pending, left, behind)


def watch_lag(s: SessionCore) -> None:
    """After a step in FORWARD with a response and no spool: has the client been behind (its
    queue full, the member held back) and taken little since? A client that
    reads nothing causes no event, so a timer looks again when a window ends (the session's
    own deadline is the slow-reader rules'); the spool opens when the member leg next asks
    (spool_takes, from its wants_read)."""
    ex = s.ex
    if s.ctx.http.response_spool_max <= 0 or s.state != FORWARD or s.member.conn is None:
        return
    queued = len(s.client.out)
    lag = ex.lag
    if lag is None:
        if queued < HIGH_WATER:
            return  # (the usual case: nothing to make)
        lag = ex.lag = Lag(s.ctx.loop.timer(lambda now: _look_again(s, ex)))
    loop = s.ctx.loop
    when = lag.look(loop.now, queued >= HIGH_WATER, sent_bytes(ex.bytes_to_client, queued))
    timer = lag.timer
    if when > loop.now:
        if timer.when != when:
            loop.set_timer(timer, when)
    elif timer.when is not None:
        loop.set_timer(timer, None)


def _look_again(s: SessionCore, ex: Exchange) -> None:
    if not s.closed and s.ex is ex and ex.spool is None:
        s.advance()  # watch_lag, then the member leg's spool_takes


def spool_read(s: SessionCore) -> bool:
    """Read the member into the spool; False when the spool is not involved (the member leg
    reads as usual)."""
    takes = spool_takes(s)
    if takes == RELAY:
        return False
    if takes == WAIT:
        return True  # (wants_read said no: nothing is read)
    member, ex = s.member, s.ex
    buffer = s.ctx.buffer
    conn = member.conn
    assert conn is not None and ex.spool is not None
    got = 0
    while takes > 0:
        try:
            n = conn.sock.recv_into(buffer, min(takes, len(buffer)))
        except WOULD_BLOCK:
            break
        except OSError:
            n = 0
        if n == 0:
            member.closed()
            return True
        body = ex.response_body
        direct = (type(body) is LengthBody or type(body) is UntilClose) and not member.inbuf
        if direct:
            assert type(body) is LengthBody or type(body) is UntilClose  # (for the checker)
            taken = body.scan(buffer, 0, n)
            ex.spool.write(buffer[:taken])
            ex.bytes_to_client += taken
            if taken < n:
                member.inbuf += buffer[taken:n]  # bytes after the response: the relay's
        else:
            member.inbuf += buffer[:n]  # framing to check: the relay spools it (spool_body)
        got += n
        # Read on while the socket fills the buffer, up to READ_MOST an event: an event per
        # buffer was most of the worker's CPU per spooled MiB. Framing to check goes to the
        # relay first. TLS: decrypted bytes epoll cannot see are read in any case.
        if (not direct or n < len(buffer) or got >= READ_MOST) and \
                (conn.tls is None or not conn.sock.pending()):  # type: ignore[attr-defined]
            break
        takes = spool_takes(s)
    s.set_deadline(s.ctx.http.client_timeout)
    return True


def spool_body(s: SessionCore, upbuf: bytearray) -> bool:
    """Move response body bytes the member leg read into the spool (re-framed as the relay
    would); False when the spool is not involved."""
    takes = spool_takes(s)
    if takes == RELAY:
        return False
    if takes == WAIT:
        return True
    ex = s.ex
    body, spool = ex.response_body, ex.spool
    assert body is not None and spool is not None
    limit = min(len(upbuf), takes)
    if type(body) is Rechunker:
        piece = bytearray()
        taken = body.relay(upbuf, limit, piece)  # hbfork.core.chunked
        spool.write(piece)
    elif isinstance(body, ChunkedBody) and body.decode:  # de-chunked for an HTTP/1.0 client
        taken = body.scan(upbuf, 0, limit)
        spool.write(b"".join(upbuf[start:end] for start, end in body.pieces))
    else:
        taken = body.scan(upbuf, 0, limit)
        spool.write(upbuf[:taken])
    del upbuf[:taken]
    ex.bytes_to_client += taken
    return True


def hold(s: SessionCore, reusable: bool) -> bool:
    """The member has sent the whole response. If bytes of it still wait in the spool, the
    member's in-flight count ends and its connection is released now (to the pool when
    `reusable`), and the session waits in SPOOLED: True. Else the spool goes: False."""
    ex = s.ex
    spool = ex.spool
    assert spool is not None
    if spool.pending:
        member = s.member
        member.done(ex.status)
        member.release(reusable)
        s.state = SPOOLED
        return True
    spool.close()
    ex.spool = None
    return False


def feed_client(s: SessionCore) -> bool:
    """Give the client what its socket takes of the spool now; in SPOOLED, end the exchange
    once all is given. False when the session or the exchange ended."""
    ex, client = s.ex, s.client
    spool = ex.spool
    assert spool is not None
    tls = client.tls is not None
    kind, n = feed(len(client.out), spool.pending, spool.in_file, tls, LOW_WATER, HIGH_WATER)
    try:
        if kind == SENDFILE:
            sent = spool.sendfile(client.sock)
            if sent:
                s.ctx.count_bytes(False, sent)
            if sent == n:  # the socket took the whole file: bytes of a failed write follow
                kind, n = feed(0, spool.pending, spool.in_file, tls, LOW_WATER, HIGH_WATER)
        if kind == READ:
            client.out += spool.read(n)
    except OSError:  # the client is gone (or our own file failed: the response is lost)
        s.close()
        return False
    if s.state == SPOOLED and not spool.pending:
        spool.close()
        ex.spool = None
        s.relay.finish()  # the member was released already: the access log, what next
        return False
    return True


def wants_write(ex: Exchange) -> bool:
    """The spool has bytes for the client: its socket is watched for room (a sendfile it did
    not take whole, or a queue it emptied, is followed by the rest when it can take more)."""
    spool = ex.spool
    return spool is not None and spool.pending > 0
