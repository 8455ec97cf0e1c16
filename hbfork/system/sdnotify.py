"""systemd's notification protocol (sd_notify), without libsystemd: one datagram to the socket
named in $NOTIFY_SOCKET. With `Type=notify` and `NotifyAccess=all`, "READY=1" says the master
serves, and after a binary upgrade "MAINPID=N" tells systemd which process is the master now
(the old one exits, and systemd would otherwise take the service for stopped)."""

from __future__ import annotations

import os
import socket


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send `state` ("READY=1", "MAINPID=123\\nREADY=1", ...); False when not run under
    systemd or the message could not be sent (never raises: this is only a courtesy)."""
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path  # "@": the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True
