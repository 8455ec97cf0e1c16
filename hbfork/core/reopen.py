"""Members that have just closed kept-alive connections are dialled again one request at a
time, per worker. Pure: the caller passes `now` (monotonic seconds).

A member that closes a connection it had been keeping alive (an idle pooled connection ends,
an answer says `Connection: close`, a reused connection is found closed) may be going away:
the graceful stops of Apache httpd, Tomcat and `hbfork backend` close every idle connection
and answer what is in flight with "close", and for a while after that the kernel still
completes new connections to a listener nobody accepts from any more. A request sent on such
a connection waits until the listener closes and resets it. Measured (bench-gray,
graceful-stop): the picks kept sending new connections there up to the member's last
`ready`, and about half of the clients sat on it for 0.6 s until the no-answer rule
(hbfork.core.hang) caught it, where HAProxy's leastconn lost two or three.

So, after such a close, the next fresh connection this worker dials to that member carries a
probe: until the probe has its answer, this worker's picks pass the member by whenever another
member can serve, and at most one request per worker waits on a member that is leaving. A
member that merely closes a connection now and then (Apache's MaxKeepAliveRequests, a
keep-alive timeout) answers the probe in one round trip and is picked as before. A member
that never keeps connections alive is never marked (only reused connections count).
"""

from __future__ import annotations

RECENT = 10.0  # seconds after a close during which a dial is a probe


class Reopening:
    """One worker's marks: which members closed a kept connection lately, which have a probe
    in flight (`avoid`: the slots a pick passes by when it can)."""

    __slots__ = ("avoid", "closed_at", "probes")

    def __init__(self) -> None:
        self.closed_at: dict[int, float] = {}  # slot -> when it last closed a kept connection
        self.probes: dict[int, int] = {}       # slot -> probes in flight
        self.avoid: set[int] = set()           # slots with a probe in flight

    def closed(self, slot: int, now: float) -> None:
        """The member in `slot` closed a connection it had kept alive."""
        self.closed_at[slot] = now

    def dialled(self, slot: int, now: float) -> bool:
        """A fresh connection to `slot` is being dialled for a request: is it a probe? (Then
        call over() once when that request ends.)"""
        at = self.closed_at.get(slot)
        if at is None:
            return False
        if now - at > RECENT:
            del self.closed_at[slot]
            return False
        self.probes[slot] = self.probes.get(slot, 0) + 1
        self.avoid.add(slot)
        return True

    def over(self, slot: int, answered: bool) -> None:
        """A probe to `slot` ended; `answered`: the member answered it (the member serves new
        connections: the mark goes), else the next dial probes again."""
        left = self.probes.get(slot, 0) - 1
        if left > 0:
            self.probes[slot] = left
        else:
            self.probes.pop(slot, None)
            self.avoid.discard(slot)
        if answered:
            self.closed_at.pop(slot, None)

    def forget(self, slot: int) -> None:
        """The slot holds another member now."""
        self.closed_at.pop(slot, None)
        self.probes.pop(slot, None)
        self.avoid.discard(slot)
