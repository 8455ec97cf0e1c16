"""The pid file: written atomically, refused while another live master owns it."""

from __future__ import annotations

import os

from hbfork.core.errors import HbforkError


def alive(pid: int) -> bool:
    """Is process `pid` running? A zombie is not: it has exited and only waits for its parent
    to reap it (a master killed under a supervisor that is slow to reap must not look alive to
    `hbfork health`, or keepalived keeps the VIP on a front that no longer serves)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True  # no /proc: kill(0) is all we can know
    # The state follows the command name, which is in parentheses and may contain any byte.
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def is_hbfork(pid: int) -> bool:
    """Is `pid` alive and an hbfork process? Guards against a pid reused by something else
    after an hbfork master died (its process title starts with "hbfork")."""
    if not alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read(256)
    except OSError:
        return True  # no /proc, or not ours to read: assume the best, keep its files
    return command.startswith(b"hbfork") or b"-m\0hbfork" in command \
        or b"/hbfork\0" in command


def read_pid(path: str) -> int | None:
    """The pid in `path` if a process with that pid is alive, else None."""
    try:
        with open(path, encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def claim(path: str, pid: int, replacing: int | None = None) -> None:
    """Write `pid` to `path` atomically; refuse if a live process other than `replacing` (the
    master an upgrade replaces) already owns the file."""
    other = read_pid(path)
    if other is not None and other not in (pid, replacing):
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
