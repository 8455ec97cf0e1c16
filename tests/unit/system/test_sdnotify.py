"""systemd notifications (hbfork.system.sdnotify) to a datagram socket of our own."""

from __future__ import annotations

import socket
from pathlib import Path

from hbfork.system.sdnotify import notify


def test_notify_sends_one_datagram_to_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert notify("MAINPID=12\nREADY=1", {"NOTIFY_SOCKET": path})
        assert server.recv(100) == b"MAINPID=12\nREADY=1"


def test_notify_outside_systemd_or_to_nowhere_is_quiet(tmp_path: Path) -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "relative"})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})
