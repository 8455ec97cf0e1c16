"""Reading the heartbeat signing key file (one secret per line; two during a rotation)."""

from __future__ import annotations

import os
import stat

from hbfork.core.errors import HeartbeatError


def read_keys(path: str) -> tuple[bytes, ...]:
    """The MAC keys in `path`: each non-empty line, whitespace stripped, as UTF-8 bytes.

    Refuses a file that group or others may access, and a file with no key or more than two.
    """
    try:
        info = os.stat(path)
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            mode = stat.S_IMODE(info.st_mode)
            raise HeartbeatError("key_file", f"{path} is accessible by group or others "
                                             f"(mode {mode:04o}); chmod 600 it")
        with open(path, encoding="utf-8") as handle:
            keys = tuple(line.strip().encode() for line in handle if line.strip())
    except OSError as err:
        raise HeartbeatError("key_file", f"{path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise HeartbeatError("key_file", f"{path} is not UTF-8 text") from None
    if not 1 <= len(keys) <= 2:
        raise HeartbeatError("key_file", f"{path} must hold one key, or two during a rotation")
    return keys
