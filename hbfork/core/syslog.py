"""Syslog as a log destination: where to send (`syslog:udp://HOST[:PORT]`, `syslog:unix:PATH`)
and RFC 5424 framing. Pure: text in, bytes out; the sockets are hbfork.system.syslog's.

One message per datagram (RFC 5426 over UDP; the same on a unix datagram socket such as
/dev/log):

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG

PRI is facility * 8 + severity; TIMESTAMP is RFC 3339 with microseconds and the UTC offset;
there is no structured data ("-"); MSG is the log line, UTF-8, without a BOM. A message is cut
at MAX_MESSAGE bytes (a datagram must fit, and receivers keep far less anyway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hbfork.core.addresses import Endpoint, parse_endpoint

PREFIX = "syslog:"
DEFAULT_PORT = 514
MAX_MESSAGE = 8192
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
SEVERITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5,
              "info": 6, "debug": 7}


@dataclass(frozen=True)
class SyslogDestination:
    """Where syslog messages go: a UDP endpoint, or the path of a unix datagram socket."""

    udp: Endpoint | None = None
    path: str = ""

    def __str__(self) -> str:
        return f"{PREFIX}udp://{self.udp}" if self.udp is not None else f"{PREFIX}unix:{self.path}"


def is_syslog(destination: str | None) -> bool:
    """Whether a log destination names syslog rather than a file."""
    return bool(destination) and destination.startswith(PREFIX)  # type: ignore[union-attr]


def parse_destination(text: str) -> SyslogDestination:
    """`syslog:udp://IP[:PORT]` (port 514 by default; [IPv6]) or `syslog:unix:/PATH`; raises
    ValueError saying what is wrong."""
    rest = text.removeprefix(PREFIX)
    if rest.startswith("udp://"):
        where = rest.removeprefix("udp://")
        if not where:
            raise ValueError(f"{text!r}: no address after udp://")
        try:
            endpoint = parse_endpoint(where)
        except ValueError as err:
            if "has no port" not in str(err):
                raise ValueError(f"{text!r}: {err}") from None
            bare = where.strip("[]")
            endpoint = parse_endpoint(f"[{bare}]:{DEFAULT_PORT}" if ":" in bare
                                      else f"{bare}:{DEFAULT_PORT}")
        return SyslogDestination(udp=endpoint)
    if rest.startswith("unix:"):
        path = rest.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: the socket path must be absolute "
                             "(syslog:unix:/dev/log)")
        return SyslogDestination(path=path)
    raise ValueError(f"{text!r}: expected syslog:udp://IP[:PORT] or syslog:unix:/PATH")


def log_destination(value: object) -> str | None:
    """[log] access / error: a file path, a syslog: destination (checked here), or ""."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if is_syslog(value):
        parse_destination(value)
    return value or None


def timestamp(epoch: float) -> str:
    """RFC 3339 as RFC 5424 wants it: local time, microseconds, the offset (+hh:mm)."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="microseconds")


def _token(text: str, limit: int) -> str:
    """A header field: printable ASCII without spaces, at most `limit`, "-" when empty."""
    cleaned = "".join(c for c in text if "!" <= c <= "~")[:limit]
    return cleaned or "-"


class Framer:
    """RFC 5424 messages of one sender: the header fields fixed once, then per message."""

    def __init__(self, facility: int, hostname: str, app: str, procid: int,
                 msgid: str) -> None:
        self.facility = facility
        self.head = (f"{_token(hostname, 255)} {_token(app, 48)} {_token(str(procid), 128)} "
                     f"{_token(msgid, 32)} -")
        self._epoch = -1.0
        self._stamp = ""

    def frame(self, severity: int, message: str, epoch: float) -> bytes:
        """One message; line ends are dropped (one message is one line)."""
        text = message.rstrip("\r\n").encode("utf-8", "replace")[:MAX_MESSAGE]
        if epoch != self._epoch:  # a batch of lines shares its time: formatted once
            self._epoch, self._stamp = epoch, timestamp(epoch)
        pri = self.facility * 8 + severity
        return f"<{pri}>1 {self._stamp} {self.head} ".encode() + text


def parse_message(data: bytes) -> dict[str, str | int]:
    """A received RFC 5424 message, split into its parts (for tests and `hbfork` tools);
    raises ValueError when it is not one."""
    if not data.startswith(b"<") or b">" not in data[:5]:
        raise ValueError("no <PRI>")
    pri_text, _, rest = data[1:].partition(b">")
    parts = rest.split(b" ", 7)
    if len(parts) < 7 or parts[0] != b"1":
        raise ValueError("not an RFC 5424 message")
    pri = int(pri_text)
    return {"facility": pri // 8, "severity": pri % 8, "timestamp": parts[1].decode(),
            "hostname": parts[2].decode(), "app": parts[3].decode(),
            "procid": parts[4].decode(), "msgid": parts[5].decode(),
            "structured_data": parts[6].decode(),
            "message": parts[7].decode("utf-8", "replace") if len(parts) > 7 else ""}
