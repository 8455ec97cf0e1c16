"""Error log setup shared by master and workers: one format, a role per process, reopenable."""

from __future__ import annotations

import logging
import os
import sys

from hbfork.core.syslog import FACILITIES, SEVERITIES, is_syslog, parse_destination
from hbfork.system.syslog import SyslogSender

FORMAT = "%(asctime)s %(levelname)s hbfork[%(process)d] %(role)s: %(message)s"

log = logging.getLogger("hbfork")


class _RoleFilter(logging.Filter):
    role = "main"

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        return True


class SyslogHandler(logging.Handler):
    """The error log as RFC 5424 datagrams (MSGID "error"), sent without waiting: a message
    the socket cannot take at once is dropped (and counted), never queued."""

    def __init__(self, destination: str, facility: str) -> None:
        super().__init__()
        self.destination = parse_destination(destination)
        self.facility = FACILITIES[facility]
        self.pid = os.getpid()
        self.sender = SyslogSender(self.destination, self.facility, "error")

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self.pid:  # a forked worker: its own socket and PROCID
            self.pid = os.getpid()
            self.sender = SyslogSender(self.destination, self.facility, "error")
        severity = SEVERITIES["err"] if record.levelno >= logging.ERROR else \
            SEVERITIES["warning"] if record.levelno >= logging.WARNING else \
            SEVERITIES["info"] if record.levelno >= logging.INFO else SEVERITIES["debug"]
        try:
            self.sender.send(severity, self.format(record), record.created)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sender.close()
        super().close()


_role = _RoleFilter()
_path: str | None = None
_facility = "local7"


def make_handler(path: str | None, facility: str = "local7") -> logging.Handler:
    """A handler writing to `path` (appending), syslog (a `syslog:` destination) or stderr;
    raises OSError if it cannot open a file."""
    handler: logging.Handler
    if is_syslog(path):
        handler = SyslogHandler(path, facility)  # type: ignore[arg-type]
    elif path:
        handler = logging.FileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_role)
    return handler


def install(handler: logging.Handler, level: str, path: str | None) -> None:
    """Make `handler` the hbfork logger's only handler (closing the previous one)."""
    global _path
    _path = path
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False


def setup(level: str = "info", path: str | None = None, role: str = "main",
          facility: str = "local7") -> None:
    """(Re)configure the hbfork logger: to `path` (appending), syslog or stderr."""
    global _facility
    _role.role = role
    _facility = facility
    install(make_handler(path, facility), level, path)


def current_path() -> str | None:
    return _path


def set_role(role: str) -> None:
    _role.role = role


def reopen() -> None:
    """SIGUSR1: reopen the log file (after logrotate moved it). On failure the old file is
    kept, and the failure is logged to it."""
    if not _path:
        return
    try:
        handler = make_handler(_path, _facility)
    except OSError as err:
        log.error("cannot reopen the error log %s: %s", _path, err.strerror)
        return
    install(handler, logging.getLevelName(log.level).lower(), _path)


def describe_error(err: BaseException) -> str:
    """An OS error as "path: reason" (or just the reason); anything else as str()."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename + ': ' if err.filename else ''}{err.strerror}"
    return str(err)
