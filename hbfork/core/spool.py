"""Response spooling, the arithmetic (nginx's proxy_max_temp_file_size model): when a client
reads a response slower than its member sends it, the rest of the response is written to a
temporary file of the client's connection, so the member's slot and its connection are free as
soon as the member has sent everything; the client is then fed from the file.

Only a client that lags is spooled (LagWindow): one whose queue was full (its member held back
for it) at the start of a window of LAG_WINDOW seconds and is full again after it, and that took
less than LAG_RATE bytes a second over it. A client that keeps up takes far more than that,
and is relayed as without a spool: feeding it from the file would only slow it (100 MiB
downloads to a fast client: 100-318 MiB/s through the file, 1,459 MiB/s relayed).

A response may put at most `cap` bytes in its file ([http] response_spool_max) and a worker's
files together at most `total` ([http] response_spool_total); beyond either, the member is held
back as it is without a spool (back-pressure). Order is kept: once bytes wait in the file,
later bytes go after them (to the file, or they wait), never straight to the client.

Pure: numbers in, decisions out (hbfork.proxy.http.spool does the I/O).
"""

from __future__ import annotations

from typing import Final

RELAY: Final = -1  # the spool is not involved: the relay's own rules (back-pressure)
WAIT: Final = 0    # bytes wait in the file and it takes no more: the member waits

# A client is spooled once it was behind LAG_WINDOW seconds ago and took fewer than LAG_RATE
# bytes a second since: far below what the file feeds a client, so it loses no speed by it,
# and far above what a fast client takes (a window's worth in a few milliseconds). Short,
# because the member stays held meanwhile: 120 slow readers on 20 member slots wait their
# turn for a window each.
LAG_WINDOW: Final = 0.25
LAG_RATE: Final = 16 << 20

SENDFILE: Final = "sendfile"  # the file's bytes go to the socket by sendfile(2)
READ: Final = "read"          # read this many of them into the client's queue
NOTHING: Final = "nothing"


def room(cap: int, written: int, budget_left: int) -> int:
    """How many more bytes a response's file may take: what is left of its own cap (`written`
    counts every byte it ever took, the ones already sent too) and of the worker's budget."""
    return max(0, min(cap - written, budget_left))


def route(pending: int, room_left: int, behind: bool) -> int:
    """Where the member's next bytes go: RELAY (the relay's usual way), WAIT (bytes wait in the
    file and it is full: read nothing) or the number of bytes the file takes now. `pending`:
    bytes in the file not yet given to the client; `behind`: the client's queue is at the
    high-water mark (without a spool the member would be held back now)."""
    if pending:
        return room_left  # after bytes in the file: into it, or wait
    if behind and room_left:
        return room_left
    return RELAY


def feed(queued: int, pending: int, in_file: int, tls: bool, low_water: int,
         high_water: int) -> tuple[str, int]:
    """How the client gets the spool's next bytes, given `queued` bytes in its memory queue,
    `pending` bytes in the spool of which `in_file` in its file (the rest: what a failed write
    left in memory, after them): a plain socket takes the file's by sendfile(2) once its queue
    is empty (no copy, no memory), the rest through its queue; a TLS socket needs them all in
    memory, a queue's worth at a time when it runs low. Whatever the socket does not take now
    it takes when it is writable again: the session watches it while the spool has bytes
    (hbfork.proxy.http.spool.wants_write)."""
    if not pending:
        return NOTHING, 0
    if not tls:
        if queued:
            return NOTHING, 0  # its queue goes first; then sendfile
        return (SENDFILE, in_file) if in_file else (READ, min(high_water, pending))
    if queued < low_water:
        return READ, min(high_water - queued, pending)
    return NOTHING, 0


class LagWindow:
    """Is a client lagging (its response worth spooling)? A window opens when its queue is
    first seen full (its member held back for it); once LAG_WINDOW seconds have passed, it lags
    if it took less than LAG_RATE bytes a second over the window, else the window starts again.
    Judged by what it took, not by whether its queue is full at each look: a socket's buffer
    keeps taking a little from a client that reads nothing (its queue empties now and then),
    and a client that keeps up takes a window's worth in milliseconds. The session looks after
    each step (look) and asks before opening a spool (lags), which it does only while the
    client's queue is full. A client found lagging once keeps `lagged`: its exchange did not
    go well, and the front queue ranks its connection's next request as a new connection's
    (hbfork.core.queue_order)."""

    __slots__ = ("lagged", "mark", "since")

    def __init__(self) -> None:
        self.since = 0.0  # when the current window began (0: none open)
        self.mark = 0     # the response bytes the client had taken then
        self.lagged = False  # lags() was true once

    def look(self, now: float, behind: bool, taken: int) -> float:
        """The client is `behind` (its queue full) or not, having taken `taken` bytes of the
        response: when its window ends, to look again at a client that reads nothing (0: no
        window open)."""
        if self.since and now - self.since >= LAG_WINDOW and not self.lags(now, taken):
            self.since = 0.0  # it kept up over the window
        if not self.since:
            if not behind:
                return 0.0
            self.since, self.mark = now, taken
        return self.since + LAG_WINDOW

    def lags(self, now: float, taken: int) -> bool:
        """A whole window has passed, and the client took less than LAG_RATE a second in it
        (remembered: `lagged`)."""
        elapsed = now - self.since
        if self.since > 0 and elapsed >= LAG_WINDOW and taken - self.mark < LAG_RATE * elapsed:
            self.lagged = True
            return True
        return False


class SpoolBudget:
    """The bytes a worker's spool files hold together, against [http] response_spool_total
    (the limit is read at each use: a reload brings new workers anyway)."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0

    def left(self, total: int) -> int:
        return max(0, total - self.used)

    def take(self, n: int) -> None:
        self.used += n

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


def spool_directory(value: object) -> str:
    """[http] response_spool_dir: "" (the system's temporary directory) or an absolute path
    (whether it is a writable directory is checked when the file is read:
    hbfork.system.configfile)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if value and not value.startswith("/"):
        raise ValueError(f"expected an absolute path (or \"\"), got {value!r}")
    if "\0" in value:
        raise ValueError("a path cannot hold a NUL byte")
    return value
