"""Binary upgrade, the new master's side: take over a running master's sockets and members.

Started by hbfork.master.upgrade with HBFORK_UPGRADE_FD in its environment, the new master
reads the old one's hello and sockets first, and then starts as any master does, except that:
its bindings begin with the passed sockets (only what the config adds is bound); its member
registry begins with a copy of the old master's table (ready, busy, last heartbeat, operator
and error states), so no member is "never seen" or stale for a moment and nothing answers 503;
and until the old master says "handed" it neither reads heartbeats nor control requests nor
claims the pid file, so a failure anywhere before leaves the old master as it was.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable

from hbfork.core import upgrade
from hbfork.core.addresses import Endpoint
from hbfork.core.errors import HbforkError
from hbfork.core.members import ELIGIBLE, Registry
from hbfork.core.pool_admin import POOL_DISABLED, POOL_DRAINED, PoolAdmin
from hbfork.core.upgrade import Hello
from hbfork.master.bindings import Bindings
from hbfork.system import logs
from hbfork.table.table import Table

HELLO_TIMEOUT = 10.0  # the hello is sent before the exec; it waits in the socket already
MAX_FDS = 250         # SCM_RIGHTS carries at most 253 descriptors per message
log = logs.log


class Adoption:
    def __init__(self, channel: socket.socket, hello: Hello,
                 sockets: list[socket.socket]) -> None:
        self.channel = channel
        self.hello = hello
        self.sockets = sockets       # in the order of hello.sockets
        self.control: socket.socket | None = None
        self.announced = False       # "ready" sent
        self.handed = False

    @classmethod
    def from_environment(cls) -> Adoption | None:
        """The upgrade this process was started for, or None for an ordinary start; raises
        HbforkError if the old master's hello cannot be read."""
        raw = os.environ.pop(upgrade.ENV_FD, None)
        if raw is None:
            return None
        try:
            channel = socket.socket(fileno=int(raw))
        except (ValueError, OSError) as err:
            raise HbforkError(f"{upgrade.ENV_FD}={raw!r}: not the upgrade channel ({err})") \
                from None
        os.set_inheritable(channel.fileno(), False)
        channel.settimeout(HELLO_TIMEOUT)
        try:
            data, fds, _, _ = socket.recv_fds(channel, upgrade.MAX_MESSAGE, MAX_FDS)
        except OSError as err:
            raise HbforkError(f"no hello from the old master: {err}") from None
        sockets = [socket.socket(fileno=fd) for fd in fds]
        try:
            hello = upgrade.decode_hello(data, len(fds))
        except ValueError as err:
            for sock in sockets:
                sock.close()
            adoption = cls(channel, Hello(0, "", None, None, ()), [])
            adoption.fail(str(err))
            raise HbforkError(str(err)) from None
        return cls(channel, hello, sockets)

    # --- before the first worker is forked

    def check(self, pidfile: str | None, control_socket: str | None) -> None:
        """The pid file and control socket cannot move in an upgrade: the old master's
        clients (systemd, keepalived's checks, operators) find the master through them."""
        for what, before, after in (("[proxy] pidfile", self.hello.pidfile, pidfile),
                                    ("[proxy] control_socket", self.hello.control_socket,
                                     control_socket)):
            if before != after:
                raise HbforkError(f"{what} changed from {before} to {after}: an upgrade "
                                  "keeps it (stop and start to change it)")

    def seed(self, bindings: Bindings) -> None:
        """Put the passed sockets in `bindings`, as if this master had bound them."""
        for passed, sock in zip(self.hello.sockets, self.sockets, strict=True):
            sock.setblocking(False)
            if passed.role == upgrade.LISTENER:
                bindings.listeners[passed.endpoint] = sock
            elif passed.role == upgrade.STATUS:
                bindings.status_endpoint, bindings.status_listener = passed.endpoint, sock
            elif passed.role == upgrade.HEARTBEAT:
                bindings.heartbeat_key = (passed.endpoint, passed.interface)
                bindings.heartbeat_sock = sock
            else:
                self.control = sock

    def copy_members(self, registry: Registry, admin: PoolAdmin) -> int:
        """Take the old master's member states from its table; returns how many members."""
        try:
            table = Table.attach(self.hello.table)
        except (OSError, ValueError) as err:
            log.warning("upgrade: cannot read the old master's table %s (%s); members start "
                        "as after a restart", self.hello.table, err)
            return 0
        try:
            records = table.members()
            pool_states = table.read_admin()
        finally:
            table.close()
        now = time.monotonic_ns()
        by_uid: dict[int, Endpoint] = {}
        for record in records:
            endpoint = Endpoint(record.ip, record.port)
            by_uid[record.uid] = endpoint
            registry.adopt(endpoint, record.ready, record.busy, record.first_seen,
                           record.last_seen, record.error_until, record.drained,
                           record.disabled, record.reason == ELIGIBLE, now)
        for (pool, uid), flags in pool_states.items():
            if uid in by_uid:
                admin.set(pool, by_uid[uid], drained=bool(flags & POOL_DRAINED),
                          disabled=bool(flags & POOL_DISABLED))
        log.info("upgrade: copied %d members from the table of master %d", len(records),
                 self.hello.parent)
        return len(records)

    # --- the conversation

    def fail(self, reason: str) -> None:
        """Tell the old master why this one cannot serve (it keeps serving)."""
        try:
            self.channel.send(upgrade.encode_failed(reason))
        except OSError:
            pass

    def announce(self, version: str, loaded: float, selector: selectors.BaseSelector,
                 on_handed: Callable[[], None]) -> None:
        """Our workers serve: ask the old master to hand over, and wait for its answer."""
        self.announced = True
        self.channel.setblocking(False)
        try:
            self.channel.send(upgrade.encode_ready(os.getpid(), version, loaded))
        except OSError:
            pass  # the old master is gone: its EOF below hands over all the same

        def on_message(sock: socket.socket) -> None:
            try:
                sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                pass
            # "handed", or EOF: an old master that died has nothing left to hand over.
            selector.unregister(sock)
            self.handed = True
            try:
                on_handed()
            finally:
                try:
                    sock.send(upgrade.TAKEN)
                except OSError:
                    pass
                sock.close()

        selector.register(self.channel, selectors.EVENT_READ, on_message)
