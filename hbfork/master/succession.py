"""The master's part in a binary upgrade, on both sides (a mixin of master.master.Master).

Old master: SIGUSR2 or `ctl upgrade` starts a new master (master.upgrade); when it serves,
this one hands over the heartbeats, the control socket and the pid file, then drains its
workers as a graceful stop does. New master (started with an Adoption): once all its workers
are ready it asks for the hand-over, and takes those duties when the old master answers.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import TYPE_CHECKING

from hbfork import __version__
from hbfork.core.errors import HbforkError
from hbfork.core.pool_admin import PoolAdmin
from hbfork.core.upgrade import Reply
from hbfork.master.upgrade import new_master_argv
from hbfork.ops.control import ControlServer
from hbfork.system import logs, sdnotify
from hbfork.system.logs import describe_error
from hbfork.system.pidfile import claim

if TYPE_CHECKING:
    from hbfork.core.config import Config
    from hbfork.core.members import Registry
    from hbfork.master.adoption import Adoption
    from hbfork.master.bindings import Bindings
    from hbfork.master.generations import Generations
    from hbfork.master.handover import Handover
    from hbfork.master.monitor import Monitor
    from hbfork.master.upgrade import Upgrade
    from hbfork.master.workers import Workers
    from hbfork.table.table import Table

CODE_LOADED = time.time()  # when this process loaded hbfork's code (moves on upgrade only)
log = logs.log


class Succession:
    # Provided by Master.
    pid: int
    config: Config
    selector: selectors.DefaultSelector
    bindings: Bindings
    table: Table | None
    registry: Registry | None
    admin: PoolAdmin
    monitor: Monitor | None
    workers: Workers | None
    generations: Generations | None
    control: ControlServer | None
    stopping: str | None
    adoption: Adoption | None
    upgrade: Upgrade
    handover: Handover
    handed_over: bool

    def _control(self, line: str) -> str | None:
        raise NotImplementedError

    def _stop(self, how: str) -> None:
        raise NotImplementedError

    def _unregister(self, sock: socket.socket) -> None:
        raise NotImplementedError

    # --- old master

    def _begin_upgrade(self) -> str | None:
        """SIGUSR2 or `ctl upgrade`: start a new master on the code installed now. Returns an
        error reply, or None: the reply follows when the new master serves or fails."""
        assert self.table is not None
        if self.stopping:
            return "error the master is stopping"
        if self.adoption is not None and not self.adoption.handed:
            return "error this master is itself still taking over from an upgrade"
        if self.handover.active:
            return "error handing this front over (drain-front): it is about to stop"
        if self.upgrade.active:
            return None  # the caller gets the answer of the upgrade in flight
        log.info("upgrade: starting a new master: %s", " ".join(new_master_argv(
            self.config.path)))
        try:
            self.upgrade.begin(self.config, self.bindings,
                               self.control.sock if self.control else None, self.table.name)
        except (OSError, HbforkError) as err:
            log.error("upgrade failed; master %d goes on serving: cannot start a new master: "
                      "%s", self.pid, describe_error(err))
            return (f"error upgrade failed: cannot start a new master: {describe_error(err)}; "
                    f"master {self.pid} goes on serving")
        return None

    def _upgrade_ready(self, reply: Reply) -> None:
        """The new master's workers serve: give it the heartbeats, the control socket and the
        pid file, then drain our workers as a graceful stop does."""
        assert self.monitor is not None
        self._unregister(self.bindings.heartbeat)
        self.monitor.publish()  # the last heartbeats we took, for the new master's copy
        if self.control is not None:
            self.control.hand_over()
        self.upgrade.hand_over()
        self.handed_over = True
        log.info("upgrade: handing over to master %d (hbfork %s)", reply.pid, reply.version)
        self._stop("graceful")

    def _upgrade_taken(self) -> None:
        """The new master has the pid file and the sockets: `ctl upgrade` may answer."""
        reply = self.upgrade.reply
        assert reply is not None
        text = (f"upgraded: master {reply.pid} (hbfork {reply.version}) serves; master "
                f"{self.pid} drains its workers and exits")
        log.info("%s", text)
        if self.control is not None:
            self.control.answer_deferred("ok " + text)

    def _upgrade_failed(self, reason: str) -> None:
        log.error("upgrade failed; master %d goes on serving: %s", self.pid, reason)
        if self.control is not None:
            self.control.answer_deferred(f"error upgrade failed: {reason}; master {self.pid} "
                                         "goes on serving")

    # --- new master

    def _announce_when_serving(self) -> None:
        """New master of an upgrade: once every worker serves, ask the old one to hand over."""
        assert self.adoption is not None and self.generations is not None
        assert self.workers is not None
        current = self.generations.current
        if current is None or self.stopping:
            return
        if sum(w.ready for w in self.workers.serving(current.number)) >= current.size:
            log.info("upgrade: %d workers serving; asking master %d to hand over",
                     current.size, self.adoption.hello.parent)
            self.adoption.announce(__version__, CODE_LOADED, self.selector, self._take_over)

    def _take_over(self) -> None:
        """The old master stopped reading heartbeats and control requests: we do from now."""
        assert self.adoption is not None and self.monitor is not None
        assert self.registry is not None
        self.adoption.copy_members(self.registry, self.admin)  # what it heard meanwhile
        self.monitor.publish()
        self.selector.register(self.bindings.heartbeat, selectors.EVENT_READ,
                               self.monitor.on_readable)
        config = self.config
        if config.control_socket:
            self.control = ControlServer(config.control_socket, self.selector, self._control,
                                         adopted=self.adoption.control)
        try:
            if config.pidfile:
                claim(config.pidfile, self.pid, replacing=self.adoption.hello.parent)
        except (OSError, HbforkError) as err:
            log.error("upgrade: cannot write the pid file: %s", describe_error(err))
        sdnotify.notify(f"MAINPID={self.pid}\nREADY=1")
        log.info("upgrade complete: master %d (hbfork %s) serving; master %d drains", self.pid,
                 __version__, self.adoption.hello.parent)
