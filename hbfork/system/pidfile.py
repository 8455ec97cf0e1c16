"""The pid file: written atomically, refused while another live master owns it."""

from __future__ import annotations

import os

from hbfork.core.errors import HbforkError


def read_pid(path: str) -> int | None:
    """The pid in `path` if a process with that pid is alive, else None."""
    try:
        with open(path, encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by someone else
    return pid


def claim(path: str, pid: int) -> None:
    """Write `pid` to `path` atomically; refuse if a live process already owns the file."""
    other = read_pid(path)
    if other is not None and other != pid:
        raise HbforkError(f"{path}: hbfork master pid {other} is already running "
                          f"(stop it first, or use another pidfile)")
    temp = f"{path}.{pid}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{pid}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def release(path: str, pid: int) -> None:
    """Remove the pid file if it is still ours."""
    try:
        with open(path, encoding="ascii") as handle:
            if handle.read().split()[0] != str(pid):
                return
        os.unlink(path)
    except (OSError, IndexError):
        pass
