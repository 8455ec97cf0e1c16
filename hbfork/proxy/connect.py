"""Dialing a member: a non-blocking connect, shared by HTTP and TCP mode."""

from __future__ import annotations

import socket

from hbfork.proxy.upstreams import Target


def start_connect(target: Target) -> tuple[socket.socket, int]:
    """A non-blocking connect to `target`: (socket, 0 or EINPROGRESS or an errno)."""
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, sock.connect_ex(target.sockaddr)
    except OSError:
        sock.close()
        raise
