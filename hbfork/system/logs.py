"""Error log setup shared by master and workers: one format, a role per process, reopenable."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s hbfork[%(process)d] %(role)s: %(message)s"

log = logging.getLogger("hbfork")


class _RoleFilter(logging.Filter):
    role = "main"

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        return True


_role = _RoleFilter()
_path: str | None = None


def make_handler(path: str | None) -> logging.Handler:
    """A handler writing to `path` (appending) or stderr; raises OSError if it cannot open."""
    handler: logging.Handler
    if path:
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


def setup(level: str = "info", path: str | None = None, role: str = "main") -> None:
    """(Re)configure the hbfork logger: to `path` (appending) or stderr."""
    _role.role = role
    install(make_handler(path), level, path)


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
        handler = make_handler(_path)
    except OSError as err:
        log.error("cannot reopen the error log %s: %s", _path, err.strerror)
        return
    install(handler, logging.getLevelName(log.level).lower(), _path)


def describe_error(err: BaseException) -> str:
    """An OS error as "path: reason" (or just the reason); anything else as str()."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename + ': ' if err.filename else ''}{err.strerror}"
    return str(err)
