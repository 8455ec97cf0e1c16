"""Where access log lines go, written by a thread so the worker loop never waits on a disk or
a syslog daemon: a file (appended, reopened on SIGUSR1) or syslog (one RFC 5424 datagram per
line, hbfork.system.syslog).

The loop hands over a batch of lines (`put`); the writer thread writes it. If the thread falls
behind by MAX_BATCHES batches (a stalled disk or a full /dev/log), further batches are dropped
and counted rather than held: memory stays bounded, and the count is reported on stderr.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Protocol

from hbfork.core.syslog import FACILITIES, SEVERITIES, is_syslog, parse_destination
from hbfork.system.syslog import SyslogSender

MAX_BATCHES = 256


class Sink(Protocol):
    """Written to only by the writer thread."""

    name: str

    def write(self, lines: list[str], epoch: float) -> None: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...


class FileSink:
    def __init__(self, path: str) -> None:
        self.name = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - the writer owns it

    def write(self, lines: list[str], epoch: float) -> None:
        self._file.write("".join(lines))
        self._file.flush()

    def reopen(self) -> None:
        # Open the new file before letting go of the old one: if it cannot be opened, lines
        # keep going to the old file instead of nowhere.
        new = open(self.name, "a", encoding="utf-8")  # noqa: SIM115
        self._file.close()
        self._file = new

    def close(self) -> None:
        self._file.close()


class SyslogSink:
    def __init__(self, destination: str, facility: str, msgid: str = "access") -> None:
        self.name = destination
        self.sender = SyslogSender(parse_destination(destination), FACILITIES[facility], msgid,
                                   blocking=True)
        self._reported = 0

    def write(self, lines: list[str], epoch: float) -> None:
        send, info = self.sender.send, SEVERITIES["info"]
        for line in lines:
            send(info, line, epoch)
        if self.sender.dropped > self._reported:
            os.write(2, f"hbfork: access log {self.name}: {self.sender.dropped - self._reported}"
                        f" lines dropped ({self.sender.last_error})\n".encode())
            self._reported = self.sender.dropped

    def reopen(self) -> None:
        self.sender.close()

    def close(self) -> None:
        self.sender.close()


def open_sink(destination: str, facility: str = "local7") -> Sink:
    """A file path (already resolved) or a syslog: destination."""
    if is_syslog(destination):
        return SyslogSink(destination, facility)
    return FileSink(destination)


class Writer:
    """The thread that owns a sink."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.dropped = 0       # counted by the loop, reported by the thread
        self._reported = 0
        self._queue: queue.SimpleQueue[tuple[float, list[str]] | str | None] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="hbfork-access",
                                        daemon=True)
        self._thread.start()

    def put(self, lines: list[str]) -> None:
        """From the loop: never blocks."""
        if self._queue.qsize() >= MAX_BATCHES:
            self.dropped += len(lines)
            return
        self._queue.put((time.time(), lines))

    def reopen(self) -> None:
        self._queue.put("reopen")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._report()

    def _report(self) -> None:
        dropped = self.dropped
        if dropped > self._reported:
            os.write(2, f"hbfork: access log {self.sink.name}: {dropped - self._reported} "
                        "lines dropped (the writer fell behind)\n".encode())
            self._reported = dropped

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self.sink.close()
                return
            try:
                if isinstance(item, tuple):
                    self.sink.write(item[1], item[0])
                else:
                    self.sink.reopen()
                self._report()  # it caught up: say what was lost meanwhile
            except Exception as err:  # the writer thread must outlive any one failure
                os.write(2, f"hbfork: access log {self.sink.name}: {err}\n".encode())
