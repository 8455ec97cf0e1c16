"""A worker process: one epoll loop that accepts client connections and relays them to members.

The master forks workers after binding every socket; a worker inherits the listeners, the
mapping of the shared table, its end of a report socketpair and the read end of the master's
death pipe. It accepts with EPOLLEXCLUSIVE and re-registers the listener every ACCEPT_REARM
accepts, which moves it to the back of the kernel's wake-up queue so connections spread over
workers (plain EPOLLEXCLUSIVE wakes the same worker nearly every time).

Messages on the report socket: to the master "ready", "error SLOT UID REASON"; from the master
"drain" (stop accepting, finish what is in flight) and "stop" (close everything now).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
import time
from typing import Protocol

import setproctitle

from hbfork import logs
from hbfork.accesslog import AccessLog
from hbfork.config import Config
from hbfork.http11 import Limits
from hbfork.http_proxy import HttpSession
from hbfork.keepalive import ConnectionPool
from hbfork.loop import READ, Loop
from hbfork.ratelimit import LogLimiter
from hbfork.status import StatusServer
from hbfork.table import (
    STATE_DRAINING,
    STATE_READY,
    WK_ACCEPTED,
    WK_BYTES_IN,
    WK_BYTES_OUT,
    WK_CLIENT_ERRORS,
    WK_CONNECT_FAILURES,
    WK_CONNECTIONS,
    WK_NO_MEMBER,
    WK_REQUESTS,
    WK_RETRIES,
    WK_STATE,
    WK_STATUS_CLASS,
    WK_TICK_NS,
    WK_UPSTREAM_TIMEOUTS,
    Table,
)
from hbfork.tcp import TcpSession
from hbfork.upstreams import Target, Upstreams

ACCEPT_REARM = 16
ACCEPT_BATCH = 16
EMFILE_BACKOFF = 0.1
PR_SET_PDEATHSIG = 1
EXIT_BOOT_FAILURE = 3
log = logs.log


class Session(Protocol):
    def drain(self) -> None: ...
    def close(self) -> None: ...


class Worker:
    def __init__(self, config: Config, table: Table, index: int, number: int, generation: int,
                 listeners: list[socket.socket], report: socket.socket, death_fd: int,
                 master_pid: int, status_listener: socket.socket | None = None) -> None:
        self.config = config
        self.table = table
        self.index = index
        self.number = number
        self.generation = generation
        self.listeners = listeners
        self.report = report
        self.death_fd = death_fd
        self.master_pid = master_pid
        self.status_listener = status_listener
        self.record = table.worker_words(index)
        self.upstreams = Upstreams(table, self.record)
        self.loop = Loop()
        self.buffer = memoryview(bytearray(256 * 1024))
        self.sessions: set[Session] = set()
        self.log = log
        self.draining = False
        self.drain_deadline = 0.0
        self.stopping = False
        self.accepting = False
        self.accepts_since_rearm = 0
        self.accept_paused = False  # out of fds: accepting resumes when resume_timer fires
        self._signals: list[int] = []
        self._title = ""
        self._title_at = 0.0
        self._session_class = _session_class(config.proxy.mode)
        self.http_mode = config.proxy.mode == "http"
        http = config.http
        self.limits = Limits(http.max_request_line, http.max_header_size, http.max_body_size)
        self.conn_pool = ConnectionPool(self)
        self.access_log: AccessLog | None = None
        self._log_limiter = LogLimiter(5.0)
        self.resume_timer = self.loop.timer(self._resume_accepting)

    # --- process setup

    def run(self) -> int:
        try:
            self._setup()
        except Exception:
            log.exception("worker %d failed to start", self.number)
            return EXIT_BOOT_FAILURE
        self._send(b"ready")
        log.debug("worker %d gen %d ready", self.number, self.generation)
        while not self._finished():
            self.loop.run_once(0.5)
            self._housekeeping()
        if self.access_log is not None:
            self.access_log.close()
        return 0

    def _setup(self) -> None:
        logs.set_role(f"worker {self.number}")
        _set_parent_death_signal(signal.SIGUSR2)
        if os.getppid() != self.master_pid:
            self._master_gone()
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup = (read_end, write_end)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                       signal.SIGUSR2):
            signal.signal(signum, self._record_signal)
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_IGN if signum != signal.SIGCHLD else signal.SIG_DFL)
        self.loop.add(read_end, READ, self._on_wakeup)
        self.loop.add(self.death_fd, READ, self._on_death_pipe)
        self.loop.add(self.report.fileno(), READ, self._on_master_message)
        if self.config.log.access and self.http_mode:
            self.access_log = AccessLog(self.config.resolve(self.config.log.access),
                                        self.config.log.access_format)
        self._start_accepting()
        if self.status_listener is not None:
            StatusServer(self, self.status_listener)
        self.record[WK_STATE] = STATE_READY
        self._update_title()

    def _record_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    # --- accepting

    def _start_accepting(self) -> None:
        if self.accepting or self.draining:
            return
        self.accepting = True
        for listener in self.listeners:
            self.loop.add(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE,
                          self._acceptor(listener))

    def _stop_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            for listener in self.listeners:
                self.loop.remove(listener.fileno())

    def _acceptor(self, listener: socket.socket):
        def on_readable(mask: int) -> None:
            self._accept(listener)
        return on_readable

    def _accept(self, listener: socket.socket) -> None:
        limit = self.config.proxy.max_connections
        for _ in range(ACCEPT_BATCH):
            if len(self.sessions) >= limit:
                self._stop_accepting()  # resumed when a connection closes
                return
            try:
                client, _ = listener.accept()
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._accept_backoff(err)
                    return
                if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                self._accept_backoff(err)  # unexpected: pause rather than spin or crash
                return
            self.record[WK_ACCEPTED] += 1
            self.accepts_since_rearm += 1
            self._open_session(client)
        if self.accepts_since_rearm >= ACCEPT_REARM and self.accepting:
            # Go to the back of the exclusive wake-up queue so the next wake-up is another
            # worker's (EPOLL_CTL_MOD cannot be used with EPOLLEXCLUSIVE).
            self.accepts_since_rearm = 0
            self._stop_accepting()
            self._start_accepting()

    def _accept_backoff(self, err: OSError) -> None:
        """Out of file descriptors: stop accepting for a moment instead of spinning."""
        self._stop_accepting()
        self.accept_paused = True
        self.loop.set_timer(self.resume_timer, self.loop.now + EMFILE_BACKOFF)
        more = self._log_limiter.note("accept", self.loop.now)
        if more is not None:
            log.warning("accept failed (%s); pausing accepts for %.1fs with %d connections "
                        "open%s", os.strerror(err.errno), EMFILE_BACKOFF, len(self.sessions),
                        more)

    def _resume_accepting(self, now: float) -> None:
        self.accept_paused = False
        if not self.draining and len(self.sessions) < self.config.proxy.max_connections:
            self._start_accepting()

    def _open_session(self, client: socket.socket) -> None:
        try:
            client.setblocking(False)
            # Responses end in small writes (in TCP mode: whatever pieces the member sent);
            # Nagle plus the client's delayed ACK would hold each such tail for 40 ms.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = self._session_class(self, client)
        except Exception as err:
            # Never leave an accepted connection open and unowned.
            log.exception("cannot start a session for a new connection; closing it")
            self.loop.remove(client.fileno())
            client.close()
            if isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE):
                self._accept_backoff(err)
            return
        if not getattr(session, "closed", False):
            self.sessions.add(session)
            self.record[WK_CONNECTIONS] = len(self.sessions)

    # --- callbacks used by sessions

    def session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self.record[WK_CONNECTIONS] = len(self.sessions)
        if (not self.accepting and not self.draining and not self.accept_paused
                and len(self.sessions) < self.config.proxy.max_connections):
            self._start_accepting()

    def member_failed(self, target: Target, reason: str) -> None:
        """A connect to `target` failed: count it and have the master mark it in error."""
        self.record[WK_CONNECT_FAILURES] += 1
        self.upstreams.connect_failed(target)
        more = self._log_limiter.note((target.slot, target.uid), self.loop.now)
        if more is not None:
            log.warning("member %s: connect failed (%s)%s", target.label, reason, more)
        self._send(b"error %d %d %s" % (target.slot, target.uid, reason.encode()))

    def resource_error(self, err: OSError) -> None:
        """A local resource ran out (fds, memory) while serving a connection."""
        more = self._log_limiter.note("resources", self.loop.now)
        if more is not None:
            log.error("cannot open a connection to a member: %s%s", os.strerror(err.errno),
                      more)

    def count_no_member(self) -> None:
        self.record[WK_NO_MEMBER] += 1

    def count_retry(self) -> None:
        self.record[WK_RETRIES] += 1

    def count_bytes(self, from_client: bool, n: int) -> None:
        self.record[WK_BYTES_IN if from_client else WK_BYTES_OUT] += n

    def count_upstream_timeout(self) -> None:
        self.record[WK_UPSTREAM_TIMEOUTS] += 1

    def count_client_error(self) -> None:
        self.record[WK_CLIENT_ERRORS] += 1

    def request_done(self, session: object, status: int, target: Target | None,
                     aborted: bool = False) -> None:
        """One HTTP request ended (status 0: the client left before any response)."""
        record = self.record
        record[WK_REQUESTS] += 1
        if 100 <= status < 600:
            record[WK_STATUS_CLASS + status // 100 - 1] += 1
        started = getattr(session, "exchange_started", 0.0)
        now = time.monotonic()
        if started:
            self.upstreams.observe_latency(now - started)
        if self.access_log is not None:
            self.access_log.log(_access_fields(session, status, target, now))

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
        self._stop_accepting()
        self.draining = True
        self.drain_deadline = self.loop.now + self.config.proxy.shutdown_timeout
        self.record[WK_STATE] = STATE_DRAINING
        for listener in self.listeners:
            # EPOLLEXCLUSIVE may have woken only us for connections still queued: take them
            # (they are served, then closed) rather than leave them to the next arrival.
            self._accept_queued(listener)
            listener.close()  # our copy only: the master and newer workers keep theirs
        for session in list(self.sessions):
            session.drain()
        self.conn_pool.close_all()
        self._update_title()

    def _accept_queued(self, listener: socket.socket) -> None:
        for _ in range(self.config.proxy.backlog):
            try:
                client, _ = listener.accept()
            except OSError:
                return  # empty (EAGAIN), or out of fds: the new generation takes the rest
            self.record[WK_ACCEPTED] += 1
            self._open_session(client)

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


def _access_fields(session: object, status: int, target: Target | None,
                   now: float) -> dict[str, object]:
    """What the access log records of one finished request."""
    request = getattr(session, "request", None)
    referer = agent = b""
    line = "-"
    if request is not None:
        line = f"{request.method.decode()} {request.target.decode('latin-1')} HTTP/" \
               f"{'1.1' if request.version == 11 else '1.0'}"
        for _, lower, value in request.headers:
            if lower == b"referer":
                referer = value
            elif lower == b"user-agent":
                agent = value
    member_started = getattr(session, "member_started", 0.0)
    started = getattr(session, "exchange_started", 0.0) or now
    return {
        "client": getattr(session, "client_ip", "-"),
        "request": line,
        "status": status,
        "bytes": getattr(session, "bytes_to_client", 0),
        "referer": referer.decode("latin-1"),
        "user_agent": agent.decode("latin-1"),
        "member": target.address if target else "",
        "upstream_seconds": (now - member_started) if member_started and target else None,
        "total_seconds": now - started,
    }


def _session_class(mode: str) -> type:
    return TcpSession if mode == "tcp" else HttpSession


def _set_parent_death_signal(signum: int) -> None:
    """Have the kernel signal us when the master dies (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("PR_SET_PDEATHSIG unavailable; relying on the death pipe alone")
