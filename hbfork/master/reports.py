"""The master's side of what workers report (hbfork.core.reports): members in error after a
failed connect, and ejections asked by the workers' outlier detectors, applied to the
registry for the whole front and said once in the error log; heartbeats POSTed to a worker
([heartbeat] http_path), handled exactly as datagrams from the same IP."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence

from hbfork.core.members import NS, Registry
from hbfork.core.outlier import CAUSES
from hbfork.core.pool_settings import PoolSettings
from hbfork.core.reports import MAX_MESSAGE, Beat, ConnectFailed, Eject, Report, decode
from hbfork.master.monitor import Monitor
from hbfork.master.workers import WorkerProcess

log = logging.getLogger("hbfork.master")


class MemberReports:
    """Applies ConnectFailed and Eject reports; remembers what it said about refusals."""

    def __init__(self) -> None:
        self._refusals: dict[int, int] = {}  # member uid -> ns a refusal was last logged

    def apply(self, report: ConnectFailed | Eject | Beat, registry: Registry, monitor: Monitor,
              pools: Sequence[PoolSettings]) -> None:
        if isinstance(report, Beat):
            monitor.receive(report.body, report.ip)  # allow-list, rate limit, rules, counters
            monitor.publish()
        elif isinstance(report, ConnectFailed):
            self._connect_failed(report, registry, monitor)
        else:
            self._eject(report, registry, monitor, pools)

    def _connect_failed(self, report: ConnectFailed, registry: Registry,
                        monitor: Monitor) -> None:
        retry = report.retry_ms * 1_000_000 if report.retry_ms is not None else None
        member = registry.mark_error(report.slot, report.uid, time.monotonic_ns(), retry)
        if member is not None:
            log.warning("member %s in error for %gs: connect failed (%s)", member.label,
                        (retry if retry is not None else registry.rules.retry) / NS,
                        report.reason)
            monitor.publish()

    def _eject(self, report: Eject, registry: Registry, monitor: Monitor,
               pools: Sequence[PoolSettings]) -> None:
        now = time.monotonic_ns()
        member = registry.members.get(report.slot)
        if member is None:
            return
        done = registry.eject(report.slot, report.uid, report.cause, now,
                              registry.pool_groups(member, pools))
        if done is None:
            return
        why = CAUSES[report.cause] if 0 < report.cause < len(CAUSES) else "?"
        if done.refused:
            # Said once per member and eject_time: every worker asks again after a second.
            last = self._refusals.get(member.uid)
            if last is None or now - last >= registry.rules.outlier.eject_time * NS:
                self._refusals[member.uid] = now
                log.warning("member %s fails (%s) but stays in: its pool has as many members "
                            "ejected as [outlier] max_ejected_share allows", member.label, why)
            return
        log.warning("member %s ejected for %gs: %s (ejection %d in a row)", member.label,
                    done.seconds, why, member.ejections)
        monitor.publish()


def read_reports(worker: WorkerProcess, unregister: Callable[[socket.socket], None],
                 handle: Callable[[WorkerProcess, Report], None]) -> None:
    """Take what `worker` reported (at most 64 messages a turn, so that one chatty worker
    cannot hold the master's loop); malformed messages are ignored."""
    for _ in range(64):
        try:
            message = worker.sock.recv(MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        if not message:
            unregister(worker.sock)  # it exited; SIGCHLD and reap() do the rest
            return
        report = decode(message)
        if report is not None:
            handle(worker, report)
