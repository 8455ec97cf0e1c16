"""Passing accepted client sockets between worker processes: one Unix datagram socket pair
per worker record, made by the master before any fork (so every worker can send to every
other and reads its own), and the message that goes with a descriptor. Used by
hbfork.proxy.handoff; here so that the master, which makes the pairs, never imports the proxy.
"""

from __future__ import annotations

import socket

MESSAGE_MAX = 128     # "listener-index client-ip" in ASCII

Pair = tuple[socket.socket, socket.socket]   # (the record's reading end, its sending end)


def make_pairs(count: int) -> list[Pair]:
    """One non-blocking datagram socket pair per worker record."""
    pairs = []
    for _ in range(count):
        reader, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        reader.setblocking(False)
        sender.setblocking(False)
        pairs.append((reader, sender))
    return pairs


def send_client(sender: socket.socket, client: socket.socket, listener: int,
                client_ip: str) -> None:
    """Pass `client` (raises OSError, e.g. BlockingIOError when the receiver is behind)."""
    socket.send_fds(sender, [encode(listener, client_ip)], [client.fileno()])


def receive_client(reader: socket.socket) -> tuple[socket.socket, int, str] | None:
    """One passed client: (socket, listener index, client IP); None for a message that is no
    hand-over (its descriptors closed). Raises BlockingIOError when none waits."""
    message, fds, _, _ = socket.recv_fds(reader, MESSAGE_MAX, 1)
    found = decode(message)
    clients = [socket.socket(fileno=fd) for fd in fds]
    if found is None or len(clients) != 1:
        for client in clients:
            client.close()
        return None
    return clients[0], found[0], found[1]


def drain(reader: socket.socket) -> int:
    """Close every client waiting on `reader` (its worker is gone); how many there were."""
    closed = 0
    while True:
        try:
            found = receive_client(reader)
        except OSError:
            return closed
        if found is not None:
            found[0].close()
            closed += 1


def encode(listener: int, client_ip: str) -> bytes:
    return f"{listener} {client_ip}".encode("ascii")


def decode(message: bytes) -> tuple[int, str] | None:
    """(listener index, client IP) of a hand-over message; None if it is not one."""
    try:
        index, _, ip = message.decode("ascii").partition(" ")
    except UnicodeDecodeError:
        return None
    return (int(index), ip) if ip and index.isdigit() else None
