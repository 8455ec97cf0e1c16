"""The state every part of an HTTP session shares: the states, the buffer limits, and the
attributes (declared here so each part can be read on its own; HttpSession holds them in
__slots__).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from hbfork.core.http11 import ChunkedBody, LengthBody, RequestHead, ResponseHead, UntilClose
from hbfork.core.tls_settings import ListenSettings
from hbfork.proxy.context import SessionContext
from hbfork.proxy.http.router import Decision
from hbfork.proxy.keepalive import MemberConnection
from hbfork.proxy.loop import Timer
from hbfork.proxy.relay import Direction
from hbfork.proxy.tls import TlsWriter
from hbfork.proxy.upstreams import STICKY_HIT, STICKY_LOST, PoolView, Target

__all__ = ["STICKY_HIT", "STICKY_LOST"]  # where the worker and tests look for them

HEAD, CONNECT, FORWARD, TUNNEL, CLOSING, LINGER, QUEUED = range(7)
HIGH_WATER = 256 * 1024
# While draining, a connection with no request in progress is closed after this idle time; a
# request arriving before then is still served (with Connection: close). Closing at once would
# race requests already on their way, which clients see as a reset.
DRAIN_IDLE_GRACE = 2.0
MAX_RESPONSE_HEAD = 64 * 1024
LINGER_QUIET = 0.5   # close once a half-closed client has sent nothing for this long
LINGER_MAX = 5.0     # and in any case after this long
LINGER_BYTES = 4 << 20  # or after discarding this much
RETRY_AFTER = (("Retry-After", "1"),)


class ExchangeState:
    """Attribute declarations only; the parts of HttpSession derive from it."""

    __slots__ = ()

    ctx: SessionContext
    client: socket.socket
    client_fd: int
    client_ip: str
    listen: ListenSettings   # the listener it came in on (TLS, HSTS, redirect to https)
    tls: TlsWriter | None    # a TLS client: writes go through it
    state: int
    closed: bool
    timer: Timer
    # buffers: what was read from each side, and what waits to be written to each side
    inbuf: bytearray
    upbuf: bytearray
    client_out: bytearray
    upstream_out: bytearray
    body_relay: Direction | None  # a large request body spliced to the member (after the head)
    # the client connection
    client_eof: bool      # the client sends nothing more (the bytes before its FIN read)
    client_hup: bool      # it half-closed, but bytes before the FIN are still unread
    client_parked: bool   # it sent what we cannot take yet: watch for RDHUP only
    linger_until: float
    linger_left: int
    drain_requested: bool
    head_started: float   # the first byte of the head being read
    # the member connection, and the member counted as having this request in flight
    conn: MemberConnection | None
    inflight_target: Target | None
    # the current exchange (reset for each request)
    request: RequestHead | None
    response: ResponseHead | None
    body: LengthBody | ChunkedBody | None
    response_body: LengthBody | ChunkedBody | UntilClose | None
    target: Target | None
    tried: set[int]
    request_done: bool      # the whole request body was read
    sent_to_client: bool    # the response head (ours or the member's) went out
    keep_alive: bool
    status: int
    bytes_to_client: int
    exchange_started: float
    member_started: float   # when the request went to the member that answered
    fresh_retry: bool
    last_failure: tuple[int, str] | None  # the answer owed if no other member can take it
    accounted: bool         # request_done() was reported for this request
    decision: Decision | None  # where the router sends it
    sticky_route: str | None   # the route its session names (a sticky pool's)
    set_cookie: bytes | None   # a sticky-session cookie for the response
    sticky_outcome: int        # 0, STICKY_HIT or STICKY_LOST
    queued_at: float           # when it started waiting in the front queue (0: it does not)
    # the fast path (hbfork.proxy.http.fast)
    fast: bool                 # this connection's requests may take it
    lean_head: bytes | None    # the head as received, while `request` is a lean parse of it
    forwarded: bytes           # the X-Forwarded-For/-Proto/-Port lines for this client
    extra_head: bytes          # lines every response gets on this listener (HSTS)
    member_handler: Callable[[int], None]  # _on_member, bound once

    @property
    def pool(self) -> PoolView:
        """The pool serving the current request (there is one once it is dispatched)."""
        decision = self.decision
        assert decision is not None and decision.pool is not None
        return decision.pool
