"""The master process: owns the sockets and the table, supervises the workers.

Theory of operation
-------------------
The master binds every socket once (client listeners, the heartbeat socket, the status
listener), creates the shared table, forks the workers, and then waits in ONE selector on: the
heartbeat socket, the signal wake-up pipe and each worker's report socket. Signal handlers only
record the signal; everything happens in the loop, which never blocks for long: the select
timeout is the nearest member deadline (staleness, end of error) capped at half a second.

Workers come in generations. A reload (SIGHUP) with a valid config starts a new generation;
once all of its workers say "ready", the older generations are told to drain. Listeners live in
the master for its whole life, so connections queued during a reload are accepted by whichever
generation is serving; nothing is reset. The heartbeat socket, table and member state survive
reloads.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field

import setproctitle

from hbfork import __version__, logs, privileges
from hbfork import config as config_module
from hbfork.bindings import Bindings, Plan
from hbfork.config import MAX_WORKERS, Config
from hbfork.control import ControlServer, execute
from hbfork.errors import ConfigError, HbforkError, HeartbeatError
from hbfork.keyfile import read_keys
from hbfork.members import NS, Registry, Rules
from hbfork.monitor import BUMP_INTERVAL, Monitor
from hbfork.pidfile import claim, release
from hbfork.pool import Pool, WorkerProcess, signal_quietly
from hbfork.storage import StorageWriter, format_storage
from hbfork.table import (
    STATE_READY,
    W_CONFIG_GENERATION,
    W_CONFIG_LOADED_US,
    WK_STATE,
    WK_TICK_NS,
    Table,
)

log = logs.log
HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                   signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)
WORKER_RECORDS = 2 * MAX_WORKERS  # two generations overlap during a reload
READY_TIMEOUT = 30.0


@dataclass(eq=False)
class Generation:
    number: int
    config: Config
    listeners: list[socket.socket]
    size: int
    started: float = field(default_factory=time.monotonic)


class Master:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.pid = os.getpid()
        self.selector = selectors.DefaultSelector()
        self.bindings = Bindings()
        self.table: Table | None = None
        self.registry: Registry | None = None
        self.monitor: Monitor | None = None
        self.pool: Pool | None = None
        self.generations: dict[int, Generation] = {}
        self.current: Generation | None = None
        self.pending: Generation | None = None   # reload waiting for its workers to be ready
        self.stopping: str | None = None         # None, "graceful" or "fast"
        self.stop_deadline = 0.0
        self.signals: list[int] = []
        self.control: ControlServer | None = None
        self.storage: StorageWriter | None = None
        self._storage_written = 0.0
        self._source_read = 0.0
        self._death_read = self._death_write = -1
        self._wakeup_read = self._wakeup_write = -1
        self._last_watchdog = 0.0

    # --- start

    def run(self) -> int:
        # Until the handlers are installed, a TERM or Ctrl-C would kill us between creating
        # the table and being able to remove it: hold those signals until then.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        setproctitle.setproctitle("hbfork: master")
        pidfile = self.config.pidfile
        try:
            logs.setup(self.config.log.level, self.config.resolve(self.config.log.error),
                       "master")
            if pidfile:
                claim(pidfile, self.pid)
            self._open()
        except (OSError, HbforkError) as err:
            log.error("cannot start: %s", _describe(err))
            self._cleanup()
            return 1
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        try:
            self._spawn_generation(self.config)
            self._loop()
        finally:
            self._cleanup()
        log.info("master stopped")
        return 0

    def _open(self) -> None:
        config = self.config
        keys = self._read_keys(config)
        self.bindings.commit(self.bindings.prepare(config))
        self.table = Table.create(config.heartbeat.max_members, WORKER_RECORDS, self.pid)
        if config.control_socket:
            self.control = ControlServer(config.control_socket, self.selector, self._control)
        elif config.pidfile:
            log.warning("no control socket (`hbfork ctl` will not work): %s.ctl would be too "
                        "long for a Unix socket; set [proxy] control_socket", config.pidfile)
        self._prepare_access_log(config)
        self._check_owned_by_user(config)
        self._drop_privileges(config)
        self._configure_storage(config)
        self.registry = Registry.from_config(config, keys)
        self.monitor = Monitor(self.registry, self.table, config.heartbeat.allow,
                               config.heartbeat.rate_limit)
        self.monitor.sock = self.bindings.heartbeat_sock
        self.monitor.publish()
        self._set_config_generation(1)
        self._death_read, self._death_write = os.pipe2(os.O_CLOEXEC)
        self._wakeup_read, self._wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._record_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.selector.register(self._wakeup_read, selectors.EVENT_READ, self._on_wakeup)
        self.selector.register(self.bindings.heartbeat_sock, selectors.EVENT_READ,
                               self.monitor.on_readable)
        self.pool = Pool(self.table, self._death_read, self._master_only_fds,
                         self._register_worker, self._unregister)
        log.info("hbfork %s master started: listening on %s (mode %s), heartbeats on %s%s",
                 _version(), ", ".join(map(str, config.proxy.listen)), config.proxy.mode,
                 config.heartbeat.listen,
                 f", status on {config.status.listen}" if config.status.listen else "")

    def _prepare_access_log(self, config: Config) -> None:
        """Create the access log now (workers open it by path, perhaps unprivileged), so a bad
        path is a clear error here rather than workers dying at boot."""
        path = config.resolve(config.log.access)
        if not path or config.proxy.mode != "http":
            return
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as err:
            raise HbforkError(f"[log] access: cannot open {path}: {err.strerror}") from None
        if config.proxy.user and os.geteuid() == 0:
            uid, gid = privileges.resolve(config.proxy.user, config.proxy.group)
            os.chown(path, uid, gid)

    @staticmethod
    def _read_keys(config: Config) -> tuple[bytes, ...]:
        path = config.resolve(config.heartbeat.key_file)
        return read_keys(path) if path else ()

    def _check_owned_by_user(self, config: Config) -> None:
        """Files re-read after privileges are dropped (reload, USR1) must be the user's: the
        error log is handed over; a key file must already be (hbfork does not change the
        owner of a secret), or every reload would fail."""
        if not (config.proxy.user and os.geteuid() == 0):
            return
        uid, gid = privileges.resolve(config.proxy.user, config.proxy.group)
        error_log = config.resolve(config.log.error)
        if error_log:
            os.chown(error_log, uid, gid)
        key_file = config.resolve(config.heartbeat.key_file)
        if key_file and os.stat(key_file).st_uid != uid:
            raise HbforkError(f"[heartbeat] key_file {key_file} must be owned by [proxy] user "
                              f"{config.proxy.user!r} (mode 0600), so reloads can read it")

    def _drop_privileges(self, config: Config) -> None:
        assert self.table is not None
        if config.proxy.user:
            uid, gid = privileges.resolve(config.proxy.user, config.proxy.group)
            if os.geteuid() == 0:
                paths = [p for p in (config.pidfile, config.control_socket) if p]
                privileges.drop(uid, gid, [self.table.shm._fd], paths)
                log.info("running as uid %d gid %d", uid, gid)
            elif os.geteuid() != uid:
                raise HbforkError(f"[proxy] user {config.proxy.user!r}: cannot switch to it "
                                  "without starting as root")
        elif os.geteuid() == 0 and not config.proxy.allow_root:
            raise HbforkError("refusing to serve as root: set [proxy] user (privileges are "
                              "dropped after binding), or allow_root = true")

    def _configure_storage(self, config: Config) -> None:
        path = config.resolve(config.heartbeat.storage)
        if self.storage is not None and self.storage.path != path:
            self.storage.stop()
            self.storage = None
        if path and self.storage is None:
            self.storage = StorageWriter(path, lambda err: log.error(
                "cannot write the storage file: %s", _describe(err)))
            self._storage_written = 0.0

    def _storage_and_source(self) -> None:
        """Write hb.dat every storage_interval, and within a second of a change; read a
        source file once a second."""
        assert self.monitor is not None and self.registry is not None
        now = time.monotonic()
        hb = self.config.heartbeat
        if self.storage is not None:
            due = self._storage_written + hb.storage_interval
            if self.monitor.changed_at > self._storage_written:
                due = min(due, self._storage_written + 1.0)
            if now >= due:
                self._storage_written = now
                self.storage.submit(format_storage(self.registry, time.monotonic_ns()))
        if hb.source and now - self._source_read >= 1.0:
            self._source_read = now
            path = self.config.resolve(hb.source.removeprefix("file:"))
            try:
                self.monitor.read_source_file(path, time.monotonic_ns(), time.time())
            except OSError as err:
                log.error("cannot read the source file: %s", _describe(err))

    def _control(self, line: str) -> str:
        assert self.registry is not None and self.monitor is not None
        reply = execute(self.registry, line, time.monotonic_ns())
        self.monitor.publish()
        log.info("control: %s -> %s", line.strip()[:80], reply[:200])
        return reply

    def _master_only_fds(self) -> list[int]:
        fds = [self.selector.fileno(), self._death_write, self._wakeup_read, self._wakeup_write]
        if self.bindings.heartbeat_sock is not None:
            fds.append(self.bindings.heartbeat_sock.fileno())
        return fds

    def _set_config_generation(self, number: int) -> None:
        assert self.table is not None
        self.table.set_header(W_CONFIG_GENERATION, number)
        self.table.set_header(W_CONFIG_LOADED_US, int(time.time() * 1e6))

    # --- generations

    def _spawn_generation(self, config: Config) -> Generation:
        number = max(self.generations, default=0) + 1
        listeners = [self.bindings.listeners[e] for e in config.proxy.listen]
        generation = Generation(number, config, listeners, config.proxy.workers)
        self.generations[number] = generation
        if self.current is None:
            self.current = generation
        else:
            self.pending = generation
        self._fill(generation)
        return generation

    def _fill(self, generation: Generation) -> None:
        """Fork the workers a generation is missing (numbers 1..size)."""
        assert self.pool is not None
        have = {w.number for w in self.pool.serving(generation.number)}
        for number in range(1, generation.size + 1):
            if number not in have and not self.pool.spawn(
                    generation.config, generation.listeners, self.bindings.status_listener,
                    number, generation.number):
                return

    def _maintain(self) -> None:
        """Keep the serving generation at its size; finish a reload once its workers are up."""
        assert self.pool is not None
        if self.stopping:
            return
        self.pool.healthy()
        for generation in (self.current, self.pending):
            if generation is not None:
                self._fill(generation)
        current = self.current
        if current is not None:
            for worker in sorted(self.pool.serving(current.number), key=lambda w: w.number):
                if worker.number > current.size:  # SIGTTOU
                    self.pool.drain(worker, current.config.proxy.shutdown_timeout)
        pending = self.pending
        if pending is not None:
            ready = [w for w in self.pool.serving(pending.number) if w.ready]
            if len(ready) >= pending.size:
                self._finish_reload(pending)
            elif time.monotonic() - pending.started > READY_TIMEOUT:
                log.error("reload: the new workers are not ready after %.0fs; the old ones keep "
                          "serving and the new ones keep being retried", READY_TIMEOUT)
                pending.started = time.monotonic()
        self._close_unused_listeners()

    def _finish_reload(self, pending: Generation) -> None:
        assert self.pool is not None and self.current is not None
        for worker in list(self.pool.workers.values()):
            if worker.generation != pending.number:
                self.pool.drain(worker, self.generations[worker.generation].config
                                .proxy.shutdown_timeout)
        self.current, self.pending = pending, None
        log.info("reload complete: generation %d serving, older workers draining",
                 pending.number)

    def _close_unused_listeners(self) -> None:
        """Forget generations without workers, and close listeners no serving generation
        uses: draining workers closed their copies already, so a listener kept only for them
        would complete handshakes nobody accepts."""
        assert self.pool is not None
        live = {w.generation for w in self.pool.workers.values()}
        serving = [g for g in (self.current, self.pending) if g is not None]
        live.update(g.number for g in serving)
        for number in list(self.generations):
            if number not in live:
                del self.generations[number]
        keep = {id(sock) for g in serving for sock in g.listeners}
        for endpoint in self.bindings.close_listeners_except(keep):
            log.info("closed listener %s (no longer configured)", endpoint)

    # --- reload

    def _reload(self) -> None:
        path = self.config.path
        handler = None
        try:
            new = config_module.load(path)
            keys = self._read_keys(new)
            self._check_reloadable(new)
            self._prepare_access_log(new)
            error_log = new.resolve(new.log.error)
            if error_log != logs.current_path():
                handler = logs.make_handler(error_log)
            plan = self.bindings.prepare(new)
        except (ConfigError, HbforkError, HeartbeatError, OSError) as err:
            if handler is not None:
                handler.close()
            log.error("reload failed, still running the previous config: %s", _describe(err))
            return
        if self.pending is not None:
            # A newer config supersedes a reload whose workers are not ready yet.
            log.warning("reload: abandoning generation %d for a newer config",
                        self.pending.number)
            self._abandon(self.pending)
        self._apply(new, keys, plan, handler)

    def _apply(self, new: Config, keys: tuple[bytes, ...], plan: Plan,
               handler: logging.Handler | None) -> None:
        """Commit a validated config: everything below cannot fail on bad input."""
        assert self.registry is not None and self.monitor is not None
        replaced = self.bindings.commit(plan)
        if replaced is not None:
            self._unregister(replaced)
            replaced.close()
            self.selector.register(self.bindings.heartbeat_sock, selectors.EVENT_READ,
                                   self.monitor.on_readable)
            self.monitor.sock = self.bindings.heartbeat_sock
        if handler is not None:
            logs.install(handler, new.log.level, new.resolve(new.log.error))
        else:
            logs.log.setLevel(new.log.level.upper())
        self.registry.reconfigure(Rules.from_config(new), new.members, keys, time.monotonic_ns())
        self.monitor.configure(new.heartbeat.allow, new.heartbeat.rate_limit)
        self.monitor.publish()
        self._configure_storage(new)
        self.config = new
        generation = self._spawn_generation(new)
        self._set_config_generation(generation.number)
        log.info("reloading %s: generation %d starting %d workers", new.path,
                 generation.number, generation.size)

    def _abandon(self, generation: Generation) -> None:
        assert self.pool is not None
        for worker in self.pool.generation(generation.number):
            self.pool.stop_fast(worker)
        self.pending = None

    def _check_reloadable(self, new: Config) -> None:
        if new.heartbeat.max_members != self.config.heartbeat.max_members:
            raise ConfigError(new.path, "[heartbeat] max_members",
                              f"cannot change from {self.config.heartbeat.max_members} on "
                              "reload (the table is sized at start); restart to change it")
        old = self.config
        for key, before, after in (("[proxy] pidfile", old.pidfile, new.pidfile),
                                   ("[proxy] control_socket", old.control_socket,
                                    new.control_socket),
                                   ("[proxy] user", old.proxy.user, new.proxy.user),
                                   ("[proxy] group", old.proxy.group, new.proxy.group)):
            if before != after:
                raise ConfigError(new.path, key, "cannot change on reload; restart to change it")

    # --- the loop

    def _loop(self) -> None:
        assert self.pool is not None
        while not (self.stopping and not self.pool.workers):
            try:
                self._iterate()
            except Exception:
                # A bug or an unexpected OS error must not take the master (and with it every
                # worker) down: log it, and the next iteration starts from a consistent state.
                log.exception("error in the master loop (continuing)")
                time.sleep(0.1)

    def _iterate(self) -> None:
        assert self.pool is not None and self.monitor is not None
        for key, _ in self.selector.select(self._timeout()):
            try:
                key.data(key.fileobj)
            except Exception:
                log.exception("error in the master loop (continuing)")
        self._handle_signals()
        for worker in self.pool.reap():
            if self.pending is not None and worker.generation == self.pending.number \
                    and not worker.draining:
                log.warning("reload: a new worker died before it was ready")
        self.pool.kill_overdue()
        self.monitor.publish()
        self._storage_and_source()
        if self.control is not None:
            self.control.expire()
        self._watchdog()
        if not self.stopping:
            self._maintain()
        elif time.monotonic() >= self.stop_deadline:
            for worker in self.pool.workers.values():
                signal_quietly(worker.pid, signal.SIGKILL)
            self.stop_deadline = time.monotonic() + 5

    def _timeout(self) -> float:
        assert self.registry is not None and self.pool is not None
        timeout = 0.5
        deadline = self.registry.next_deadline
        if deadline:
            timeout = min(timeout, max(0.0, (deadline - time.monotonic_ns()) / NS + 0.001))
        if self.pool.next_spawn_at:
            timeout = min(timeout, max(0.01, self.pool.next_spawn_at - time.monotonic()))
        if self.storage is not None:
            timeout = min(timeout, 0.25)
        if self.monitor is not None and self.monitor.bump_pending:
            timeout = min(timeout, BUMP_INTERVAL)
        return timeout

    def _watchdog(self) -> None:
        """Kill workers whose loop stopped ticking for worker_timeout (they get replaced)."""
        assert self.pool is not None and self.table is not None
        now = time.monotonic()
        if now - self._last_watchdog < 1.0:
            return
        self._last_watchdog = now
        now_ns = time.monotonic_ns()
        for worker in self.pool.workers.values():
            record = self.table.worker_words(worker.index)
            tick, state = record[WK_TICK_NS], record[WK_STATE]
            record.release()
            limit = self.generations[worker.generation].config.proxy.worker_timeout \
                if worker.generation in self.generations else self.config.proxy.worker_timeout
            if state == STATE_READY and tick and now_ns - tick > limit * NS:
                log.error("%s has not ticked for %.0fs; killing it", worker.label,
                          (now_ns - tick) / NS)
                signal_quietly(worker.pid, signal.SIGKILL)
            elif not worker.ready and not worker.draining and now - worker.born > READY_TIMEOUT:
                log.error("%s is not ready after %.0fs; killing it", worker.label,
                          now - worker.born)
                signal_quietly(worker.pid, signal.SIGKILL)

    # --- worker messages

    def _register_worker(self, sock: socket.socket, worker: WorkerProcess) -> None:
        self.selector.register(sock, selectors.EVENT_READ, lambda s: self._read_worker(worker))

    def _unregister(self, sock: socket.socket) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _read_worker(self, worker: WorkerProcess) -> None:
        for _ in range(64):
            try:
                message = worker.sock.recv(512)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._unregister(worker.sock)  # it exited; SIGCHLD and reap() do the rest
                return
            self._on_worker_message(worker, message)

    def _on_worker_message(self, worker: WorkerProcess, message: bytes) -> None:
        assert self.registry is not None and self.monitor is not None
        parts = message.split()
        if parts[:1] == [b"ready"]:
            worker.ready = True
        elif parts[:1] == [b"error"] and len(parts) >= 3:
            member = self.registry.mark_error(int(parts[1]), int(parts[2]), time.monotonic_ns())
            if member is not None:
                reason = parts[3].decode(errors="replace") if len(parts) > 3 else "?"
                log.warning("member %s in error for %gs: connect failed (%s)", member.label,
                            self.config.proxy.retry, reason)
                self.monitor.publish()

    # --- signals

    def _record_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _on_wakeup(self, fileobj: object) -> None:
        try:
            os.read(self._wakeup_read, 4096)
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        signals, self.signals = self.signals, []
        for signum in signals:
            if signum == signal.SIGHUP:
                if not self.stopping:
                    self._reload()
            elif signum == signal.SIGTERM:
                self._stop("fast" if self.stopping == "graceful" else "graceful")
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                self._stop("fast")
            elif signum == signal.SIGUSR1:
                logs.reopen()
                for worker in self.pool.workers.values() if self.pool else ():
                    signal_quietly(worker.pid, signal.SIGUSR1)
                log.info("log files reopened")
            elif signum in (signal.SIGTTIN, signal.SIGTTOU):
                self._resize(+1 if signum == signal.SIGTTIN else -1)

    def _resize(self, delta: int) -> None:
        generation = self.pending or self.current
        if generation is None or self.stopping:
            return
        size = max(1, min(MAX_WORKERS, generation.size + delta))
        if size != generation.size:
            generation.size = size
            log.info("workers: now %d (SIG%s)", size, "TTIN" if delta > 0 else "TTOU")

    def _stop(self, how: str) -> None:
        assert self.pool is not None
        if self.stopping == "fast":
            return
        first = self.stopping is None
        self.stopping = how
        timeout = self.config.proxy.shutdown_timeout
        if how == "graceful":
            log.info("graceful stop: draining %d workers (up to %gs)", len(self.pool.workers),
                     timeout)
            for worker in self.pool.workers.values():
                self.pool.drain(worker, timeout)
            self.stop_deadline = time.monotonic() + timeout + 1.0
        else:
            log.info("fast stop%s", "" if first else " (second signal)")
            for worker in self.pool.workers.values():
                self.pool.stop_fast(worker)
            self.stop_deadline = time.monotonic() + 2.0
        # New connections are refused from now on, not queued where nobody will accept them.
        self.bindings.close_listeners_except(set())

    # --- end

    def _cleanup(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.storage is not None:
            self.storage.stop()
        if self.table is not None:
            self.table.unlink()
            try:
                self.table.close()
            except BufferError:
                pass  # a view is still exported; the mapping goes away with the process
        if self.config.pidfile:
            release(self.config.pidfile, self.pid)
        self.bindings.close_all()


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename + ': ' if err.filename else ''}{err.strerror}"
    return str(err)


def _version() -> str:
    return __version__
