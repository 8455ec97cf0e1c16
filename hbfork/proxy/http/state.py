"""What the parts of an HTTP session share: its states and its buffer and time limits."""

from __future__ import annotations

from hbfork.proxy.upstreams import STICKY_HIT, STICKY_LOST

__all__ = ["STICKY_HIT", "STICKY_LOST"]  # where the worker and tests look for them

HEAD, CONNECT, FORWARD, TUNNEL, CLOSING, LINGER, QUEUED = range(7)
BUFFERING = 7  # reading a request body into memory before a member is chosen
SPOOLED = 8    # the member sent all and is free; the client is fed the rest from the spool
# What may wait for a socket, per direction and connection: a side is read only while what is
# queued for the other is below it, and no read takes more than what is left below it, so a
# slow reader holds at most this much (issue 24: 256 KiB plus a read, ~385 KB, before; at
# 64 KiB a reader measured 72 KiB of RSS, the bytearray grown past it).
HIGH_WATER = 48 * 1024
# While draining, a connection with no request in progress is closed after this idle time; a
# request arriving before then is still served (with Connection: close). Closing at once would
# race requests already on their way, which clients see as a reset.
DRAIN_IDLE_GRACE = 2.0
MAX_RESPONSE_HEAD = 64 * 1024
LINGER_QUIET = 0.5   # close once a half-closed client has sent nothing for this long
LINGER_MAX = 5.0     # and in any case after this long
LINGER_BYTES = 4 << 20  # or after discarding this much
RETRY_AFTER = (("Retry-After", "1"),)
