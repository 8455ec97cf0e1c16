"""The access log (HTTP mode): one line per request, never written from the worker loop.

Formats:
  combined   Apache's: %h - - [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i"
  combined+  combined, then member=ADDR upstream=SECONDS total=SECONDS
  json       one object per line with the same fields

Lines are collected in memory and handed to a writer thread at least once a second (or when
64 KiB are waiting), so a slow disk delays the log, not the requests. SIGUSR1 reopens the file.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from typing import Any

FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0


def _quote(value: bytes | str) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text.replace("\\", "\\\\").replace('"', '\\"')


class _Clock:
    """Apache's %t, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self.text


def format_line(kind: str, fields: dict[str, Any], stamp: str) -> str:
    """One log line (with its newline) from the request's fields."""
    if kind == "json":
        return json.dumps({**fields, "time": stamp}, separators=(",", ":")) + "\n"
    size = fields["bytes"] if fields["bytes"] else "-"
    line = (f'{fields["client"]} - - [{stamp}] "{_quote(fields["request"])}" '
            f'{fields["status"] or "-"} {size} "{_quote(fields["referer"] or "-")}" '
            f'"{_quote(fields["user_agent"] or "-")}"')
    if kind == "combined+":
        upstream = fields["upstream_seconds"]
        line += (f' member={fields["member"] or "-"} '
                 f'upstream={"-" if upstream is None else f"{upstream:.6f}"} '
                 f'total={fields["total_seconds"]:.6f}')
    return line + "\n"


class AccessLog:
    def __init__(self, path: str, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.clock = _Clock()
        self.pending: list[str] = []
        self.pending_bytes = 0
        self.flushed_at = time.monotonic()
        self._queue: queue.SimpleQueue[list[str] | str | None] = queue.SimpleQueue()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - the writer owns it
        self._thread = threading.Thread(target=self._write_loop, name="hbfork-access",
                                        daemon=True)
        self._thread.start()

    def log(self, fields: dict[str, Any]) -> None:
        line = format_line(self.kind, fields, self.clock.now())
        self.pending.append(line)
        self.pending_bytes += len(line)
        if self.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def tick(self, now: float) -> None:
        """Called from the worker loop: hand over what waited for a second."""
        if self.pending and now - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self._queue.put(self.pending)
            self.pending, self.pending_bytes = [], 0
        self.flushed_at = time.monotonic()

    def reopen(self) -> None:
        self.flush()
        self._queue.put("reopen")

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._file.close()
                return
            try:
                if item == "reopen":
                    # Open the new file before letting go of the old one: if it cannot be
                    # opened, lines keep going to the old file instead of nowhere.
                    new = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                    self._file.close()
                    self._file = new
                else:
                    self._file.write("".join(item))
                    self._file.flush()
            except Exception as err:  # the writer thread must outlive any one failure
                os.write(2, f"hbfork: access log {self.path}: {err}\n".encode())
