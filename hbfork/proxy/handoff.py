"""Spreading accepted connections over the workers: a connection accepted by a worker that
holds SHARE_SLACK more client connections than the least loaded other ready worker of its
generation is handed to that worker (its descriptor passed over a Unix datagram socket).

Why: a burst of connections (a load generator's keep-alive clients, a client proxy's pool)
lands on whichever worker the kernel wakes first. It drains the whole accept queue before the
others are scheduled (the kernel's exclusive wake-ups keep going to the worker it is still
waking), then serves them all from one core for their whole life while the other cores idle.
HAProxy dispatches accepted connections to its least loaded thread for the same reason.

The master makes one socket pair per worker record before any fork: every worker can send to
every other, and reads its own. A hand-over that cannot be sent (the receiver's queue is full)
is served where it was accepted. Only ready workers of the same generation receive (the same
listeners, in the same order); a connection a receiver takes after it began to drain is still
served by it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from hbfork.proxy.loop import READ, Loop
from hbfork.system.fd_passing import Pair, receive_client, send_client
from hbfork.table.layout import STATE_READY, WK_CONNECTIONS, WK_GENERATION, WK_STATE
from hbfork.table.worker_area import WorkerArea

SHARE_SLACK = 2       # connections above the least loaded peer before one is handed over
RECEIVE_BATCH = 32    # hand-overs taken per readable event

# (client socket, client IP, index of the listener) -> None: what an accepted one goes to
OnAdopted = Callable[[socket.socket, str, int], None]


def least_loaded(area: WorkerArea, own: int, generation: int, own_open: int,
                 extra: dict[int, int]) -> int | None:
    """The record index of the ready worker of `generation` (not `own`) to hand a connection
    to, when `own_open` is SHARE_SLACK or more above its connections (plus `extra`: what was
    handed to it and not yet counted by it); else None."""
    words = area.words
    best, fewest = None, own_open - SHARE_SLACK + 1
    for record in area.records[:area.worker_capacity]:
        base = record.base
        if record.index == own or words[base + WK_STATE] != STATE_READY \
                or words[base + WK_GENERATION] != generation:
            continue
        connections = words[base + WK_CONNECTIONS] + extra.get(record.index, 0)
        if connections < fewest:
            best, fewest = record.index, connections
    return best


class Handoff:
    """One worker's side: hand accepted connections over, and adopt the ones handed to it."""

    def __init__(self, loop: Loop, area: WorkerArea, own: int, generation: int,
                 pairs: list[Pair], on_adopted: OnAdopted) -> None:
        self.loop, self.area, self.own, self.generation = loop, area, own, generation
        self.senders = [sender for _, sender in pairs]
        self.reader = pairs[own][0]
        self.on_adopted = on_adopted
        self.pending: dict[int, int] = {}   # handed in this accept batch, by record index
        self.handed = 0
        self.adopted = 0
        for index, (reader, _) in enumerate(pairs):
            if index != own:
                reader.close()   # only the master and its owner read it

    def start(self) -> None:
        self.loop.add(self.reader.fileno(), READ, self._on_readable)

    def batch_done(self) -> None:
        """An accept batch ended: the receivers count their hand-overs themselves now."""
        self.pending.clear()

    def hand_over(self, client: socket.socket, client_ip: str, listener: int,
                  own_open: int) -> bool:
        """Pass `client` to a less loaded worker (True: it is theirs, our copy closed)."""
        if own_open < SHARE_SLACK:
            return False
        peer = least_loaded(self.area, self.own, self.generation, own_open, self.pending)
        if peer is None:
            return False
        try:
            send_client(self.senders[peer], client, listener, client_ip)
        except OSError:  # its queue is full (it is behind): serve it here
            return False
        client.close()
        self.pending[peer] = self.pending.get(peer, 0) + 1
        self.handed += 1
        return True

    def _on_readable(self, mask: int) -> None:
        for _ in range(RECEIVE_BATCH):
            try:
                found = receive_client(self.reader)
            except OSError:  # none waits (or the pair broke: nothing to take)
                return
            if found is not None:
                self.adopted += 1
                self.on_adopted(found[0], found[2], found[1])

    def close(self) -> None:
        self.loop.remove(self.reader.fileno())
