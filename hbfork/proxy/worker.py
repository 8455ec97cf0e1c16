"""A worker process: one epoll loop that accepts client connections and relays them to members.

The master forks workers after binding every socket; a worker inherits the listeners, the
mapping of the shared table, its end of a report socketpair and the read end of the master's
death pipe. Accepting is the Acceptor's job (proxy.acceptor); each connection becomes a session
(HTTP or TCP) that sees the worker only as a SessionContext (proxy.context).

Messages on the report socket: to the master "ready", "error SLOT UID REASON"; from the master
"drain" (stop accepting, finish what is in flight) and "stop" (close everything now).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from collections.abc import Callable

import setproctitle

from hbfork.core import reports
from hbfork.core.config import Config
from hbfork.core.http11 import Limits
from hbfork.core.lean import LeanCache
from hbfork.core.ratelimit import LogLimiter
from hbfork.core.tls_settings import ListenSettings
from hbfork.ops.accesslog import AccessLog
from hbfork.proxy.acceptor import Acceptor
from hbfork.proxy.connect import start_connect
from hbfork.proxy.context import Exchange, Session
from hbfork.proxy.http.router import Decision, Router
from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.http.state import STICKY_HIT
from hbfork.proxy.keepalive import ConnectionPool
from hbfork.proxy.loop import READ, Loop
from hbfork.proxy.queue import FrontQueue, Waiter
from hbfork.proxy.status_server import StatusServer
from hbfork.proxy.tcp import TcpSession
from hbfork.proxy.tls import Handshake, wrap
from hbfork.proxy.upstreams import PoolView, Target, Upstreams
from hbfork.system import logs
from hbfork.system.process import EXIT_BOOT_FAILURE, set_parent_death_signal
from hbfork.system.tls import TlsContexts
from hbfork.table.layout import (
    MAX_ROUTES,
    PC_NO_MEMBER,
    PC_STATUS_CLASS,
    PC_STICKY,
    PC_STICKY_LOST,
    RC_ERRORS,
    RC_REQUESTS,
    STATE_DRAINING,
    STATE_READY,
    WK_ACCEPTED,
    WK_BYTES_IN,
    WK_BYTES_OUT,
    WK_CLIENT_ERRORS,
    WK_CONNECT_FAILURES,
    WK_CONNECTIONS,
    WK_FAST_PATH,
    WK_NO_MEMBER,
    WK_REQUESTS,
    WK_RETRIES,
    WK_STATE,
    WK_STATUS_CLASS,
    WK_TICK_NS,
    WK_UPSTREAM_TIMEOUTS,
    pool_counters_at,
    route_counters_at,
)
from hbfork.table.table import Table

log = logs.log

SessionFactory = Callable[["Worker", socket.socket, str, ListenSettings], Session]


class Worker:
    """One worker process; also the SessionContext its sessions run in."""

    def __init__(self, config: Config, table: Table, index: int, number: int, generation: int,
                 listeners: list[socket.socket], report: socket.socket, death_fd: int,
                 master_pid: int, status_listener: socket.socket | None = None,
                 tls: TlsContexts | None = None) -> None:
        self.config = config
        self.table = table
        self.index = index
        self.number = number
        self.generation = generation
        self.report = report
        self.death_fd = death_fd
        self.master_pid = master_pid
        self.status_listener = status_listener
        self.tls = tls
        self.listens = config.listeners  # what each listener is (the same order)
        self.record = table.worker_words(index)
        self.upstreams = Upstreams(table, self.record, config)
        for name, context in (tls.members.items() if tls else ()):
            self.upstreams.pools[name].tls_context = context
        self.router = Router(config, self.upstreams)
        self.loop = Loop()
        self.queue = FrontQueue(self.loop, table, self.record, table.worker_base(index),
                                lambda: self.upstreams.records)
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
        self._new_session: SessionFactory = TcpSession if config.proxy.mode == "tcp" \
            else HttpSession
        self.http = http = config.http
        self.limits = Limits(http.max_request_line, http.max_header_size, http.max_body_size)
        self.lean = LeanCache(http.max_request_line)
        # Where each pool's and route's counters are in this worker's record.
        capacity = table.capacity
        self._pool_at = {pool.index: pool_counters_at(capacity, pool.index)
                         for pool in self.upstreams.pools.values()}
        self._route_at = [route_counters_at(capacity, i) for i in range(MAX_ROUTES)]
        self.conn_pool = ConnectionPool(self.loop, http.pool_size, http.pool_idle_timeout)
        self.access_log: AccessLog | None = None
        self._log_limiter = LogLimiter(5.0)
        self.acceptor = Acceptor(self.loop, listeners, config.proxy.max_connections,
                                 lambda: len(self.sessions), self._open_session,
                                 self._count_accepted)

    # --- process setup

    def run(self) -> int:
        try:
            self._setup()
        except Exception:
            log.exception("worker %d failed to start", self.number)
            return EXIT_BOOT_FAILURE
        self._send(reports.encode(reports.Ready()))
        log.debug("worker %d gen %d ready", self.number, self.generation)
        while not self._finished():
            self.loop.run_once(0.5)
            self._housekeeping()
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
        self.loop.add(self.report.fileno(), READ, self._on_master_message)
        if self.config.log.access and self.config.proxy.mode == "http":
            self.access_log = AccessLog(self.config.resolve(self.config.log.access),
                                        self.config.log.access_format)
        self.acceptor.start()
        if self.status_listener is not None:
            StatusServer(self.loop, self.table, self.status_listener, self.config.status.allow,
                         self.limits, self.config, self.tls)
        self.record[WK_STATE] = STATE_READY
        self._update_title()

    # --- connections

    def _count_accepted(self) -> None:
        self.record[WK_ACCEPTED] += 1

    def _open_session(self, client: socket.socket, client_ip: str, index: int) -> None:
        listen = self.listens[index]
        try:
            client.setblocking(False)
            # Responses end in small writes (in TCP mode: whatever pieces the member sent);
            # Nagle plus the client's delayed ACK would hold each such tail for 40 ms.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if listen.tls and self.tls is not None and self.tls.default is not None:
                session: Session = Handshake(self.loop, self.record, wrap(self.tls.default, client),
                                             client_ip, listen, self.config.tls.handshake_timeout,
                                             self._handshake_done)
            else:
                session = self._new_session(self, client, client_ip, listen)
        except Exception as err:
            # Never leave an accepted connection open and unowned.
            log.exception("cannot start a session for a new connection; closing it")
            self.loop.remove(client.fileno())
            client.close()
            if isinstance(err, OSError) and err.errno is not None and \
                    err.errno in (errno.EMFILE, errno.ENFILE):
                self.acceptor.back_off(err)
            return
        if not session.closed:
            self.sessions.add(session)
            self.record[WK_CONNECTIONS] = len(self.sessions)

    def _handshake_done(self, handshake: Handshake) -> None:
        """A TLS handshake finished: the connection becomes a session like any other."""
        self.sessions.discard(handshake)
        sock = handshake.sock
        try:
            session = self._new_session(self, sock, handshake.client_ip, handshake.listen)
        except Exception:
            log.exception("cannot start a session for a TLS connection; closing it")
            self.loop.remove(sock.fileno())
            sock.close()
            return
        if not session.closed:
            self.sessions.add(session)
        self.record[WK_CONNECTIONS] = len(self.sessions)

    # --- the SessionContext

    def connect(self, target: Target) -> tuple[socket.socket, int]:
        return start_connect(target)

    def enqueue(self, pool: PoolView, waiter: Waiter) -> bool:
        return self.queue.add(pool, waiter, self.upstreams.records)

    def leave_queue(self, pool: PoolView, waiter: Waiter, reason: str) -> None:
        self.queue.leave(pool, waiter, reason)

    def session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self.record[WK_CONNECTIONS] = len(self.sessions)
        self.acceptor.connection_closed()

    def member_failed(self, target: Target, reason: str, retry_ms: int | None = None) -> None:
        """A connect to `target` failed: count it and have the master mark it in error."""
        self.record[WK_CONNECT_FAILURES] += 1
        self.upstreams.connect_failed(target)
        more = self._log_limiter.note((target.slot, target.uid), self.loop.now)
        if more is not None:
            log.warning("member %s: connect failed (%s)%s", target.label, reason, more)
        self._send(reports.encode(reports.ConnectFailed(target.slot, target.uid, reason,
                                                        retry_ms)))

    def _ask_ejection(self, target: Target, cause: int) -> None:
        """The detector says `target` fails: the master decides for the whole front."""
        self._send(reports.encode(reports.Eject(target.slot, target.uid, cause)))

    def resource_error(self, err: OSError) -> None:
        """A local resource ran out (fds, memory) while serving a connection."""
        more = self._log_limiter.note("resources", self.loop.now)
        if more is not None:
            log.error("cannot open a connection to a member: %s%s",
                      os.strerror(err.errno or 0), more)

    def count_no_member(self, pool: PoolView | None = None) -> None:
        self.record[WK_NO_MEMBER] += 1
        if pool is not None:
            self.record[pool_counters_at(self.table.capacity, pool.index) + PC_NO_MEMBER] += 1

    def count_retry(self) -> None:
        self.record[WK_RETRIES] += 1

    def count_fast_path(self) -> None:
        self.record[WK_FAST_PATH] += 1

    def count_bytes(self, from_client: bool, n: int) -> None:
        self.record[WK_BYTES_IN if from_client else WK_BYTES_OUT] += n

    def count_upstream_timeout(self) -> None:
        self.record[WK_UPSTREAM_TIMEOUTS] += 1

    def count_client_error(self) -> None:
        self.record[WK_CLIENT_ERRORS] += 1

    def request_done(self, exchange: Exchange, status: int, target: Target | None) -> None:
        """One HTTP request ended (status 0: the client left before any response)."""
        record = self.record
        record[WK_REQUESTS] += 1
        if 100 <= status < 600:
            record[WK_STATUS_CLASS + status // 100 - 1] += 1
        decision = exchange.decision
        if decision is not None:
            count_routed(self.record, self._pool_at, self._route_at, decision, status,
                         exchange.sticky_outcome)
        started = exchange.exchange_started
        now = time.monotonic()
        if started:
            self.upstreams.observe_latency(now - started)
        if self.access_log is not None:
            self.access_log.log(exchange.log_fields(status, target, now))

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
        self.record[WK_STATE] = STATE_DRAINING
        self.acceptor.close(self.config.proxy.backlog)
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
            return not self.sessions or self.loop.now >= self.drain_deadline
        return False

    # --- periodic

    def _housekeeping(self) -> None:
        now = self.loop.now
        self.record[WK_TICK_NS] = time.monotonic_ns()
        if self.access_log is not None:
            self.access_log.tick(now)
        if now - self._title_at >= 1.0:
            self._update_title()

    def _update_title(self) -> None:
        self._title_at = self.loop.now
        state = "draining" if self.draining else "ready"
        title = (f"hbfork: worker {self.number} gen {self.generation} {state} "
                 f"conns={len(self.sessions)}")
        if title != self._title:
            self._title = title
            setproctitle.setproctitle(title)


def count_routed(record: memoryview, pool_at: dict[int, int], route_at: list[int],
                 decision: Decision, status: int, sticky: int) -> None:
    """Per-pool and per-route counters (indexed by their place in this config)."""
    if decision.pool is not None:
        at = pool_at[decision.pool.index]
        if 100 <= status < 600:
            record[at + PC_STATUS_CLASS + status // 100 - 1] += 1
        if sticky:
            record[at + (PC_STICKY if sticky == STICKY_HIT else PC_STICKY_LOST)] += 1
    route = decision.route
    if route is not None and route.index < MAX_ROUTES:
        at = route_at[route.index]
        record[at + RC_REQUESTS] += 1
        if status >= 500:
            record[at + RC_ERRORS] += 1


def run_worker(**kwargs: object) -> int:
    """Build and run a worker in a freshly forked child (the master's entry point into the
    proxy; the keywords are Worker's parameters). Returns the exit code."""
    return Worker(**kwargs).run()  # type: ignore[arg-type]
