"""A worker process: one epoll loop that accepts client connections and relays them to members.

The master forks workers after binding every socket; a worker inherits the listeners, the
mapping of the shared table, its end of a report socketpair and the read end of the master's
death pipe. Accepting is the Acceptor's job (proxy.acceptor); each connection becomes a session
(HTTP or TCP) that sees the worker only as a SessionContext (proxy.context).

Messages on the report socket: to the master "ready", "error SLOT UID REASON"; from the master
"drain" (stop accepting, finish what is in flight) and "stop" (close everything now).
"""

from __future__ import annotations

import os
import signal
import socket
import time

import setproctitle

from hbfork.core import reports
from hbfork.core.config import Config
from hbfork.core.http11 import Limits
from hbfork.core.lean import LeanCache
from hbfork.core.ratelimit import LogLimiter
from hbfork.ops.accesslog import AccessLog, open_access_log
from hbfork.proxy.acceptor import Acceptor
from hbfork.proxy.admission import Admission, SessionFactory
from hbfork.proxy.client_limits import ClientLimits
from hbfork.proxy.connect import start_connect
from hbfork.proxy.context import Exchange, Session, SessionContext
from hbfork.proxy.handoff import Handoff
from hbfork.proxy.http.router import Router
from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.keepalive import ConnectionPool
from hbfork.proxy.loop import READ, Loop
from hbfork.proxy.no_answer import no_answer_watch
from hbfork.proxy.queue import FrontQueue, Waiter
from hbfork.proxy.status_server import StatusServer
from hbfork.proxy.tcp import TcpSession
from hbfork.proxy.upstreams import PoolView, Target, Upstreams
from hbfork.system import logs
from hbfork.system.fd_passing import Pair
from hbfork.system.process import EXIT_BOOT_FAILURE, set_parent_death_signal
from hbfork.system.tls import TlsContexts
from hbfork.table.client_table import ClientTable
from hbfork.table.layout import STATE_DRAINING, STATE_READY
from hbfork.table.table import Table

log = logs.log



class Worker:
    """One worker process; also the SessionContext its sessions run in."""

    def __init__(self, config: Config, table: Table, index: int, number: int, generation: int,
                 listeners: list[socket.socket], report: socket.socket, death_fd: int,
                 master_pid: int, status_listener: socket.socket | None = None,
                 tls: TlsContexts | None = None, wakeups: list[int] | None = None,
                 client_table: ClientTable | None = None,
                 handoffs: list[Pair] | None = None) -> None:
        self.config = config
        self.table = table
        self.index = index
        self.number = number
        self.generation = generation
        self.report = report
        self.death_fd = death_fd
        self.master_pid = master_pid
        self.status_listener = status_listener
        self.status_server: StatusServer | None = None
        self.tls = tls
        self.listens = config.listeners  # what each listener is (the same order)
        self.record = record = table.workers.record(index)
        # The counters sessions bump (SessionContext) go straight to the record's methods:
        # no call through the worker on the per-request and per-read paths.
        self.count_no_member = record.count_no_member
        self.count_retry = record.count_retry
        self.count_fast_path = record.count_fast_path
        self.count_bytes = record.count_bytes
        self.count_upstream_timeout = record.count_upstream_timeout
        self.count_client_error = record.count_client_error
        self.count_slow = record.count_slow
        self.upstreams = Upstreams(table, record.words, config)
        self.client_limits = ClientLimits(config.limits, client_table, record.words,
                                          config.proxy.mode == "tcp", index) \
            if client_table is not None and config.limits.enabled else None
        for name, context in (tls.members.items() if tls else ()):
            self.upstreams.pools[name].tls_context = context
        self.router = Router(config, self.upstreams)
        self.loop = Loop()
        self.wakeups = wakeups or []  # eventfds by worker record index (the master's)
        self.queue = FrontQueue(self.loop, table.workers, record,
                                lambda: self.upstreams.records, self._wake_worker,
                                self.upstreams.pools.values())
        self.upstreams.on_room = self.queue.soon
        self.upstreams.on_eject = self._ask_ejection
        self.buffer = memoryview(bytearray(256 * 1024))
        self.sessions: set[Session] = set()
        self.draining = False
        self.drain_deadline = 0.0
        self.stopping = False
        self._signals: list[int] = []
        self._title = ""
        self._title_at = 0.0
        self.context: SessionContext = self  # what sessions see of the worker
        self._new_session: SessionFactory = TcpSession if config.proxy.mode == "tcp" \
            else HttpSession
        self.http = http = config.http
        self.limits = Limits(http.max_request_line, http.max_header_size, http.max_body_size)
        self.lean = LeanCache(http.max_request_line)
        self.conn_pool = ConnectionPool(self.loop, http.pool_size, http.pool_idle_timeout)
        reopening, loop = self.upstreams.reopening, self.loop
        self.conn_pool.member_closed = lambda slot: reopening.closed(slot, loop.now)
        self.access_log: AccessLog | None = None
        self._log_limiter = LogLimiter(5.0)
        self.admission = Admission(self.loop, record, config, tls, self.context,
                                   self._new_session, self.sessions, self.client_limits,
                                   self._back_off)
        self.handoff = Handoff(self.loop, table.workers, index, generation, handoffs,
                               self._adopt) if handoffs and index < len(handoffs) else None
        self.acceptor = Acceptor(self.loop, listeners, config.proxy.max_connections,
                                 lambda: len(self.sessions), self.admission.open_session,
                                 record.count_accepted, self.handoff)
        self.no_answer = no_answer_watch(self.loop, self.upstreams, config, self.sessions,
                                         self._ask_ejection)

    # --- process setup

    def run(self) -> int:
        try:
            self._setup()
        except Exception:
            log.exception("worker %d failed to start", self.number)
            return EXIT_BOOT_FAILURE
        self._send(reports.encode(reports.Ready()))
        log.debug("worker %d gen %d ready", self.number, self.generation)
        try:
            while not self._finished():
                self.loop.run_once(0.5)
                self._housekeeping()
        finally:  # leaving with connections open (drain deadline, a crash): uncount them
            if self.client_limits is not None:
                self.client_limits.release_all()
        if self.access_log is not None:
            self.access_log.close()
        return 0

    def _setup(self) -> None:
        logs.set_role(f"worker {self.number}")
        set_parent_death_signal(signal.SIGUSR2)
        if os.getppid() != self.master_pid:
            self._master_gone()
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup = (read_end, write_end)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                       signal.SIGUSR2):
            signal.signal(signum, lambda signum, frame: self._signals.append(signum))
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_IGN if signum != signal.SIGCHLD else signal.SIG_DFL)
        self.loop.add(read_end, READ, self._on_wakeup)
        self.loop.add(self.death_fd, READ, self._on_death_pipe)
        if self.index < len(self.wakeups):
            self.loop.add(self.wakeups[self.index], READ, self._on_woken)
        self.loop.add(self.report.fileno(), READ, self._on_master_message)
        access = self.config.resolve(self.config.log.access)
        if access:
            self.access_log = open_access_log(self.config, access)
        self.acceptor.start()
        if self.handoff is not None:
            self.handoff.start()
        if self.no_answer is not None:
            self.no_answer.start()
        if self.status_listener is not None:
            self.status_server = StatusServer(
                self.loop, self.table, self.status_listener, self.config.status.allow,
                self.limits, self.config, self.tls)
        self.record.set_state(STATE_READY)
        self._update_title()

    def _back_off(self, err: OSError) -> None:
        self.acceptor.back_off(err)  # out of descriptors: accept again later

    # --- what sessions see of the worker (SessionContext)

    def connect(self, target: Target) -> tuple[socket.socket, int]:
        return start_connect(target)

    def enqueue(self, pool: PoolView, waiter: Waiter) -> bool:
        return self.queue.add(pool, waiter, self.upstreams.records)

    def leave_queue(self, pool: PoolView, waiter: Waiter, reason: str) -> None:
        self.queue.leave(pool, waiter, reason)

    def session_closed(self, session: Session) -> None:
        if self.access_log is not None and type(session) is TcpSession:
            self.access_log.connection(session.log_fields(self.loop.now))
        self.sessions.discard(session)
        if self.client_limits is not None:
            self.client_limits.drop(session)
        self.record.set_connections(len(self.sessions))
        self.acceptor.connection_closed()

    def member_failed(self, target: Target, reason: str, retry_ms: int | None = None) -> None:
        """A connect to `target` failed: count it and have the master mark it in error."""
        self.record.count_connect_failure()
        self.upstreams.connect_failed(target)
        more = self._log_limiter.note((target.slot, target.uid), self.loop.now)
        if more is not None:
            log.warning("member %s: connect failed (%s)%s", target.label, reason, more)
        self._send(reports.encode(reports.ConnectFailed(target.slot, target.uid, reason,
                                                        retry_ms)))

    def report_beat(self, ip: str, body: bytes) -> bool:
        """A heartbeat POSTed to [heartbeat] http_path: the master applies it."""
        try:
            self.report.send(reports.encode(reports.Beat(ip, body)))
        except OSError:
            return False  # full (the master is behind) or gone
        return True

    def _wake_worker(self, index: int) -> None:
        """Another worker's waiter is owed the room just made: wake it now."""
        if 0 <= index < len(self.wakeups) and index != self.index:
            try:
                os.eventfd_write(self.wakeups[index], 1)
            except OSError:
                pass  # its counter is full: it is being woken anyway

    def _on_woken(self, mask: int) -> None:
        try:
            os.eventfd_read(self.wakeups[self.index])
        except OSError:
            pass  # another read took it: the dispatch below is what matters
        self.queue.dispatch()

    def _adopt(self, client: socket.socket, client_ip: str, index: int) -> None:
        """A connection another worker accepted and handed over (see proxy.handoff)."""
        if index >= len(self.listens):
            client.close()  # not a listener of ours: never happens within a generation
            return
        self.acceptor.adopt(client, client_ip, index)

    def _ask_ejection(self, target: Target, cause: int) -> None:
        """The detector says `target` fails: the master decides for the whole front."""
        self._send(reports.encode(reports.Eject(target.slot, target.uid, cause)))

    def resource_error(self, err: OSError) -> None:
        """A local resource ran out (fds, memory) while serving a connection."""
        more = self._log_limiter.note("resources", self.loop.now)
        if more is not None:
            log.error("cannot open a connection to a member: %s%s",
                      os.strerror(err.errno or 0), more)

    def request_done(self, exchange: Exchange, status: int, target: Target | None) -> None:
        """One HTTP request ended (status 0: the client left before any response)."""
        decision = exchange.decision
        if decision is None:
            self.record.count_request(status)
        else:
            self.record.count_request(status, decision.pool, decision.route,
                                      exchange.sticky_outcome)
        started = exchange.exchange_started
        now = time.monotonic()
        if started:
            self.upstreams.observe_latency(now - started)
        if self.access_log is not None:
            self.access_log.request(exchange, status, target, now)

    # --- master and signals

    def _send(self, message: bytes) -> None:
        try:
            self.report.send(message)
        except (BlockingIOError, OSError):
            pass  # the master is busy or gone; errors are advisory, a dead master is noticed

    def _on_master_message(self, mask: int) -> None:
        while True:
            try:
                message = self.report.recv(256)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._master_gone()
            if message == b"drain":
                self._begin_drain()
            elif message == b"stop":
                self._stop_now()

    def _on_death_pipe(self, mask: int) -> None:
        self._master_gone()

    def _master_gone(self) -> None:
        """The master died without stopping us: unlink the table it can no longer unlink."""
        self.table.unlink()
        os._exit(0)

    def _on_wakeup(self, mask: int) -> None:
        try:
            os.read(self._wakeup[0], 512)
        except BlockingIOError:
            pass
        signals, self._signals = self._signals, []
        for signum in signals:
            if signum == signal.SIGTERM:
                self._begin_drain()
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                self._stop_now()
            elif signum == signal.SIGUSR1:
                logs.reopen()
                if self.access_log is not None:
                    self.access_log.reopen()
            elif signum == signal.SIGUSR2:
                self._master_gone()

    def _begin_drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        self.drain_deadline = self.loop.now + self.config.proxy.shutdown_timeout
        self.record.set_state(STATE_DRAINING)
        self.acceptor.close(self.config.proxy.backlog)
        if self.status_server is not None:
            # A status request this worker accepted while it drains would be cut when it
            # exits (a reset, seen by a client polling /status.json across a reload).
            self.status_server.close()
        for session in list(self.sessions):
            session.drain()
        self.conn_pool.close_all()
        self._update_title()

    def _stop_now(self) -> None:
        self.stopping = True
        for session in list(self.sessions):
            session.close()
        self.conn_pool.close_all()

    def _finished(self) -> bool:
        if self.stopping:
            return True
        if self.draining:
            answering = self.status_server is not None and self.status_server.open
            return (not self.sessions and not answering) or self.loop.now >= self.drain_deadline
        return False

    # --- periodic

    def _housekeeping(self) -> None:
        now = self.loop.now
        self.record.tick(time.monotonic_ns())
        if self.access_log is not None:
            self.access_log.tick(now)
        if now - self._title_at >= 1.0:
            self._update_title()
            if self.client_limits is not None:
                self.client_limits.sweep()

    def _update_title(self) -> None:
        self._title_at = self.loop.now
        state = "draining" if self.draining else "ready"
        title = (f"hbfork: worker {self.number} gen {self.generation} {state} "
                 f"conns={len(self.sessions)}")
        if title != self._title:
            self._title = title
            setproctitle.setproctitle(title)


def run_worker(**kwargs: object) -> int:
    """Build and run a worker in a freshly forked child (the master's entry point into the
    proxy; the keywords are Worker's parameters). Returns the exit code."""
    return Worker(**kwargs).run()  # type: ignore[arg-type]
