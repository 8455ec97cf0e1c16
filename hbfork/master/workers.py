"""The master's worker processes: fork, track, respawn with backoff, drain by generation.

Workers are forked with everything they need already open. After fork the child closes what
is only the master's (the heartbeat socket, the selector, other workers' report sockets, the
write end of the death pipe, listeners it will not serve) and calls `run_worker`, the proxy's
entry point handed in by the command line (the master never imports the proxy); it never
returns into the master's code.

A worker that dies is replaced at once, unless workers keep dying soon after birth: then the
next fork waits, doubling from 0.1 s up to 30 s, and the master says so in the log.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hbfork.core.config import Config
from hbfork.system import logs
from hbfork.system.fd_passing import Pair, drain, make_pairs
from hbfork.system.process import EXIT_BOOT_FAILURE
from hbfork.table.client_table import ClientTable
from hbfork.table.layout import STATE_READY
from hbfork.table.table import Table

# Runs a worker in the forked child and returns its exit code. Called with the keywords config,
# table, index, number, generation, listeners, report (the child's end of the report
# socketpair), death_fd, master_pid, status_listener and tls (the SSL contexts, made before
# fork so that every worker shares the session-ticket keys).
RunWorker = Callable[..., int]

READY_TIMEOUT = 30.0  # seconds a new worker may take to say "ready"
BOOT_GRACE = 5.0        # a worker dying sooner than this after birth counts as a boot failure
BACKOFF_START = 0.1
BACKOFF_MAX = 30.0
log = logs.log


@dataclass(eq=False)
class WorkerProcess:
    pid: int
    index: int          # its record in the table
    number: int         # 1..N within its generation
    generation: int
    sock: socket.socket  # master's end of the report socketpair
    born: float
    ready: bool = False
    draining: bool = False
    kill_at: float = 0.0  # hard deadline once draining or stopping

    @property
    def label(self) -> str:
        return f"worker {self.number} (pid {self.pid}, gen {self.generation})"


@dataclass
class Workers:
    table: Table
    run_worker: RunWorker
    death_fd: int
    master_only_fds: Callable[[], list[int]]  # closed in every child after fork
    register: Callable[[socket.socket, WorkerProcess], None]
    unregister: Callable[[socket.socket], None]
    processes: dict[int, WorkerProcess] = field(default_factory=dict)  # by pid
    # One eventfd per worker record, made before any fork so every worker holds all of them:
    # a worker that leaves room in the front queue to another's older waiter wakes it.
    wakeups: list[int] = field(default_factory=list)
    # One datagram socket pair per worker record, also made before any fork: a worker above
    # its share of connections passes what it accepts to a less loaded one (proxy.handoff).
    handoffs: list[Pair] = field(default_factory=list)
    failures: int = 0
    clients: ClientTable | None = None  # the per-client limit table every worker shares
    next_spawn_at: float = 0.0
    last_failure_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.wakeups:
            self.wakeups = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                            for _ in range(self.table.worker_capacity)]
        if not self.handoffs:
            self.handoffs = make_pairs(self.table.worker_capacity)

    # --- queries

    def generation(self, generation: int) -> list[WorkerProcess]:
        return [w for w in self.processes.values() if w.generation == generation]

    def serving(self, generation: int) -> list[WorkerProcess]:
        return [w for w in self.generation(generation) if not w.draining]

    # --- fork

    def spawn(self, config: Config, listeners: list[socket.socket],
              status_listener: socket.socket | None, number: int, generation: int,
              tls: object = None) -> bool:
        """Fork one worker; False when it must wait (backoff or no free table record)."""
        now = time.monotonic()
        if now < self.next_spawn_at:
            return False
        if self.clients is None:  # made once, before the first fork: every worker shares it
            self.clients = ClientTable(config.limits.slots, self.table.worker_capacity,
                                       config.proxy.max_connections)
        taken = {w.index for w in self.processes.values()}
        index = self.table.workers.free_index(taken)
        if index is None:
            log.error("no free worker record in the table (%d in use); not forking",
                      len(taken))
            return False
        try:
            parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as err:
            self._fork_failed(err)
            return False
        record = self.table.workers.record(index)
        record.claim(number, generation)
        master_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as err:  # EAGAIN/ENOMEM: out of processes or memory, for now
            record.free()
            parent_end.close()
            child_end.close()
            self._fork_failed(err)
            return False
        if pid == 0:  # pragma: no cover - runs in the child, measured by integration tests
            code = 1
            try:
                parent_end.close()
                for fd in self.master_only_fds():
                    _close_quietly(fd)
                for other in self.processes.values():
                    other.sock.close()
                keep = {s.fileno() for s in listeners}
                if status_listener is not None:
                    keep.add(status_listener.fileno())
                for fd in _inherited_listener_fds(keep):
                    _close_quietly(fd)
                child_end.setblocking(False)
                code = self.run_worker(
                    config=config, table=self.table, index=index, number=number,
                    generation=generation, listeners=listeners, report=child_end,
                    death_fd=self.death_fd, master_pid=master_pid,
                    status_listener=status_listener, tls=tls, wakeups=self.wakeups,
                    client_table=self.clients, handoffs=self.handoffs)
            except BaseException:
                log.exception("worker %d crashed", number)
            finally:
                os._exit(code)
        record.set_pid(pid)
        child_end.close()
        parent_end.setblocking(False)
        worker = WorkerProcess(pid, index, number, generation, parent_end, now)
        self.processes[pid] = worker
        self.register(parent_end, worker)
        log.info("%s started", worker.label)
        return True

    def _fork_failed(self, err: OSError) -> None:
        self.last_failure_at = time.monotonic()
        delay = self._back_off()
        log.error("cannot fork a worker (%s); next try in %.1fs", os.strerror(err.errno or 0),
                  delay)

    def _back_off(self) -> float:
        delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** self.failures)
        self.failures += 1
        self.next_spawn_at = time.monotonic() + delay
        return delay

    # --- death

    def reap(self, others: Callable[[int, int], None] | None = None) -> list[WorkerProcess]:
        """Collect every exited worker; returns them (the caller decides on respawn). Other
        children (the new master of an upgrade) go to `others(pid, status)`."""
        gone = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.processes.pop(pid, None)
            if worker is None:
                if others is not None:
                    others(pid, status)
                continue
            self._forget(worker, status)
            gone.append(worker)
        return gone

    def _forget(self, worker: WorkerProcess, status: int) -> None:
        self.unregister(worker.sock)
        worker.sock.close()
        self.table.workers.retire(worker.index)
        if worker.index < len(self.handoffs):
            # Connections handed to it as it exited: nobody will serve them; closed, not hung
            lost = drain(self.handoffs[worker.index][0])
            if lost:
                log.warning("%s exited with %d handed-over connection(s) unread; closed them",
                            worker.label, lost)
        if self.clients is not None:  # a killed worker could not uncount its connections
            self.clients.forget_worker(worker.index)
        lived = time.monotonic() - worker.born
        how = _describe_status(status)
        expected = worker.draining
        if expected:
            log.info("%s exited after draining (%s)", worker.label, how)
            return
        log.error("%s died unexpectedly: %s, after %.1fs", worker.label, how, lived)
        boot_failure = lived < BOOT_GRACE or (os.WIFEXITED(status)
                                              and os.WEXITSTATUS(status) == EXIT_BOOT_FAILURE)
        if boot_failure:
            self.last_failure_at = time.monotonic()
            delay = self._back_off()
            log.error("workers are dying at boot (%d in a row); next fork in %.1fs",
                      self.failures, delay)

    def healthy(self) -> None:
        """Reset the backoff once a worker forked after the last failure has been ready for
        BOOT_GRACE seconds (a healthy older worker proves nothing about new ones)."""
        now = time.monotonic()
        if self.failures and any(w.ready and w.born > self.last_failure_at
                                 and now - w.born >= BOOT_GRACE
                                 for w in self.processes.values()):
            log.info("workers are starting normally again")
            self.failures = 0
            self.next_spawn_at = 0.0

    # --- stopping

    def drain(self, worker: WorkerProcess, timeout: float) -> None:
        if worker.draining:
            return
        worker.draining = True
        worker.kill_at = time.monotonic() + timeout + 1.0
        self.send(worker, b"drain")

    def stop_fast(self, worker: WorkerProcess) -> None:
        worker.draining = True
        worker.kill_at = time.monotonic() + 2.0
        self.send(worker, b"stop")
        signal_quietly(worker.pid, signal.SIGQUIT)

    def send(self, worker: WorkerProcess, message: bytes) -> None:
        try:
            worker.sock.send(message)
        except OSError:
            pass  # it is dying; reap() will see it

    def kill_stuck(self, worker_timeout: Callable[[WorkerProcess], float]) -> None:
        """Kill ready workers whose loop has not ticked for their generation's worker_timeout,
        and workers not ready READY_TIMEOUT after birth (they get replaced)."""
        now, now_ns = time.monotonic(), time.monotonic_ns()
        for worker in self.processes.values():
            identity = self.table.workers.record(worker.index).identity()
            tick, state = identity.tick_ns, identity.state
            if state == STATE_READY and tick and now_ns - tick > worker_timeout(worker) * 1e9:
                log.error("%s has not ticked for %.0fs; killing it", worker.label,
                          (now_ns - tick) / 1e9)
                signal_quietly(worker.pid, signal.SIGKILL)
            elif not worker.ready and not worker.draining and now - worker.born > READY_TIMEOUT:
                log.error("%s is not ready after %.0fs; killing it", worker.label,
                          now - worker.born)
                signal_quietly(worker.pid, signal.SIGKILL)

    def kill_overdue(self) -> None:
        now = time.monotonic()
        for worker in list(self.processes.values()):
            if worker.kill_at and now >= worker.kill_at:
                log.warning("%s did not finish in time; killing it", worker.label)
                signal_quietly(worker.pid, signal.SIGKILL)
                worker.kill_at = 0.0


def signal_quietly(pid: int, signum: int) -> None:
    """Signal a worker that may have exited already (reap() collects it)."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _inherited_listener_fds(keep: set[int]) -> list[int]:
    """Listening TCP sockets the child inherited but will not serve (e.g. a removed listener
    that old workers still drain): closing them here keeps them from outliving their use."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep or fd < 3:
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            listening = sock.type == socket.SOCK_STREAM and \
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = False
        finally:
            sock.detach()
        if listening:
            out.append(fd)
    return out


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        return f"killed by {signal.Signals(signum).name}"
    return f"exit code {os.WEXITSTATUS(status)}"
