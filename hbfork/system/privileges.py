"""Dropping root after the sockets are bound."""

from __future__ import annotations

import grp
import os
import pwd

from hbfork.core.errors import HbforkError


def resolve(user: str, group: str | None) -> tuple[int, int]:
    """(uid, gid) for a user name or number and an optional group (default: the user's)."""
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise HbforkError(f"[proxy] user: no such user {user!r}") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
        except KeyError:
            raise HbforkError(f"[proxy] group: no such group {group!r}") from None
    return entry.pw_uid, gid


def drop(uid: int, gid: int, owned_fds: list[int], owned_paths: list[str]) -> None:
    """Give `owned_*` to uid:gid, then switch the process to uid:gid for good.

    Owning a file is not enough to remove it later: that takes write permission on its
    directory, so the pid file and control socket belong in a directory the user may write."""
    for fd in owned_fds:
        os.fchown(fd, uid, gid)
    for path in owned_paths:
        os.chown(path, uid, gid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.geteuid() != uid or os.getegid() != gid:
        raise HbforkError("could not drop privileges")
