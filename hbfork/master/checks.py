"""Active health checks, run by the master inside its one selector loop (never by workers:
once per front, whatever the number of workers).

Each check of a member is a Probe: a non-blocking socket that connects, makes its TLS
handshake where the pool talks TLS to its members (with the pool's own client context: same CA,
verification and server name as the requests), sends the check request
(hbfork.core.hcheck.request) with partial writes handled, and feeds what it reads to the
check's reader until that reaches a verdict. Probes are registered in the master's selector
with themselves as the callback, like every other master socket; a check that hangs ends at
its deadline, which tick() enforces and next_wakeup() puts into the master's select timeout.
Nothing here blocks: addresses are IPs (no resolving), connects are non-blocking, and every
socket call that could wait returns EAGAIN instead. Results go to the registry as a Summary
(Registry.set_check), which the monitor publishes to the table.

A member listed in several pools with different checks gets each distinct check; it is out
while any of them fails.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hbfork.core import hcheck
from hbfork.core.addresses import Endpoint
from hbfork.core.config import Config
from hbfork.core.errors import HbforkError
from hbfork.core.hcheck import CheckState, HcheckSettings, Verdict
from hbfork.core.members import Member, Registry
from hbfork.core.pool_settings import PoolSettings
from hbfork.system.tls import client_context

log = logging.getLogger("hbfork.master")
NS = 1_000_000_000
MAX_IN_FLIGHT = 256      # probes open at once; the rest wait for the next tick
SCAN_EVERY = NS          # how often the member list is looked at for new or gone checks
READ_SIZE = 16 * 1024
CONNECTING, HANDSHAKE, SENDING, READING = range(4)  # a probe's phases


@dataclass(frozen=True, slots=True)
class MemberTls:
    """How a pool talks TLS to its members: what a check over TLS must do the same way."""

    pool: str
    verify: bool
    ca: str | None
    server_name: str


@dataclass(frozen=True, slots=True)
class Check:
    """One active check as a probe runs it: its settings, over TLS or not."""

    settings: HcheckSettings
    tls: MemberTls | None = None


# A context per pool's TLS settings, made when a check first needs it (None: it could not be
# made; the check fails as a TLS failure and the reason is logged once).
TlsContextFor = Callable[[MemberTls], "ssl.SSLContext | None"]


@dataclass(slots=True)
class Track:
    """One check of one member: its count, when it runs next, the probe in flight."""

    settings: HcheckSettings
    state: CheckState = field(default_factory=CheckState)
    due: int = 0
    probe: Probe | None = None


class Probe:
    """One check in flight: connect, (TLS handshake,) send, read, judge."""

    __slots__ = ("checks", "deadline", "key", "out", "phase", "reader", "sock", "started",
                 "tls")

    def __init__(self, checks: Checks, key: tuple[int, Check], endpoint: Endpoint,
                 now: int) -> None:
        settings = key[1].settings
        self.checks, self.key, self.started = checks, key, now
        self.deadline = now + int(settings.hctimeout * NS)
        self.reader = hcheck.reader(settings)
        self.out = hcheck.request(settings, str(endpoint))
        family = socket.AF_INET6 if endpoint.ip.version == 6 else socket.AF_INET
        self.sock: socket.socket = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        # A TCP check only connects: no handshake even to a TLS pool (Apache's "tcp" either)
        self.tls = key[1].tls if settings.hcmethod != "tcp" else None
        self.phase = CONNECTING

    def start(self, endpoint: Endpoint) -> Verdict | None:
        code = self.sock.connect_ex(endpoint.sockaddr)
        if code not in (0, errno.EINPROGRESS):
            return _connect_failed(code)
        self.checks.selector.register(self.sock, selectors.EVENT_WRITE, self.on_ready)
        return None

    def on_ready(self, _fileobj: object = None) -> None:
        """The selector's callback: the socket is writable (connected) or readable."""
        try:
            verdict = self._step()
        except (BlockingIOError, InterruptedError):
            return
        except ssl.SSLWantReadError:
            return self._wait(selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            return self._wait(selectors.EVENT_WRITE)
        except ssl.SSLError:
            verdict = Verdict(False, hcheck.R_TLS if self.phase == HANDSHAKE
                              else hcheck.R_MALFORMED)
        except ConnectionResetError:
            verdict = Verdict(False, hcheck.R_RESET)
        except OSError:
            verdict = Verdict(False, hcheck.R_TLS if self.phase == HANDSHAKE
                              else hcheck.R_ERROR)
        if verdict is not None:
            self.checks.finish(self, verdict)

    def _wait(self, events: int) -> None:
        if self.checks.selector.get_key(self.sock).events != events:
            self.checks.selector.modify(self.sock, events, self.on_ready)

    def _step(self) -> Verdict | None:
        if self.phase == CONNECTING:
            return self._connected()
        if self.phase == HANDSHAKE:
            return self._handshake()
        if self.phase == SENDING:
            return self._send()
        return self.reader.feed(self.sock.recv(READ_SIZE))

    def _connected(self) -> Verdict | None:
        """The connect finished: a TCP check passes; on to the handshake or to sending."""
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            return _connect_failed(code)
        if not self.out:  # hcmethod tcp: connected is passed
            return Verdict(True, hcheck.R_PASSED)
        if self.tls is None:
            self.phase = SENDING
            return self._send()
        context = self.checks.tls_context(self.tls)
        if context is None:
            return Verdict(False, hcheck.R_TLS)
        self.checks.selector.unregister(self.sock)
        # The name the requests send (default: the member's IP), checked in its certificate
        name = self.tls.server_name or self.sock.getpeername()[0]
        self.sock = context.wrap_socket(self.sock, server_hostname=name,
                                        do_handshake_on_connect=False)
        self.checks.selector.register(self.sock, selectors.EVENT_WRITE, self.on_ready)
        self.phase = HANDSHAKE
        return self._handshake()

    def _handshake(self) -> Verdict | None:
        assert isinstance(self.sock, ssl.SSLSocket)
        self.sock.do_handshake()  # SSLWant* go up to on_ready, which waits for that event
        self.phase = SENDING
        self._wait(selectors.EVENT_WRITE)
        return self._send()

    def _send(self) -> Verdict | None:
        sent = self.sock.send(self.out)
        self.out = self.out[sent:]
        if not self.out:
            self.phase = READING
            self._wait(selectors.EVENT_READ)
        return None

    def close(self) -> None:
        try:
            self.checks.selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()


def _member_tls(pool: PoolSettings) -> MemberTls | None:
    if not pool.tls:
        return None
    return MemberTls(pool.name, pool.tls_verify, pool.tls_ca or None, pool.tls_server_name)


def _connect_failed(code: int) -> Verdict:
    return Verdict(False, hcheck.R_REFUSED if code == errno.ECONNREFUSED else hcheck.R_ERROR)


class Checks:
    """Every active check of the front: scheduling, probes, results into the registry."""

    def __init__(self, selector: selectors.BaseSelector, registry: Registry,
                 publish: Callable[[], None]) -> None:
        self.selector = selector
        self.registry = registry
        self.publish = publish
        self.listed: dict[Endpoint, tuple[Check, ...]] = {}
        self.discovered: tuple[Check, ...] = ()
        self.tracks: dict[tuple[int, Check], Track] = {}
        self.contexts: dict[MemberTls, ssl.SSLContext | None] = {}
        self.config: Config | None = None
        self.in_flight = 0
        self.next_at = 0
        self._scanned = 0

    @property
    def active(self) -> bool:
        return bool(self.listed or self.discovered)

    def configure(self, config: Config) -> None:
        """The checks `config` asks for; kept state of the checks that stay the same."""
        listed: dict[Endpoint, list[Check]] = {}
        for pool in config.pools:
            for member in pool.members:
                check = Check(pool.check_of(member), _member_tls(pool))
                if check.settings.enabled and check not in listed.setdefault(member.address, []):
                    listed[member.address].append(check)
        self.listed = {address: tuple(checks) for address, checks in listed.items() if checks}
        found = next((p for p in config.pools if p.discover), None)
        self.discovered = (Check(found.hcheck, _member_tls(found)),) \
            if found is not None and found.hcheck.enabled else ()
        self.config = config
        self.contexts.clear()  # a reload may bring a new CA file: made again when needed
        self.next_at = 0  # scan now: checks may have come or gone

    def tls_context(self, tls: MemberTls) -> ssl.SSLContext | None:
        """The client context of `tls` (made once per configuration; None: it cannot be)."""
        if tls not in self.contexts:
            try:
                assert self.config is not None
                self.contexts[tls] = client_context(self.config, tls.pool, tls.verify,
                                                    self.config.resolve(tls.ca))
            except HbforkError as err:
                log.warning("active checks over TLS of pool %r cannot run: %s", tls.pool, err)
                self.contexts[tls] = None
        return self.contexts[tls]

    def checks_of(self, member: Member) -> tuple[Check, ...]:
        found = self.listed.get(member.endpoint)
        if found is not None:
            return found
        return () if member.static else self.discovered

    def next_wakeup(self) -> int:
        """Monotonic ns the master should call tick() at (0: nothing to do)."""
        return self.next_at if self.active or self.tracks else 0

    def tick(self, now: int | None = None) -> None:
        """Start the checks that are due, end the ones past their deadline."""
        now = time.monotonic_ns() if now is None else now
        if now < self.next_at:
            return
        wanted = set()
        next_at = now + SCAN_EVERY
        for member in list(self.registry.members.values()):
            for check in self.checks_of(member):
                key = (member.uid, check)
                wanted.add(key)
                track = self.tracks.get(key)
                if track is None:
                    track = self.tracks[key] = Track(check.settings, due=hcheck.first_due(
                        now, check.settings.hcinterval, str(member.endpoint)))
                self._run(track, key, member, now)
                next_at = min(next_at, track.probe.deadline if track.probe else track.due)
        for key in [k for k in self.tracks if k not in wanted]:
            self._drop(key, now)
        self.next_at = max(next_at, now + 1_000_000)  # at most one scan a millisecond

    def _run(self, track: Track, key: tuple[int, Check], member: Member,
             now: int) -> None:
        if track.probe is not None:
            if now >= track.probe.deadline:
                self.finish(track.probe, Verdict(False, hcheck.R_TIMEOUT), now)
            return
        if now < track.due or self.in_flight >= MAX_IN_FLIGHT:
            return
        try:
            probe = Probe(self, key, member.endpoint, now)
        except OSError as err:  # out of file descriptors, say: try again next time
            track.due = now + int(track.settings.hcinterval * NS)
            log.warning("cannot start the active check of %s: %s", member.label, err)
            return
        track.probe = probe
        self.in_flight += 1
        try:
            verdict = probe.start(member.endpoint)
        except OSError:
            verdict = Verdict(False, hcheck.R_ERROR)
        if verdict is not None:
            self.finish(probe, verdict, now)

    def finish(self, probe: Probe, verdict: Verdict, now: int | None = None) -> None:
        """A probe reached its verdict: count it, schedule the next, tell the registry."""
        now = time.monotonic_ns() if now is None else now
        probe.close()
        track = self.tracks.get(probe.key)
        if track is None or track.probe is not probe:
            return
        track.probe = None
        self.in_flight -= 1
        settings = track.settings
        # The next check starts one interval after this one started (not after it ended: a
        # slow member is not checked less often), and never at once.
        track.due = max(probe.started + int(settings.hcinterval * NS), now + NS // 10)
        self.next_at = min(self.next_at, track.due) if self.next_at else track.due
        flipped = track.state.record(verdict, settings, now)
        self._report(probe.key[0], now, flipped, settings, verdict)

    def _report(self, uid: int, now: int, flipped: bool, settings: HcheckSettings,
                verdict: Verdict) -> None:
        member = next((m for m in self.registry.members.values() if m.uid == uid), None)
        if member is None:
            return
        states = [t.state for (u, _), t in self.tracks.items() if u == uid]
        self.registry.set_check(member.slot, uid, hcheck.summarize(states), now)
        if flipped:
            what = hcheck.describe(verdict.result, verdict.status)
            if verdict.passed:
                log.info("member %s passes its active check again (%s: %s)", member.label,
                         settings.label, what)
            else:
                log.warning("member %s fails its active check (%s: %s, %d in a row): out "
                            "until it passes %d", member.label, settings.label, what,
                            settings.hcfails, settings.hcpasses)
        self.publish()

    def _drop(self, key: tuple[int, Check], now: int) -> None:
        """A check no longer configured (or its member gone): stop it, forget its count."""
        track = self.tracks.pop(key)
        if track.probe is not None:
            track.probe.close()
            self.in_flight -= 1
        uid = key[0]
        member = next((m for m in self.registry.members.values() if m.uid == uid), None)
        if member is not None:
            states = [t.state for (u, _), t in self.tracks.items() if u == uid]
            self.registry.set_check(member.slot, uid, hcheck.summarize(states), now)
            self.publish()

    def fds(self) -> list[int]:
        """The probes' sockets: a forked worker must not keep them open."""
        return [t.probe.sock.fileno() for t in self.tracks.values() if t.probe is not None]

    def close(self) -> None:
        for key in list(self.tracks):
            track = self.tracks.pop(key)
            if track.probe is not None:
                track.probe.close()
        self.in_flight = 0
