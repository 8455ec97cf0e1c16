"""Slow clients: the arithmetic of the minimum rates a client must keep while it holds
something scarce (mod_reqtimeout's `body=20,MinRate=500` model), and when a request body has
been buffered enough to go to a member (nginx's request buffering, in memory and bounded).

A request body that started at `started` must have moved `done` bytes by
`started + grace + done / min_rate`: `grace` seconds for nothing at all, then one more second
for every `min_rate` bytes (rate_deadline). With min_rate 0 the grace is a deadline for the
whole body; with grace 0 there is no limit. A response reader is judged per window instead
(kept_up): in every `send_timeout` seconds it spends behind, it must take `send_min_rate`
bytes a second. Pure: numbers in, deadlines and decisions out.
"""

from __future__ import annotations

import math

from hbfork.core.chunked import ChunkedBody

# The kinds of slow-client cut-off, counted apart (hbfork.table.layout.SLOW_KINDS) and named in
# an exchange's outcome (the access log).
SLOW_HEAD = "slow_head"      # the request head did not arrive within header_timeout (408)
SLOW_BODY = "slow_body"      # the request body fell below body_min_rate / body_timeout (408)
SLOW_READER = "slow_reader"  # the client read the response below send_min_rate / send_timeout
SLOW_KINDS = (SLOW_HEAD, SLOW_BODY, SLOW_READER)  # append only: the index is what is stored


def rate_deadline(started: float, done: int, grace: float, min_rate: int) -> float:
    """When a transfer that started at `started` and has moved `done` bytes is too slow
    (math.inf: never, when `grace` is 0)."""
    if grace <= 0:
        return math.inf
    if min_rate <= 0:
        return started + grace
    return started + grace + done / min_rate


def kept_up(took: int, window: float, min_rate: int) -> bool:
    """A reader took `took` bytes in a window of `window` seconds during which it was behind
    (bytes were waiting for it): enough, at least `min_rate` a second (at least one byte with
    no rate, nginx's send_timeout)? Measured per window, not since the start: what the
    kernel's socket buffers swallowed at first would otherwise count as read for minutes."""
    return took >= max(1.0, min_rate * window)


def body_ready(buffered: int, complete: bool, limit: int) -> bool:
    """A request body being buffered before its member is chosen may go now: it is all here,
    or `limit` bytes of it are (a larger body then streams, under the minimum rate)."""
    return complete or buffered >= limit


def sent_bytes(queued_total: int, waiting: int) -> int:
    """Bytes of a response the client has taken: what was queued for it minus what still
    waits in its buffer (never below 0: the head is queued too)."""
    return max(0, queued_total - waiting)


class BodyProbe:
    """Is a request body, read so far into a buffer, all there? It looks ahead without
    consuming: a chunked body is scanned once (from where the last look stopped) by a framing
    checker of its own, so a malformed or oversized one is refused before any member is
    chosen. A length-delimited body is all there once `length` bytes are."""

    __slots__ = ("chunks", "length", "position")

    def __init__(self, length: int, chunked: bool, limit: int = 0) -> None:
        self.length = length
        self.chunks = ChunkedBody(limit=limit) if chunked else None
        self.position = 0  # how far the chunked framing was checked

    def complete(self, buffered: bytes | bytearray) -> bool:
        chunks = self.chunks
        if chunks is None:
            return len(buffered) >= self.length
        if not chunks.done and self.position < len(buffered):
            self.position += chunks.scan(buffered, self.position, len(buffered))
        return chunks.done
