"""Translate a walked Apache config into hbfork settings [pure].

`translate(walked)` runs hbfork.apache.collect's Collector over the directives, makes the
listeners, certificates and [tls] (hbfork.apache.listeners: which Listen ports talk TLS, which
only redirect to https, and so whose vhosts' ProxyPass lines route), the pools
(hbfork.apache.pools) and the routes (hbfork.apache.vhosts, hbfork.apache.routes), then
decides each server-wide hbfork setting: [proxy] listen, user, group and retry; [status]
listen when Apache's ports need its default; [heartbeat] listen, storage, source and
max_members from HeartbeatListen/MaxServers/Storage; [http] timeouts and forwarded_headers
from Timeout, KeepAliveTimeout, ProxyTimeout and ProxyAddHeaders. Every choice is written down
next to the setting it made; a directive nothing could be made of becomes a Note. Values are
kept inside hbfork's own limits, so the result always loads.
"""

from __future__ import annotations

from collections.abc import Collection  # `set` is a method's name in Translator
from dataclasses import dataclass
from typing import Any

from hbfork.apache import headers
from hbfork.apache.beats import plan_beats
from hbfork.apache.collect import Collector
from hbfork.apache.conf import (
    Directive,
    Note,
    Setting,
    parse_duration,
    resolve_path,
    undefined_note,
    undefined_variables,
)
from hbfork.apache.include import Walked
from hbfork.apache.listeners import TablePlan, plan_front
from hbfork.apache.logs import plan_logs
from hbfork.apache.pools import PoolBook, PoolPlan
from hbfork.apache.remoteip import apply_proxy_protocol, plan_remoteip
from hbfork.apache.routes import UNUSABLE, RoutePlan
from hbfork.apache.vhosts import plan_routes
from hbfork.core.addresses import Endpoint, parse_endpoint
from hbfork.core.pool_settings import MAX_POOLS
from hbfork.core.settings import StatusSettings

APACHE_DEFAULT_RETRY = 60
MAX_MEMBERS = 65535                     # hbfork's limit on [heartbeat] max_members
# Where a front that read another monitor's file (no HeartbeatListen) takes heartbeats: hbfork
# always opens a heartbeat socket, and its default, a multicast group, needs a route.
LOOPBACK_HEARTBEAT = "127.0.0.1:27999"


@dataclass
class Translation:
    """Everything render() needs: settings by section, pools, routes, and what was left
    out."""

    sections: dict[str, list[Setting]]
    listens: list[TablePlan]
    certificates: list[TablePlan]
    pools: list[PoolPlan]
    routes: list[RoutePlan]
    notes: list[Note]
    remarks: list[str]
    unrelated: int
    skipped: int


class Translator:
    """Collected directives -> hbfork settings. Every choice it makes is written down as a
    comment next to the setting, or as a note when nothing could be made of a directive."""

    def __init__(self, walked: Walked) -> None:
        self.walked = walked
        self.collected = Collector()
        self.collected.visit(walked.directives)
        self.notes: list[Note] = list(walked.notes)
        self.remarks: list[str] = []
        self.sections: dict[str, list[Setting]] = {"proxy": [], "heartbeat": [], "http": [],
                                                   "tls": [], "status": [], "log": []}
        self.listens: list[TablePlan] = []
        self.certificates: list[TablePlan] = []
        self.skipped = 0                  # collected lines the front needed nothing from
        self.pools: list[PoolPlan] = []
        self.routes: list[RoutePlan] = []
        self.ports: set[int] = set()  # what hbfork listens on: the vhosts it takes
        self.redirected: set[int] = set()  # ports that only redirect to https

    def translate(self) -> Translation:
        self._listen()
        self._pools_and_routes()
        self._heartbeat()
        self._timeouts()
        self._user()
        self._remoteip()
        # the main server's RequestHeader/Header rules apply to every request (hbfork.apache.
        # headers); a vhost's and a Location's are their routes'
        for key, found in headers.rules([self.collected.servers[0].block]).items():
            self.set("http", key, [text for text, _ in found],
                     "; ".join(f"{d.text} ({d.where})" for _, d in found))
        self.notes += headers.unplaced(self.collected.servers)
        logs = plan_logs(self.collected.logs, self.walked.server_root)
        self.sections["log"], self.notes = logs.settings, self.notes + logs.notes
        self.notes.extend(self.collected.notes)
        order = {path: index for index, path in enumerate(self.walked.files)}
        self.notes.sort(key=lambda n: (order.get(n.file, len(order)), n.line))
        return Translation(self.sections, self.listens, self.certificates, self.pools,
                           self.routes, _unique(self.notes), self.remarks,
                           self.collected.unrelated + self.skipped, self.walked.skipped)

    @property
    def addresses(self) -> list[str]:
        """Every member address, once (a member of several pools is one member)."""
        return list(dict.fromkeys(m.address for p in self.pools for m in p.members))

    def set(self, section: str, key: str, value: Any, comment: str = "") -> None:
        settings = self.sections[section]
        settings[:] = [s for s in settings if s.key != key]
        settings.append(Setting(key, value, comment))

    def server(self, key: str) -> Directive | None:
        return self.collected.server.get(key)

    def _defined(self, d: Directive, value: str) -> bool:
        note = undefined_note(d, value)
        if note is not None:
            self.notes.append(note)
        return note is None

    # --- listeners, TLS, [proxy] mode and user

    def _listen(self) -> None:
        front = plan_front(self.collected, self.walked.server_root)
        self.notes += front.notes
        self.remarks += front.remarks
        self.skipped = front.skipped
        self.ports = front.route_ports
        self.redirected = front.redirect_ports
        self.listens, self.certificates = front.listens, front.certificates
        self.sections["tls"] = front.tls
        if front.endpoints and not front.listens:
            sources = "; ".join(f"{d.text} ({d.where})" for d in front.sources)
            self.set("proxy", "listen", [str(e) for e in front.endpoints], "from " + sources)
        if front.endpoints:
            self._status_listen(front.endpoints)
        else:
            self.remarks.append("No usable Listen directive: hbfork's default listen address "
                                "is kept.")
        self.set("proxy", "mode", "http", "mod_proxy_http: requests are routed and balanced one "
                                          "by one")

    def _status_listen(self, endpoints: list[Endpoint]) -> None:
        """Move hbfork's status page off a port Apache served on: it would fail to bind."""
        status = StatusSettings().listen
        assert status is not None
        clash = [e for e in endpoints if e.port == status.port and e.family == status.family
                 and (e.ip == status.ip or e.ip.is_unspecified)]
        if not clash:
            return
        used = {e.port for e in endpoints}
        port = next(p for p in range(status.port + 1, 65536) if p not in used)
        self.set("status", "listen", str(Endpoint(status.ip, port)),
                 f"hbfork's default status address {status} is taken by [proxy] listen "
                 f"{clash[0]}")

    def _user(self) -> None:
        for key in ("user", "group"):
            d = self.server(key)
            if d is None or not d.args:
                continue
            value = d.args[0]
            if not self._defined(d, value):
                continue
            if value.startswith("#"):
                self.notes.append(Note.of(d, "hbfork needs a user or group name"))
                continue
            self.set("proxy", key, value, f"{d.text} ({d.where}): hbfork drops to it after "
                                          "binding (Apache's children ran as it)")

    # --- pools and routes

    def _pools_and_routes(self) -> None:
        book = PoolBook(self.collected, self.walked.server_root)
        planned = plan_routes(self.collected, book, self.ports, self.redirected)
        self.notes += book.notes + planned.notes
        self.remarks += planned.remarks
        self.routes = planned.routes
        used = {r.pool for r in self.routes if r.passes}
        self.pools = self._at_most(list(book.pools.values()), used)
        for pool in self.pools:
            if self.routes and pool.name not in used:
                pool.comments.append("no route sends requests here (nothing in the Apache "
                                     "config that hbfork translates did either)")
        if self.pools and not self.routes:
            self.remarks.append(f"No ProxyPass to translate: with no [[route]], hbfork sends "
                                f"every request to the pool {self.pools[0].name!r}.")
        if not self.pools:
            self.set("heartbeat", "discover", True,
                     "no members translated: admit any heartbeat sender (list [[pool]]s and "
                     "remove this to restrict)")

    def _at_most(self, pools: list[PoolPlan], used: Collection[str]) -> list[PoolPlan]:
        """hbfork's limit on pools: the ones routes use first; the routes to the pools left out
        are answered 503 (and noted), not sent elsewhere."""
        ranked = sorted(pools, key=lambda p: p.name not in used)  # stable: file order kept
        kept = {p.name for p in ranked[:MAX_POOLS]}
        for pool in ranked[MAX_POOLS:]:
            self.notes.append(Note.of(pool.source, f"hbfork has at most {MAX_POOLS} pools: "
                                                   f"{pool.name!r} is left out"))
        for route in self.routes:
            if route.passes and route.pool not in kept:
                route.passes, route.status, route.pool = False, UNUSABLE, ""
                route.comments.append(f"its pool is left out (see the notes): answered "
                                      f"{UNUSABLE}")
        return [p for p in pools if p.name in kept]

    # --- [heartbeat]

    def _heartbeat(self) -> None:
        listen = self.server("heartbeatlisten")
        if listen is not None and listen.args:
            self._heartbeat_listen(listen)
            self._max_servers()
        elif any(p.lbmethod == "heartbeat" for p in self.pools) and \
                (storage := self._storage_path()):
            self._file_source(storage)
        if len(self.addresses) > 256:
            self.set("heartbeat", "max_members", len(self.addresses))
        self._beat_location()

    def _beat_location(self) -> None:
        """<Location PATH> SetHandler heartbeat: heartbeats by POST (hbfork.apache.beats)."""
        plan = plan_beats(self.collected.servers)
        self.notes += plan.notes
        for key, value, comment in plan.settings:
            self.set("heartbeat", key, value, comment)
        if plan.settings and all(s.key != "listen" for s in self.sections["heartbeat"]):
            self.set("heartbeat", "listen", LOOPBACK_HEARTBEAT,
                     "no HeartbeatListen: heartbeats come by POST only, so the UDP socket "
                     "hbfork always opens stays on loopback")

    def _file_source(self, storage: str) -> None:
        self.set("heartbeat", "source", f"file:{storage}",
                 "no HeartbeatListen: this front read heartbeats from a file another "
                 "monitor writes (lbmethod_heartbeat's HeartbeatStorage)")
        self.set("heartbeat", "listen", LOOPBACK_HEARTBEAT,
                 "this front received no heartbeats itself: loopback only (hbfork's default, "
                 "a multicast group, needs a route)")
        others = [a for a in self.addresses if not a.endswith(":80")]
        if others:
            self.remarks.append(
                "If mod_heartmonitor writes the heartbeat file: it writes port=80 for every "
                "backend that sends no port= (Apache's mod_heartbeat never does), and hbfork "
                "matches a line to a member by IP and port, so the lines for "
                f"{', '.join(others)} would be rejected (unknown_port). Better: point the "
                "backends' HeartbeatAddress at hbfork's [heartbeat] listen and drop source.")

    def _heartbeat_listen(self, d: Directive) -> None:
        if not self._defined(d, d.args[0]):
            return
        try:
            endpoint = parse_endpoint(d.args[0])
        except ValueError as err:
            self.notes.append(Note.of(d, str(err)))
            return
        self.set("heartbeat", "listen", str(endpoint), f"{d.text} ({d.where})")

    def _max_servers(self) -> None:
        d = self.server("heartbeatmaxservers")
        if d is None:
            return
        if not (d.args and d.args[0].isdigit()):
            self.notes.append(Note.of(d, "not a number"))
        elif int(d.args[0]) == 0:
            if storage := self._storage_path():
                self.set("heartbeat", "storage", storage,
                         f"{d.text} ({d.where}): Apache kept heartbeats in this file. hbfork "
                         "needs none, but writes it (same format) for anything else that "
                         "reads it, as [proxy] user, who must be able to write there. Remove "
                         "this line if nothing reads it.")
        else:
            slots = min(max(int(d.args[0]), len(self.addresses)), MAX_MEMBERS)
            self.set("heartbeat", "max_members", slots, f"{d.text} ({d.where}): table slots"
                     + (f" (hbfork's limit is {MAX_MEMBERS})" if slots == MAX_MEMBERS else ""))

    def _storage_path(self) -> str | None:
        """Where Apache's heartbeat file is: HeartbeatStorage, relative to the runtime dir."""
        d = self.server("heartbeatstorage")
        path = d.args[0] if d is not None and d.args else "hb.dat"
        full = resolve_path(self.walked.runtime_dir, path)
        if undefined_variables(full):
            self.remarks.append(f"The heartbeat file {full} uses a variable not defined here "
                                "(see --envvars): [heartbeat] storage/source left out.")
            return None
        return full

    # --- [http] and [proxy] timing

    def _timeouts(self) -> None:
        self._server_duration("timeout", "client_timeout")
        self._server_duration("keepalivetimeout", "keepalive_timeout")
        self._server_flags()
        if self.pools:
            self.set("proxy", "retry", APACHE_DEFAULT_RETRY,
                     "Apache's default retry=60 (hbfork's own default is 10)")
        for key in ("proxytimeout", "timeout"):
            d = self.server(key)
            if d is not None and d.args:
                self._http_timeout("response_timeout", parse_duration(d.args[0]),
                                   f"{d.text} ({d.where})", 86400)
                break

    def _http_timeout(self, key: str, value: float | None, label: str, high: float) -> None:
        if value is not None and 0 < value <= high:
            self.set("http", key, value, label)

    def _server_duration(self, directive: str, key: str) -> None:
        d = self.server(directive)
        if d is not None and d.args:
            self._http_timeout(key, parse_duration(d.args[0]), f"{d.text} ({d.where})", 86400)

    def _remoteip(self) -> None:
        """mod_remoteip's directives (hbfork.apache.remoteip)."""
        plan = plan_remoteip(self.collected.remoteip)
        self.notes += plan.notes
        for section, settings in (("proxy", plan.proxy), ("http", plan.http)):
            for setting in settings:
                self.set(section, setting.key, setting.value, setting.comment)
        plain: list[str] = next(
            (s.value for s in self.sections["proxy"] if s.key == "listen"), [])
        listens = apply_proxy_protocol(plan, self.listens, plain)
        if plan.proxy_protocol is not None and not listens:
            self.notes.append(Note.of(plan.proxy_protocol, "no listener to apply it to: set "
                                                           "proxy_protocol on your [[listen]]"))
        if listens is not self.listens:  # plain [proxy] listen became [[listen]] blocks
            self.sections["proxy"] = [s for s in self.sections["proxy"] if s.key != "listen"]
            self.listens = listens

    def _server_flags(self) -> None:
        adds = self.server("proxyaddheaders")
        if adds is not None and adds.args and adds.args[0].lower() == "off":
            self.set("http", "forwarded_headers", False, f"{adds.text} ({adds.where})")
        for key, value, reason in (
                ("proxyrequests", "on", "hbfork is a reverse proxy only"),
                ("keepalive", "off", "hbfork keeps client connections alive "
                                     "(see [http] keepalive_timeout)")):
            d = self.server(key)
            if d is not None and d.args and d.args[0].lower() == value:
                self.notes.append(Note.of(d, reason))


def _unique(notes: list[Note]) -> list[Note]:
    """Each note once (a main-server line can be the reason in several vhosts)."""
    seen: set[tuple[str, int, str, str]] = set()
    out = []
    for note in notes:
        key = (note.file, note.line, note.text, note.reason)
        if key not in seen:
            seen.add(key)
            out.append(note)
    return out


def translate(walked: Walked) -> Translation:
    """The hbfork settings, members and notes for a walked Apache config."""
    return Translator(walked).translate()
