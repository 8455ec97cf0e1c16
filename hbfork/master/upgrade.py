"""Binary upgrade, the running (old) master's side: SIGUSR2 or `hbfork ctl upgrade`.

The master forks a child that execs `python -m hbfork run -c CONFIG` (the interpreter at
sys.executable, so an upgraded package, Python or OpenSSL is what runs), and hands it every
socket it serves on over a SOCK_SEQPACKET pair with `socket.send_fds`: client listeners, the
heartbeat socket, the status listener and the control listener. No socket is closed and none
is bound twice, so no client is refused at any point. The conversation is in
hbfork.core.upgrade; the new master's side in hbfork.master.adoption.

Until the new master says "ready" (its workers accept on the same listeners), this master
serves exactly as before; if the new one fails, exits or does not get ready in time, it is
stopped and this master says why (log, and the waiting `ctl upgrade`). On "ready" this master
stops reading heartbeats and control requests, answers "handed", and drains its workers as a
graceful stop does, leaving the pid file and control socket to the new master.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable

from hbfork.core import upgrade
from hbfork.core.config import Config
from hbfork.core.errors import HbforkError
from hbfork.core.upgrade import Hello, Passed, Reply
from hbfork.master.bindings import Bindings
from hbfork.system import logs

READY_TIMEOUT = 60.0  # seconds from the fork until the new master's workers must be ready
EXIT_WAIT = 2.0       # seconds to wait for the exit status of a new master that went away
TAKE_TIMEOUT = 10.0   # seconds to wait for "taken" after "handed"
log = logs.log


def new_master_argv(config_path: str) -> list[str]:
    """The command the new master runs: the installed code, as it is on disk now."""
    return [sys.executable, "-m", "hbfork", "run", "-c", os.path.abspath(config_path)]


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


class Upgrade:
    """One upgrade in flight. `on_ready(reply)`, `on_failed(reason)` and `on_taken()` (the
    new master has taken over after "handed") are the master's."""

    def __init__(self, selector: selectors.BaseSelector, on_ready: Callable[[Reply], None],
                 on_failed: Callable[[str], None], on_taken: Callable[[], None]) -> None:
        self.selector = selector
        self.on_ready = on_ready
        self.on_failed = on_failed
        self.on_taken = on_taken
        self.pid = 0
        self.channel: socket.socket | None = None
        self.closed_early = False  # the new master went away before "ready"
        self.handed = False        # "handed" sent; waiting for "taken"
        self.reply: Reply | None = None
        self.deadline = 0.0

    @property
    def active(self) -> bool:
        """Started and neither failed nor handed over yet."""
        return (self.channel is not None and not self.handed) or self.closed_early

    def begin(self, config: Config, bindings: Bindings, control: socket.socket | None,
              table: str) -> None:
        """Fork and exec the new master and pass it the sockets; raises OSError or
        HbforkError (nothing changed) if that cannot be done."""
        passed, fds = _passed_sockets(config, bindings, control)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if pid == 0:  # pragma: no cover - the child execs at once
            _exec(theirs, new_master_argv(config.path))
        theirs.close()
        self.pid, self.channel, self.handed, self.reply = pid, ours, False, None
        self.deadline = time.monotonic() + READY_TIMEOUT
        hello = Hello(os.getpid(), table, config.pidfile, config.control_socket, passed)
        try:
            socket.send_fds(ours, [upgrade.encode_hello(hello)], fds)
        except OSError as err:
            # The child is gone already: most likely its exec failed, and it said why.
            reason = _last_words(ours) or f"cannot pass the sockets: {err.strerror}"
            os.kill(pid, signal.SIGKILL)  # reaped with the workers; it has nothing of ours
            self.pid = 0
            self._close()
            raise HbforkError(reason) from None
        ours.setblocking(False)
        self.selector.register(ours, selectors.EVENT_READ, self._on_message)

    def _on_message(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(upgrade.MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if self.handed:  # "taken", or EOF: either way the new master is on its own now
            self._close()
            self.handed = False
            self.on_taken()
            return
        if not data:
            # It exited (or closed the pair): wait a moment for its exit status, the better
            # reason (see child_exited); expire() gives up waiting.
            self._close()
            self.closed_early = True
            self.deadline = time.monotonic() + EXIT_WAIT
            return
        reply = upgrade.decode_reply(data)
        if reply.ok:
            self.reply = reply
            self.on_ready(reply)
        else:
            self.fail(reply.reason)

    def hand_over(self) -> None:
        """Tell the new master it owns heartbeats, control and the pid file now."""
        assert self.channel is not None
        try:
            self.channel.send(upgrade.HANDED)
        except OSError:
            pass  # it died this instant: EOF follows, and its own exit says so in the log
        self.handed = True
        self.deadline = time.monotonic() + TAKE_TIMEOUT
        self.pid = 0  # no longer ours to stop: it outlives us

    def child_exited(self, pid: int, status: int) -> None:
        """The master reaped a child that is not a worker: ours, if the pid matches."""
        if pid == self.pid:
            self.pid = 0
            if self.active:
                self.fail(f"the new master exited ({describe_exit(status)}) before its workers "
                          "were ready; its log lines say why")

    def expire(self, now: float) -> None:
        if self.handed and now >= self.deadline:
            self._close()
            self.handed = False
            self.on_taken()
        elif self.active and now >= self.deadline:
            self.fail("the new master closed the upgrade channel before it was ready"
                      if self.closed_early else
                      f"the new master was not serving after {READY_TIMEOUT:.0f}s")

    def fail(self, reason: str) -> None:
        """Give up: stop the new master (its workers follow it), keep serving, say why."""
        if self.pid:
            # SIGKILL, not TERM: a half-started master must not linger, and its workers exit
            # within a millisecond of it (death pipe) without touching our listeners.
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._close()
        self.closed_early = False
        self.on_failed(reason)

    def _close(self) -> None:
        if self.channel is not None:
            try:
                self.selector.unregister(self.channel)
            except (KeyError, ValueError):
                pass
            self.channel.close()
            self.channel = None


def _passed_sockets(config: Config, bindings: Bindings, control: socket.socket | None
                    ) -> tuple[tuple[Passed, ...], list[int]]:
    passed, fds = [], []
    for endpoint, sock in bindings.listeners.items():
        passed.append(Passed(upgrade.LISTENER, str(endpoint)))
        fds.append(sock.fileno())
    if bindings.status_listener is not None and bindings.status_endpoint is not None:
        passed.append(Passed(upgrade.STATUS, str(bindings.status_endpoint)))
        fds.append(bindings.status_listener.fileno())
    if bindings.heartbeat_sock is not None and bindings.heartbeat_key is not None:
        endpoint, interface = bindings.heartbeat_key
        passed.append(Passed(upgrade.HEARTBEAT, str(endpoint), interface))
        fds.append(bindings.heartbeat_sock.fileno())
    if control is not None and config.control_socket:
        passed.append(Passed(upgrade.CONTROL, config.control_socket))
        fds.append(control.fileno())
    return tuple(passed), fds


def _last_words(channel: socket.socket) -> str:
    """What a new master that died at once said on its way out (a failed exec), if anything."""
    try:
        channel.setblocking(False)
        reply = upgrade.decode_reply(channel.recv(upgrade.MAX_MESSAGE))
    except OSError:
        return ""
    return reply.reason


def _exec(channel: socket.socket, argv: list[str]) -> None:  # pragma: no cover - child
    """In the forked child: keep only the channel across exec (every other descriptor is
    close-on-exec, as Python opens them) and become the new master."""
    try:
        os.set_inheritable(channel.fileno(), True)
        env = dict(os.environ)
        env[upgrade.ENV_FD] = str(channel.fileno())
        os.execve(argv[0], argv, env)
    except OSError as err:  # e.g. the interpreter is not executable by [proxy] user
        try:
            channel.send(upgrade.encode_failed(f"cannot execute {argv[0]} as uid "
                                               f"{os.getuid()}: {err.strerror}"))
        except OSError:
            pass
    finally:
        os._exit(127)
