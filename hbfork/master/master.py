"""The master process: owns the sockets and the table, supervises the workers.

Theory of operation
-------------------
The master binds every socket once (client listeners, the heartbeat socket, the status
listener), creates the shared table, forks the workers, and then waits in ONE selector on: the
heartbeat socket, the signal wake-up pipe, each worker's report socket and the sockets of the
active health checks in flight (master.checks). Signal handlers only record the signal;
everything happens in the loop, which never blocks for long: the select timeout is the
nearest member or check deadline (staleness, end of error, a check due or timing out) capped
at half a second.

A binary upgrade (SIGUSR2, `ctl upgrade`) execs a new master that takes every socket over
and copies the members (master.upgrade, master.adoption); this one then drains as on TERM.

Workers come in generations (master.generations); a reload is prepared completely (config,
keys, files, sockets: master.setup, master.bindings) before anything is committed, so an
invalid one changes nothing. The heartbeat socket, table and member state survive reloads.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import time

import setproctitle

from hbfork import __version__
from hbfork.core import reports
from hbfork.core.config import Config
from hbfork.core.errors import ConfigError, HbforkError, HeartbeatError
from hbfork.core.members import NS, Registry, Rules
from hbfork.core.pool_admin import PoolAdmin
from hbfork.core.settings import MAX_WORKERS
from hbfork.master import setup
from hbfork.master.adoption import Adoption
from hbfork.master.bindings import Bindings, Plan
from hbfork.master.checks import Checks
from hbfork.master.generations import Generations
from hbfork.master.handover import Handover
from hbfork.master.monitor import BUMP_INTERVAL, Monitor
from hbfork.master.reports import MemberReports, read_reports
from hbfork.master.reresolve import Reresolver
from hbfork.master.storage import StorageFiles
from hbfork.master.succession import CODE_LOADED, Succession
from hbfork.master.upgrade import Upgrade
from hbfork.master.workers import RunWorker, WorkerProcess, Workers, signal_quietly
from hbfork.ops import health
from hbfork.ops.control import ControlServer, execute
from hbfork.system import logs, sdnotify
from hbfork.system.configfile import Resolver, load
from hbfork.system.logs import describe_error
from hbfork.system.pidfile import claim, release
from hbfork.system.tls import TlsContexts, load_contexts
from hbfork.table.layout import W_CODE_LOADED_US, W_CONFIG_GENERATION, W_CONFIG_LOADED_US
from hbfork.table.table import Table

log = logs.log
HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                   signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)
WORKER_RECORDS = 2 * MAX_WORKERS  # two generations overlap during a reload


class Master(Succession):
    def __init__(self, config: Config, run_worker: RunWorker,
                 adoption: Adoption | None = None) -> None:
        self.config = config
        self.reports = MemberReports()
        self.reresolver = Reresolver()  # [proxy] resolve_interval
        self.adoption = adoption  # set when started by another master's upgrade
        self.run_worker = run_worker
        self.pid = os.getpid()
        self.selector = selectors.DefaultSelector()
        self.bindings = Bindings()
        self.table: Table | None = None
        self.registry: Registry | None = None
        self.admin = PoolAdmin()
        self.monitor: Monitor | None = None
        self.checks: Checks | None = None
        self.workers: Workers | None = None
        self.generations: Generations | None = None
        self.stopping: str | None = None         # None, "graceful" or "fast"
        self.stop_deadline = 0.0
        self.signals: list[int] = []
        self.control: ControlServer | None = None
        self.tls: TlsContexts | None = None
        self.storage = StorageFiles()
        self.handover = Handover()
        self.upgrade = Upgrade(self.selector, self._upgrade_ready, self._upgrade_failed,
                               self._upgrade_taken)
        self.handed_over = False  # to the master of an upgrade: its pid file, socket, hb.dat
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
                       "master", self.config.log.syslog_facility)
            if pidfile and self.adoption is None:
                claim(pidfile, self.pid)
            self._open()
        except (OSError, HbforkError) as err:
            log.error("cannot start: %s", describe_error(err))
            if self.adoption is not None:
                self.adoption.fail(f"cannot start: {describe_error(err)}")
            self._cleanup()
            return 1
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        assert self.generations is not None
        try:
            self.generations.spawn(self.config, self.tls)
            self._loop()
        finally:
            self._cleanup()
        log.info("master stopped")
        return 0

    def _open(self) -> None:
        config = self.config
        keys = setup.keys_of(config)
        self.tls = load_contexts(config)
        if self.adoption is not None:
            self.adoption.check(config.pidfile, config.control_socket)
            self.adoption.seed(self.bindings)
        replaced = self.bindings.commit(self.bindings.prepare(config))
        if replaced is not None:  # an upgrade whose config listens for heartbeats elsewhere
            replaced.close()
        setup.reclaim_leftover_tables(config)
        self.table = Table.create(config.heartbeat.max_members, WORKER_RECORDS, self.pid)
        if config.control_socket:
            if self.adoption is None:  # else adopted from the old master at the hand-over
                self.control = ControlServer(config.control_socket, self.selector,
                                             self._control)
        elif config.pidfile:
            log.warning("no control socket (`hbfork ctl` will not work): %s.ctl would be too "
                        "long for a Unix socket; set [proxy] control_socket", config.pidfile)
        setup.prepare_access_log(config)
        setup.check_owned_by_user(config)
        setup.drop_privileges(config, [self.table.fd])
        self.storage.configure(config)
        self.registry = Registry.from_config(config, keys)
        self.admin.configure(config.pools)
        self.monitor = Monitor(self.registry, self.table, config.heartbeat.allow,
                               config.heartbeat.rate_limit, self.admin)
        self.monitor.sock = self.bindings.heartbeat_sock
        self.checks = Checks(self.selector, self.registry, self.monitor.publish)
        self.checks.configure(config)
        self.monitor.start_members(config)
        if self.adoption is not None:
            self.adoption.copy_members(self.registry, self.admin)
        self.monitor.publish()
        self._set_config_generation(1)
        self.table.set_header(W_CODE_LOADED_US, int(CODE_LOADED * 1e6))
        self.table.set_version(__version__)
        self._death_read, self._death_write = os.pipe2(os.O_CLOEXEC)
        self._wakeup_read, self._wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._record_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.selector.register(self._wakeup_read, selectors.EVENT_READ, self._on_wakeup)
        if self.adoption is None:  # else once the old master stops reading them
            self.selector.register(self.bindings.heartbeat, selectors.EVENT_READ,
                                   self.monitor.on_readable)
            sdnotify.notify("READY=1")
        self.workers = Workers(self.table, self.run_worker, self._death_read,
                               self._master_only_fds, self._register_worker, self._unregister)
        self.generations = Generations(self.workers, self.bindings)
        log.info("hbfork %s master started: %s", __version__, setup.describe_start(config))

    def _control(self, line: str) -> str | None:
        assert self.registry is not None and self.monitor is not None
        assert self.table is not None and self.workers is not None
        words = line.split()
        if words[:1] == ["drain-front"]:
            if self.stopping:
                return "error already stopping"
            reply = self.handover.request(words[1:], self.table, self.config.proxy)
            log.info("control: drain-front -> %s", reply)
            return reply
        if words[:1] == ["upgrade"]:
            return self._begin_upgrade()  # None: answered once the new master serves
        if words[:1] == ["health"]:  # `hbfork health`, every second from keepalived
            return health.answer(self.table, self.config, self.workers.processes)
        reply = execute(self.registry, line, time.monotonic_ns(), self.admin, self.config.pools,
                        self.config.discover_pool)
        self.monitor.publish()
        log.info("control: %s -> %s", line.strip()[:80], reply[:200])
        return reply

    def _master_only_fds(self) -> list[int]:
        fds = [self.selector.fileno(), self._death_write, self._wakeup_read, self._wakeup_write]
        # The upgrade channels too: a worker holding one would hide its master's exit.
        for sock in (self.bindings.heartbeat_sock, self.upgrade.channel,
                     self.adoption.channel if self.adoption else None):
            if sock is not None and sock.fileno() >= 0:
                fds.append(sock.fileno())
        if self.checks is not None:
            fds += self.checks.fds()  # a worker holding a check's socket would keep it open
        return fds

    def _set_config_generation(self, number: int) -> None:
        assert self.table is not None
        self.table.set_header(W_CONFIG_GENERATION, number)
        self.table.set_header(W_CONFIG_LOADED_US, int(time.time() * 1e6))

    # --- reload

    def _reload(self, resolver: Resolver | None = None) -> None:
        handler = None
        try:
            new = load(self.config.path, resolver)
            keys = setup.keys_of(new)
            tls = load_contexts(new)
            setup.check_reloadable(self.config, new)
            setup.prepare_access_log(new)
            error_log = new.resolve(new.log.error)
            if error_log != logs.current_path():
                handler = logs.make_handler(error_log, new.log.syslog_facility)
            plan = self.bindings.prepare(new)
        except (ConfigError, HbforkError, HeartbeatError, OSError) as err:
            if handler is not None:
                handler.close()
            log.error("reload failed, still running the previous config: %s",
                      describe_error(err))
            return
        assert self.generations is not None
        self.generations.abandon_pending()
        self._apply(new, keys, plan, handler, tls)

    def _apply(self, new: Config, keys: tuple[bytes, ...], plan: Plan,
               handler: logging.Handler | None, tls: TlsContexts | None) -> None:
        """Commit a validated config: everything below cannot fail on bad input."""
        assert self.registry is not None and self.monitor is not None
        assert self.generations is not None
        replaced = self.bindings.commit(plan)
        if replaced is not None:
            self._unregister(replaced)
            replaced.close()
            self.selector.register(self.bindings.heartbeat, selectors.EVENT_READ,
                                   self.monitor.on_readable)
            self.monitor.sock = self.bindings.heartbeat_sock
        if handler is not None:
            logs.install(handler, new.log.level, new.resolve(new.log.error))
        else:
            logs.log.setLevel(new.log.level.upper())
        self.registry.reconfigure(Rules.from_config(new), new.static_members, keys,
                                  time.monotonic_ns())
        self.admin.configure(new.pools)
        if self.checks is not None:
            self.checks.configure(new)
        self.monitor.configure(new.heartbeat.allow, new.heartbeat.rate_limit)
        self.monitor.publish()
        self.storage.configure(new)
        self.config = new
        self.tls = tls
        generation = self.generations.spawn(new, tls)
        self._set_config_generation(generation.number)
        log.info("reloading %s: generation %d starting %d workers", new.path,
                 generation.number, generation.size)

    # --- the loop

    def _loop(self) -> None:
        assert self.workers is not None
        # After an upgrade's hand-over, also until the new master says it took over.
        while not (self.stopping and not self.workers.processes and not self.upgrade.handed):
            try:
                self._iterate()
            except Exception:
                # A bug or an unexpected OS error must not take the master (and with it every
                # worker) down: log it, and the next iteration starts from a consistent state.
                log.exception("error in the master loop (continuing)")
                time.sleep(0.1)

    def _iterate(self) -> None:
        assert self.workers is not None and self.monitor is not None
        assert self.registry is not None and self.generations is not None
        for key, _ in self.selector.select(self._timeout()):
            try:
                key.data(key.fileobj)
            except Exception:
                log.exception("error in the master loop (continuing)")
        self._handle_signals()
        pending = self.generations.pending
        if self.adoption is not None and not self.adoption.announced:
            self._announce_when_serving()
        self.upgrade.expire(time.monotonic())
        for worker in self.workers.reap(self.upgrade.child_exited):
            if pending is not None and worker.generation == pending.number \
                    and not worker.draining:
                log.warning("reload: a new worker died before it was ready")
        self.workers.kill_overdue()
        if self.checks is not None:
            self.checks.tick()
        self.monitor.publish()
        if not self.handed_over:  # hb.dat is the new master's once an upgrade handed over
            self.storage.tick(self.config, self.registry, self.monitor)
        if self.control is not None:
            self.control.expire()
        self._watchdog()
        if (fresh := self.reresolver.check(self.config, time.monotonic())) is not None and \
                not self.stopping and not self.upgrade.active:
            self._reload(fresh)
        if self.handover.due(time.monotonic()) and not self.stopping:
            log.info("drain-front: closing the listeners")
            self._stop("graceful")
        if not self.stopping:
            self.workers.healthy()
            self.generations.maintain()
        elif time.monotonic() >= self.stop_deadline:
            for worker in self.workers.processes.values():
                signal_quietly(worker.pid, signal.SIGKILL)
            self.stop_deadline = time.monotonic() + 5

    def _timeout(self) -> float:
        assert self.registry is not None and self.workers is not None
        timeout = 0.5
        for deadline in (self.registry.next_deadline,
                         self.checks.next_wakeup() if self.checks is not None else 0):
            if deadline:
                timeout = min(timeout, max(0.0, (deadline - time.monotonic_ns()) / NS + 0.001))
        if self.workers.next_spawn_at:
            timeout = min(timeout, max(0.01, self.workers.next_spawn_at - time.monotonic()))
        if self.storage.active:
            timeout = min(timeout, 0.25)
        if self.monitor is not None and self.monitor.bump_pending:
            timeout = min(timeout, BUMP_INTERVAL)
        return self.handover.timeout(time.monotonic(), timeout)

    def _watchdog(self) -> None:
        """Once a second: kill workers that stopped ticking (they get replaced)."""
        assert self.workers is not None and self.generations is not None
        if time.monotonic() - self._last_watchdog >= 1.0:
            self._last_watchdog = time.monotonic()
            gens, config = self.generations, self.config
            self.workers.kill_stuck(lambda w: gens.config_of(w, config).proxy.worker_timeout)

    # --- worker messages

    def _register_worker(self, sock: socket.socket, worker: WorkerProcess) -> None:
        self.selector.register(sock, selectors.EVENT_READ,
                               lambda s: read_reports(worker, self._unregister, self._report))

    def _unregister(self, sock: socket.socket) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _report(self, worker: WorkerProcess, report: reports.Report) -> None:
        assert self.registry is not None and self.monitor is not None
        if isinstance(report, reports.Ready):
            worker.ready = True
        else:
            self.reports.apply(report, self.registry, self.monitor, self.config.pools)

    # --- signals

    def _record_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _on_wakeup(self, fileobj: object) -> None:
        try:
            os.read(self._wakeup_read, 4096)
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        assert self.workers is not None and self.generations is not None
        signals, self.signals = self.signals, []
        for signum in signals:
            if signum == signal.SIGHUP:
                if self.upgrade.active:
                    log.warning("reload ignored: an upgrade is in progress (the new master "
                                "reads the config file)")
                elif not self.stopping:
                    self._reload()
            elif signum == signal.SIGUSR2:
                error = self._begin_upgrade()
                if error:
                    log.error("upgrade (SIGUSR2) refused: %s", error.removeprefix("error "))
            elif signum == signal.SIGTERM:
                self._stop("fast" if self.stopping == "graceful" else "graceful")
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                self._stop("fast")
            elif signum == signal.SIGUSR1:
                logs.reopen()
                for worker in self.workers.processes.values():
                    signal_quietly(worker.pid, signal.SIGUSR1)
                log.info("log files reopened")
            elif signum in (signal.SIGTTIN, signal.SIGTTOU) and not self.stopping:
                self.generations.resize(+1 if signum == signal.SIGTTIN else -1)

    def _stop(self, how: str) -> None:
        assert self.workers is not None
        if self.stopping == "fast":
            return
        if self.upgrade.active:
            self.upgrade.fail("this master was told to stop")
        first = self.stopping is None
        self.stopping = how
        timeout = self.config.proxy.shutdown_timeout
        if how == "graceful":
            log.info("graceful stop: draining %d workers (up to %gs)",
                     len(self.workers.processes), timeout)
            for worker in self.workers.processes.values():
                self.workers.drain(worker, timeout)
            self.stop_deadline = time.monotonic() + timeout + 1.0
        else:
            log.info("fast stop%s", "" if first else " (second signal)")
            for worker in self.workers.processes.values():
                self.workers.stop_fast(worker)
            self.stop_deadline = time.monotonic() + 2.0
        # New connections are refused from now on, not queued where nobody will accept them.
        self.bindings.close_listeners_except(set())

    # --- end

    def _cleanup(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.checks is not None:
            self.checks.close()
        in_charge = not self.handed_over and (self.adoption is None or self.adoption.handed)
        if in_charge:  # else the hb.dat and pid file are another master's
            self.storage.stop(self.registry)
        if self.table is not None:
            self.table.unlink()
            try:
                self.table.close()
            except BufferError:
                pass  # a view is still exported; the mapping goes away with the process
        if self.config.pidfile and in_charge:
            release(self.config.pidfile, self.pid)
        self.bindings.close_all()
