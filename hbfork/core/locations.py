"""Where the master's files are, from the few config values that say so: shared by the config
model and `hbfork health`'s fast path, which must not pay for importing the whole model.

Pure and light: only `os.path`."""

from __future__ import annotations

import os

UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, NUL included


def resolve(base_dir: str, maybe_relative: str | None) -> str | None:
    """A path from the config file, taken relative to the file's directory. A log
    destination that names syslog (hbfork.core.syslog) is not a path: it is kept as it is."""
    if not maybe_relative:
        return None
    if maybe_relative.startswith("syslog:"):
        return maybe_relative
    return os.path.normpath(os.path.join(base_dir, maybe_relative))


def control_socket_path(base_dir: str, pidfile: str | None,
                        control_socket: str | None) -> str | None:
    """The control socket: as configured, else next to the pid file (if that path fits a Unix
    socket address), else none."""
    if control_socket:
        return resolve(base_dir, control_socket)
    pid = resolve(base_dir, pidfile)
    if pid and len(os.fsencode(pid + ".ctl")) <= UNIX_PATH_MAX:
        return pid + ".ctl"
    return None
