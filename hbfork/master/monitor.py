"""The master's heartbeat monitor: datagrams in, member state into the table.

Every datagram is checked in order of cost: source allow-list, per-source rate limit, parse,
then the member rules (identity, signature). Each outcome is counted in the table header
(hbfork_heartbeats_total{result}); rejections are logged, at most once per source and reason
every 10 s. Nothing a datagram contains can raise out of here.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time

from hbfork.core import heartbeat
from hbfork.core.addresses import IPAddress, IPNetwork, ip_allowed, normalize_ip
from hbfork.core.balancer import WEIGHT_MASK
from hbfork.core.balancing import at_report
from hbfork.core.config import Config
from hbfork.core.errors import HeartbeatError
from hbfork.core.members import Change, Member, Registry
from hbfork.core.pool_admin import PoolAdmin
from hbfork.core.ratelimit import KeyedRateLimiter, LogLimiter
from hbfork.ops.hbdat import StoredServer, parse_storage
from hbfork.system import logs
from hbfork.table.layout import LOAD_MASK, W_LAST_HEARTBEAT_NS
from hbfork.table.table import Table

BATCH = 256  # datagrams per wake-up: the master loop must still see signals under a flood
BUMP_INTERVAL = 0.02  # seconds a mere change of ready may wait to be seen by workers
RECORDS_EVERY = 100_000_000  # ns: how often the list of live worker records is read again
log = logs.log


class Monitor:
    def __init__(self, registry: Registry, table: Table, allow: tuple[IPNetwork, ...],
                 rate_limit: float, admin: PoolAdmin | None = None) -> None:
        self.registry = registry
        self.table = table
        self.admin = admin or PoolAdmin()
        self.allow = allow
        self.limiter = KeyedRateLimiter(rate_limit, max(2.0, rate_limit * 2))
        self.log_limiter = LogLimiter(10.0)
        self.sock: socket.socket | None = None
        self._source_mtime = 0
        self.bump_pending = False  # weights changed, generation not yet bumped
        self._records: list[int] = []  # live worker records, for in-flight counts
        self._records_read = 0
        self.bumped_at = 0.0
        self.changed_at = 0.0  # monotonic seconds of the last pick-relevant change

    def configure(self, allow: tuple[IPNetwork, ...], rate_limit: float) -> None:
        self.allow = allow
        self.limiter = KeyedRateLimiter(rate_limit, max(2.0, rate_limit * 2))

    def on_readable(self, mask: int = 0) -> None:
        """Read up to BATCH datagrams, apply them, publish what changed."""
        sock = self.sock
        if sock is None:
            return
        for _ in range(BATCH):
            try:
                data, _, flags, address = sock.recvmsg(heartbeat.MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                log.warning("heartbeat socket: %s", err)
                break
            if flags & socket.MSG_TRUNC:
                self.table.count_heartbeat("truncated")
            self.receive(data, address[0])
        self.publish()

    def receive(self, data: bytes, host: str, now_ns: int | None = None,
                wall: float | None = None) -> str:
        """Handle one datagram from `host`; returns the result it was counted under."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        try:
            source = normalize_ip(ipaddress.ip_address(host.split("%", 1)[0]))
            result = self._receive(data, source, now_ns, time.time() if wall is None else wall)
        except Exception:  # a bug must cost one datagram, never the master
            log.exception("internal error handling a heartbeat from %s", host)
            result = "internal_error"
        self.table.count_heartbeat(result)
        if result == "accepted":
            self.table.set_header(W_LAST_HEARTBEAT_NS, now_ns)
        return result

    def _receive(self, data: bytes, source: IPAddress, now_ns: int, wall: float) -> str:
        if not ip_allowed(source, self.allow):
            self._reject(source, "not_allowed", "source not in [heartbeat] allow", now_ns)
            return "not_allowed"
        if not self.limiter.allow(source, now_ns / 1e9):
            self._reject(source, "rate_limited", "over [heartbeat] rate_limit", now_ns)
            return "rate_limited"
        try:
            beat = heartbeat.parse(data)
            updated = self.registry.apply(source, beat, now_ns, wall)
        except HeartbeatError as err:
            self._reject(source, err.reason, err.detail, now_ns)
            return err.reason
        self._note_in_flight(updated, now_ns)
        return "accepted"

    def _note_in_flight(self, members: list[Member], now_ns: int) -> None:
        """What this front had in flight to each member when its report arrived: the report's
        busy workers already include those (see hbfork.core.balancing)."""
        if now_ns - self._records_read > RECORDS_EVERY:
            self._records = self.table.workers.live_bases()
            self._records_read = now_ns
        for member in members:
            flying = self.table.workers.in_flight(member.slot, member.uid, self._records)
            share, member.others_seen = at_report(flying, member.busy, member.others_seen)
            member.at_report = min(share, LOAD_MASK)

    def read_source_file(self, path: str, now_ns: int, wall: float) -> None:
        """Apply another monitor's hb.dat (`[heartbeat] source = "file:PATH"`).

        Apache's lbmethod_heartbeat trusts `lastseen` as written, so a dead monitor's frozen
        file keeps every member alive forever; here the file's own age is added to it."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return
        if info.st_mtime_ns == self._source_mtime:
            return  # unchanged: the members it named age on their own
        self._source_mtime = info.st_mtime_ns
        with open(path, encoding="latin-1") as handle:
            servers, problems = parse_storage(handle.read())
        file_age = max(0.0, wall - info.st_mtime)
        for problem in problems:
            self._reject_file(path, problem, now_ns)
        for server in servers:
            seen = now_ns - int((server.lastseen + file_age) * 1e9)
            result = self._apply_stored(server, now_ns, wall, seen)
            self.table.count_heartbeat(result)
            if result == "accepted":
                self.table.set_header(W_LAST_HEARTBEAT_NS, now_ns)

    def start_members(self, config: Config) -> None:
        """No 503s at start: restore the last hb.dat (a restart keeps the members' state)
        and begin the startup grace for members still unheard (core.members.evaluate)."""
        now = time.monotonic_ns()
        self.registry.start_grace(now)
        storage = config.resolve(config.heartbeat.storage)
        if storage:
            restored = self.restore(storage, now, time.time())
            if restored:
                log.info("restored %d members from %s", restored, storage)

    def restore(self, path: str, now_ns: int, wall: float) -> int:
        """At start, take back the state our own hb.dat recorded before a restart, its age
        corrected as for a source file; returns how many members came back eligible-fresh.

        Entries already older than max_age are skipped (they would be stale at once). Not
        counted as heartbeats: nothing was received, so /healthz still waits for a real one."""
        try:
            info = os.stat(path)
            with open(path, encoding="latin-1") as handle:
                servers, _ = parse_storage(handle.read())
        except (OSError, ValueError) as err:
            log.warning("cannot restore members from %s: %s", path, err)
            return 0
        file_age = max(0.0, wall - info.st_mtime)
        restored = 0
        for server in servers:
            seen = now_ns - int((server.lastseen + file_age) * 1e9)
            if now_ns - seen < self.registry.rules.max_age and \
                    self._apply_stored(server, now_ns, wall, seen) == "accepted":
                restored += 1
        return restored

    def _apply_stored(self, server: StoredServer, now_ns: int, wall: float, seen: int) -> str:
        beat = heartbeat.Heartbeat(server.ready, server.busy, server.port)
        try:
            try:
                self.registry.apply(server.ip, beat, now_ns, wall, seen=seen)
            except HeartbeatError as err:
                if err.reason != "unknown_port":
                    raise
                # mod_heartmonitor writes port=80 for every sender that did not say (Apache's
                # mod_heartbeat never does): then the IP alone names the member, as over UDP.
                beat = heartbeat.Heartbeat(server.ready, server.busy, None)
                self.registry.apply(server.ip, beat, now_ns, wall, seen=seen)
        except HeartbeatError as err:
            self._reject(server.ip, err.reason, err.detail, now_ns)
            return err.reason
        return "accepted"

    def _reject_file(self, path: str, problem: str, now_ns: int) -> None:
        if self.log_limiter.should_log((path, problem), now_ns / 1e9) is not None:
            log.warning("storage file %s: %s", path, problem)
        self.table.count_heartbeat("malformed")

    def _reject(self, source: IPAddress, reason: str, detail: str, now_ns: int) -> None:
        more = self.log_limiter.note((source, reason), now_ns / 1e9)
        if more is not None:
            log.warning("heartbeat from %s rejected: %s: %s%s", source, reason, detail, more)

    def publish(self, now: float | None = None) -> None:
        """Write dirty members to the table and bump the generation when a pick could change.

        A member joining or leaving the pick (or changing lbset) is published at once. A new
        ready value of a member that stays eligible waits up to BUMP_INTERVAL: with a thousand
        members beating every second, a bump per heartbeat would have each worker rebuilding
        its picker a thousand times a second."""
        registry, table = self.registry, self.table
        registry.expire(time.monotonic_ns())
        urgent = False
        for slot, member in registry.take_dirty():
            before = table.weight_word(slot)
            if table.uid(slot) != (member.uid if member else 0):
                self.admin.dirty = True  # pool states are published by uid
            if table.write_member(slot, member):
                self.bump_pending = True
                after = table.weight_word(slot)
                urgent |= not (before & WEIGHT_MASK and after & WEIGHT_MASK
                               and before >> 32 == after >> 32)
        if self.admin.dirty:
            self.admin.dirty = False
            entries = self.admin.entries(registry.find)
            if table.write_admin(entries) < len(entries):
                log.error("%d pool states do not fit in the table; the rest are ignored",
                          len(entries) - table.admin_capacity)
            self.bump_pending = urgent = True
        now = time.monotonic() if now is None else now
        if self.bump_pending and (urgent or now - self.bumped_at >= BUMP_INTERVAL):
            table.bump_generation()
            self.bump_pending = False
            self.bumped_at = self.changed_at = now
        for change in registry.take_changes():
            _log_change(change)
        for note in registry.take_notes():
            log.warning("%s", note)


def _log_change(change: Change) -> None:
    member = change.member
    if change.after == "eligible":
        log.info("member %s is eligible (ready %d, lbset %d; was %s)", member.label,
                 member.ready, member.lbset, change.before)
    elif change.before == "eligible" or change.after == "forgotten":
        log.warning("member %s is no longer eligible: %s", member.label, change.after)
    else:
        log.info("member %s: %s (was %s)", member.label, change.after, change.before)
