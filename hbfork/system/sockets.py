"""Binding the master's sockets: client listeners, the heartbeat socket, the status listener."""

from __future__ import annotations

import socket
import struct

from hbfork.core.addresses import Endpoint, parse_ip

HEARTBEAT_RCVBUF = 4 * 1024 * 1024


def bind_listener(endpoint: Endpoint, backlog: int) -> socket.socket:
    """A non-blocking TCP listener. IPv6 listeners are v6-only, so "[::]:80" and "0.0.0.0:80"
    can both be configured."""
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if endpoint.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(endpoint.sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def open_heartbeat_socket(endpoint: Endpoint, interface: str | None = None) -> socket.socket:
    """The UDP socket heartbeats arrive on. For a multicast group it binds the group address
    (as mod_heartmonitor does, so unrelated traffic to the port is not received) and joins it
    on `interface` (an IPv4 address; default: the routing table's choice)."""
    sock = socket.socket(endpoint.family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, HEARTBEAT_RCVBUF)
        except OSError:
            pass
        if endpoint.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(endpoint.sockaddr)
        if endpoint.is_multicast:
            _join(sock, endpoint, interface)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _join(sock: socket.socket, group: Endpoint, interface: str | None) -> None:
    if group.family == socket.AF_INET:
        local = parse_ip(interface).packed if interface else bytes(4)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group.ip.packed + local)
    else:
        request = group.ip.packed + struct.pack("@I", 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)

