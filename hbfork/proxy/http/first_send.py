"""The fast paths' first write of a request to its member (HTTP and AJP alike): sent at once
where the socket takes it, the rest queued with write interest, and a failed write handed to
the member side (a retry on a fresh connection, or a 502)."""

from __future__ import annotations

from hbfork.proxy.http.parts import MemberSide, SessionCore
from hbfork.proxy.keepalive import MemberConnection
from hbfork.proxy.loop import READ, WRITE, Loop


def send_request(s: SessionCore, member: MemberSide, conn: MemberConnection, loop: Loop,
                 data: bytes) -> None:
    try:
        sent = conn.sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        member.out += data
        member.write_failed()  # a retry on a fresh connection, or a 502
        return s.advance()
    if sent < len(data):
        member.out += memoryview(data)[sent:]
        loop.set_mask(conn.fd, READ | WRITE)
