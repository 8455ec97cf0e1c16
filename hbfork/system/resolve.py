"""The system's resolver, for members given by host name (hbfork.core.member_names)."""

from __future__ import annotations

import socket


def system_resolver(host: str) -> list[str]:
    """The addresses the system's resolver gives `host` (A and AAAA, in its order)."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
