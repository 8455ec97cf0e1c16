"""The access log: one line per request (HTTP mode) or per connection (TCP mode), never written
from the worker loop.

Formats ([log] access_format):
  combined   Apache's: %h - - [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i"
  combined+  combined, then member=ADDR upstream=SECONDS total=SECONDS
  json       one object per line: the default fields, or those [log] access_fields names
  "%h ..."   an Apache LogFormat string, compiled once at load (hbfork.core.logformat)
In TCP mode combined and combined+ write the connection line (TCP_LINE's fields) instead.

Lines are collected in memory and handed to a writer thread (hbfork.ops.log_sinks) at least
once a second (or when 64 KiB are waiting), so a slow disk or syslog delays the log, not the
requests. SIGUSR1 reopens the file.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hbfork.core.config import Config
from hbfork.core.logformat import BUILTIN, compile_format, render
from hbfork.ops.access_record import HttpFields, HttpRecord, TcpRecord
from hbfork.ops.log_sinks import Writer, open_sink

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
        return self.at(int(time.time()))

    def at(self, second: int) -> str:
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


def tcp_line(fields: dict[str, Any], stamp: str) -> str:
    """TCP mode's line: client, when, member, bytes each way, duration, how it ended."""
    return (f'{fields["client"]} - - [{stamp}] "TCP" {fields["outcome"]} '
            f'member={fields["member"] or "-"} in={fields["bytes_in"]} '
            f'out={fields["bytes_out"]} total={fields["total_seconds"]:.6f}\n')


class AccessLog:
    """One per worker. `request` and `connection` are what the worker calls when a request or
    a TCP connection ends."""

    def __init__(self, destination: str, kind: str, fields: tuple[str, ...] = (),
                 facility: str = "local7", port: int = 0) -> None:
        self.kind = kind
        self.fields = fields
        self.port = port
        self.pid = os.getpid()
        self.parts = None if kind in BUILTIN else compile_format(kind)
        self.clock = _Clock()
        self.pending: list[str] = []
        self.pending_bytes = 0
        self.flushed_at = time.monotonic()
        self.writer = Writer(open_sink(destination, facility))
        if self.parts is not None or fields:
            self.request = self._request_rich  # type: ignore[method-assign]

    def request(self, exchange: Any, status: int, target: Any, now: float) -> None:
        """A request ended: the default formats, from the exchange's own fields."""
        line = format_line(self.kind, exchange.log_fields(status, target, now), self.clock.now())
        self.pending.append(line)
        self.pending_bytes += len(line)
        if self.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def _request_rich(self, exchange: Any, status: int, target: Any, now: float) -> None:
        """A request ended: a LogFormat string, or JSON with chosen fields."""
        fields = HttpFields(exchange, status, target, now, self.port, self.pid)
        if self.parts is not None:
            stamp = self.clock.at(int(fields["started"]))
            self.add(render(self.parts, HttpRecord(fields), stamp) + "\n")
        else:
            self.add(self._json(fields))

    def connection(self, fields: dict[str, Any]) -> None:
        """A TCP-mode connection closed (hbfork.proxy.tcp's fields)."""
        fields["pid"], fields["port"] = self.pid, self.port
        if self.parts is not None:
            stamp = self.clock.at(int(fields["started"]))
            self.add(render(self.parts, TcpRecord(fields), stamp) + "\n")
        elif self.kind == "json":
            self.add(self._json(TcpRecord(fields).fields))
        else:
            self.add(tcp_line(fields, self.clock.at(int(fields["started"]))))

    def _json(self, fields: dict[str, Any]) -> str:
        """JSON with the chosen fields (TCP mode: all of them, when none are chosen)."""
        fields["time"] = self.clock.at(int(fields["started"] or time.time()))
        chosen = {name: fields[name] for name in self.fields} if self.fields else fields
        return json.dumps(chosen, separators=(",", ":")) + "\n"

    def add(self, line: str) -> None:
        self.pending.append(line)
        self.pending_bytes += len(line)
        if self.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def log(self, fields: dict[str, Any]) -> None:
        """One request's fields in a default format (tests, tools)."""
        self.add(format_line(self.kind, fields, self.clock.now()))

    def tick(self, now: float) -> None:
        """Called from the worker loop: hand over what waited for a second."""
        if self.pending and now - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.put(self.pending)
            self.pending, self.pending_bytes = [], 0
        self.flushed_at = time.monotonic()

    def reopen(self) -> None:
        self.flush()
        self.writer.reopen()

    def close(self) -> None:
        self.flush()
        self.writer.close()


def open_access_log(config: Config, destination: str) -> AccessLog:
    """The worker's access log, as [log] says (`destination`: the resolved path, or syslog)."""
    ports = {listen.address.port for listen in config.listeners if listen.address is not None}
    settings = config.log
    return AccessLog(destination, settings.access_format, settings.access_fields,
                     settings.syslog_facility, ports.pop() if len(ports) == 1 else 80)
