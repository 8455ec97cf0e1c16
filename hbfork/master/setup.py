"""Checks and preparations that touch files and users, done at start and again on reload
before anything is committed: keys read, the access log created and handed to the worker user,
files that must stay readable after the privilege drop, and what a reload may not change."""

from __future__ import annotations

import os

from hbfork.core.config import Config
from hbfork.core.errors import ConfigError, HbforkError
from hbfork.core.syslog import is_syslog
from hbfork.system import privileges
from hbfork.system.keyfile import read_keys
from hbfork.system.logs import log
from hbfork.system.pidfile import is_hbfork
from hbfork.table import segments


def keys_of(config: Config) -> tuple[bytes, ...]:
    path = config.resolve(config.heartbeat.key_file)
    return read_keys(path) if path else ()


def prepare_access_log(config: Config) -> None:
    """Create the access log now (workers open it by path, perhaps unprivileged), so a bad path
    is a clear error here rather than workers dying at boot."""
    path = config.resolve(config.log.access)
    if not path or is_syslog(path):
        return
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        raise HbforkError(f"[log] access: cannot open {path}: {err.strerror}") from None
    if config.proxy.user and os.geteuid() == 0:
        uid, gid = privileges.resolve(config.proxy.user, config.proxy.group)
        os.chown(path, uid, gid)


def check_owned_by_user(config: Config) -> None:
    """Files re-read after privileges are dropped (reload, USR1) must be the user's: the error
    log is handed over; a key file must already be (hbfork does not change the owner of a
    secret), or every reload would fail."""
    if not (config.proxy.user and os.geteuid() == 0):
        return
    uid, gid = privileges.resolve(config.proxy.user, config.proxy.group)
    error_log = config.resolve(config.log.error)
    if error_log and not is_syslog(error_log):
        os.chown(error_log, uid, gid)
    key_file = config.resolve(config.heartbeat.key_file)
    if key_file and os.stat(key_file).st_uid != uid:
        raise HbforkError(f"[heartbeat] key_file {key_file} must be owned by [proxy] user "
                          f"{config.proxy.user!r} (mode 0600), so reloads can read it")


def drop_privileges(config: Config, owned_fds: list[int]) -> None:
    """Switch to [proxy] user (after binding), handing it `owned_fds`, the pid file and the
    control socket; refuse to serve as root without allow_root."""
    if config.proxy.user:
        uid, gid = privileges.resolve(config.proxy.user, config.proxy.group)
        if os.geteuid() == 0:
            paths = [p for p in (config.pidfile, config.control_socket) if p]
            privileges.drop(uid, gid, owned_fds, paths)
            log.info("running as uid %d gid %d", uid, gid)
        elif os.geteuid() != uid:
            raise HbforkError(f"[proxy] user {config.proxy.user!r}: cannot switch to it "
                              "without starting as root")
    elif os.geteuid() == 0 and not config.proxy.allow_root:
        raise HbforkError("refusing to serve as root: set [proxy] user (privileges are "
                          "dropped after binding), or allow_root = true")


def check_reloadable(old: Config, new: Config) -> None:
    """Settings fixed for the master's life; raises ConfigError naming the first that moved."""
    if new.heartbeat.max_members != old.heartbeat.max_members:
        raise ConfigError(new.path, "[heartbeat] max_members",
                          f"cannot change from {old.heartbeat.max_members} on "
                          "reload (the table is sized at start); restart to change it")
    for key, before, after in (("[proxy] pidfile", old.pidfile, new.pidfile),
                               ("[proxy] control_socket", old.control_socket,
                                new.control_socket),
                               ("[proxy] user", old.proxy.user, new.proxy.user),
                               ("[proxy] group", old.proxy.group, new.proxy.group)):
        if before != after:
            raise ConfigError(new.path, key, "cannot change on reload; restart to change it")


def reclaim_leftover_tables(config: Config) -> None:
    """Remove the tables of masters killed together with their workers (nobody was left to
    unlink them): ours, or the [proxy] user's when we start as root."""
    owners = {os.geteuid()}
    if config.proxy.user and os.geteuid() == 0:
        owners.add(privileges.resolve(config.proxy.user, config.proxy.group)[0])
    for leftover in segments.reclaim(owners, is_hbfork):
        log.warning("removed table %s (%.1f MiB) left behind by master %d, which is no longer "
                    "running", leftover.name, leftover.size / 2**20, leftover.pid)


def describe_start(config: Config) -> str:
    """What the master's first log line says it serves."""
    listeners = ", ".join(f"{e.address}{' (TLS)' if e.tls else ''}" for e in config.listeners)
    status = f", status on {config.status.listen}" if config.status.listen else ""
    return (f"listening on {listeners} (mode {config.proxy.mode}), heartbeats on "
            f"{config.heartbeat.listen}{status}")
