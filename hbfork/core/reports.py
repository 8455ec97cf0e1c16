"""What a worker tells its master, as bytes on the worker's report socket. Pure.

One datagram-sized message per event, space-separated ASCII:

    ready                          the worker has started serving
    error SLOT UID REASON [MS]     a connect to the member failed: in error (MS: the pool's
                                   retry in milliseconds, else the master's [proxy] retry)
    eject SLOT UID CAUSE           the worker's outlier detector says the member fails
                                   (CAUSE: hbfork.core.outlier.CAUSES index)
    beat IP BODY                   a heartbeat POSTed to [heartbeat] http_path by IP (the
                                   connection's peer); BODY as received, up to 1000 bytes

The master is the table's only writer: these are how what workers see reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    slot: int
    uid: int
    reason: str
    retry_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Eject:
    slot: int
    uid: int
    cause: int


@dataclass(frozen=True, slots=True)
class Beat:
    ip: str
    body: bytes


Report = Ready | ConnectFailed | Eject | Beat
MAX_MESSAGE = 1100  # the longest: a beat (5 + an IPv6 address + 1 + 1000 bytes)


def encode(report: Report) -> bytes:
    if isinstance(report, Ready):
        return b"ready"
    if isinstance(report, ConnectFailed):
        reason = report.reason.replace(" ", "_").encode(errors="replace") or b"?"
        message = b"error %d %d %s" % (report.slot, report.uid, reason)
        return message if report.retry_ms is None else message + b" %d" % report.retry_ms
    if isinstance(report, Beat):
        return b"beat %s %s" % (report.ip.encode("ascii", "replace"), report.body)
    return b"eject %d %d %d" % (report.slot, report.uid, report.cause)


def decode(message: bytes) -> Report | None:
    """The report in `message`, or None for anything malformed (ignored, never fatal)."""
    if message.startswith(b"beat "):
        _, ip, body = (message + (b"" if message.count(b" ") > 1 else b" ")).split(b" ", 2)
        return Beat(ip.decode("ascii", "replace"), body) if ip else None
    parts = message.split()
    try:
        if parts == [b"ready"]:
            return Ready()
        if parts[:1] == [b"error"] and len(parts) >= 3:
            reason = parts[3].decode(errors="replace") if len(parts) > 3 else "?"
            retry = int(parts[4]) if len(parts) > 4 and parts[4].isdigit() else None
            return ConnectFailed(int(parts[1]), int(parts[2]), reason, retry)
        if parts[:1] == [b"eject"] and len(parts) == 4:
            return Eject(int(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        return None
    return None
