"""mod_heartmonitor's storage file (hb.dat): write ours, read another monitor's.

One line per server, exactly as mod_heartmonitor writes it (HeartbeatMaxServers 0):

    10.213.0.12 &ready=49&busy=1&lastseen=0&port=80

`lastseen` is whole seconds since the server's last heartbeat, computed when the file is
written. The file is written to a temporary name, made mode 0444 and renamed over the path, so
a reader never sees half a file. Formatting and parsing are pure; StorageWriter does the file
I/O on its own thread so the master loop never waits for a disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from hbfork.core.addresses import IPAddress, parse_ip
from hbfork.core.heartbeat import INT32_MAX, parse_fields
from hbfork.core.members import Member

NS = 1_000_000_000


def format_storage(members: Iterable[Member], now: int) -> str:
    """The file's text for every member heard from at least once (`now`: monotonic ns)."""
    lines = []
    for m in members:
        if not m.first_seen:
            continue
        lastseen = max(0, (now - m.last_seen) // NS)
        lines.append(f"{m.ip} &ready={m.ready}&busy={m.busy}&lastseen={lastseen}"
                     f"&port={m.port}\n")
    return "".join(lines)


@dataclass(frozen=True, slots=True)
class StoredServer:
    ip: IPAddress
    ready: int
    busy: int
    lastseen: int
    port: int


def parse_storage(text: str) -> tuple[list[StoredServer], list[str]]:
    """(servers, problems): every well-formed line, and a note for each line that is not."""
    servers, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            servers.append(_parse_line(line))
        except ValueError as err:
            problems.append(f"line {number}: {err}")
    return servers, problems


def _parse_line(line: str) -> StoredServer:
    ip_text, space, rest = line.partition(" ")
    if not space:
        raise ValueError("expected 'IP &ready=N&busy=M&lastseen=S&port=P'")
    fields = parse_fields(rest.strip().encode("latin-1", "replace"))

    def number(key: str, low: int, high: int, default: int | None = None) -> int:
        raw = fields.get(key.encode())
        if raw is None and default is not None:
            return default
        if raw is None or not raw.isdigit() or not low <= int(raw) <= high:
            raise ValueError(f"{key} missing or out of range")
        return int(raw)

    return StoredServer(parse_ip(ip_text), number("ready", 0, INT32_MAX),
                        number("busy", 0, INT32_MAX), number("lastseen", 0, INT32_MAX),
                        number("port", 1, 65535, default=80))


def write_atomically(path: str, text: str, mode: int = 0o444) -> None:
    temp = f"{path}.tmp.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    data = memoryview(text.encode())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while data:
            written = os.write(fd, data)  # short on a full disk: loop, then ENOSPC raises
            data = data[written:]
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)  # never publish half a file
        raise
    os.close(fd)
    os.replace(temp, path)


class StorageWriter:
    """Writes the newest text handed to it, on a daemon thread (the latest always wins)."""

    def __init__(self, path: str, on_error) -> None:
        self.path = path
        self.on_error = on_error
        self._text: str | None = None
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="hbfork-storage", daemon=True)
        self._thread.start()

    def submit(self, text: str) -> None:
        with self._wake:
            self._text = text
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._text is None and not self._stopped:
                    self._wake.wait()
                text, self._text = self._text, None
                if text is None:
                    return
            try:
                write_atomically(self.path, text)
            except OSError as err:
                self.on_error(err)

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)
