"""Translate a walked Apache config into hbfork settings and members [pure].

`translate(walked)` runs hbfork.apache_collect's Collector over the directives, then decides
each hbfork setting from them. What is translated: Listen, HeartbeatListen/MaxServers/Storage,
<Proxy balancer://...> with BalancerMember (lbset=, retry=, status=, route=, timeout=,
connectiontimeout=) and ProxySet (lbmethod=, maxattempts=), ProxyPass / ProxyPassReverse for
"/", ProxyTimeout, ProxyAddHeaders, Timeout, KeepAliveTimeout, User/Group. Every choice is
written down next to the setting it made; a directive nothing could be made of becomes a Note.
Values are kept inside hbfork's own limits, so the result always loads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hbfork.addresses import Endpoint, parse_endpoint, parse_ip
from hbfork.apache_collect import Balancer, Collector, Route, balancer_name
from hbfork.apache_conf import (
    Directive,
    Note,
    key_values,
    parse_duration,
    resolve_path,
    undefined_variables,
)
from hbfork.apache_include import Walked
from hbfork.config import StatusSettings

APACHE_DEFAULT_RETRY = 60
MAX_LBSET = 99                          # Apache refuses lbset outside 0-99
MAX_MEMBERS, MAX_RETRIES = 65535, 100   # hbfork's limits: [heartbeat] max_members, [http] retries
# Where a front that read another monitor's file (no HeartbeatListen) takes heartbeats: hbfork
# always opens a heartbeat socket, and its default, a multicast group, needs a route.
LOOPBACK_HEARTBEAT = "127.0.0.1:27999"


@dataclass
class Setting:
    """One hbfork setting and the comment saying which Apache directive it came from."""

    key: str
    value: Any
    comment: str = ""


@dataclass
class Member:
    """A [[member]] to be, from a BalancerMember (or a ProxyPass to one server)."""

    address: str
    source: Directive
    params: tuple[str, ...] = ()
    lbset: int = 0
    name: str = ""
    disabled: bool = False
    hot: str = ""              # "hot standby" / "hot spare": placed in a higher lbset
    comments: list[str] = field(default_factory=list)


@dataclass
class Translation:
    """Everything render() needs: settings by section, members, and what was left out."""

    sections: dict[str, list[Setting]]
    members: list[Member]
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
                                                   "status": []}
        self.members: list[Member] = []
        self.lbmethod = "byrequests"  # mod_proxy_balancer's default

    def translate(self) -> Translation:
        self._listen()
        self._routes_and_members()
        self._heartbeat()
        self._timeouts()
        self._user()
        self.notes.extend(self.collected.notes)
        order = {path: index for index, path in enumerate(self.walked.files)}
        self.notes.sort(key=lambda n: (order.get(n.file, len(order)), n.line))
        return Translation(self.sections, self.members, self.notes, self.remarks,
                           self.collected.unrelated, self.walked.skipped)

    def set(self, section: str, key: str, value: Any, comment: str = "") -> None:
        settings = self.sections[section]
        settings[:] = [s for s in settings if s.key != key]
        settings.append(Setting(key, value, comment))

    def server(self, key: str) -> Directive | None:
        return self.collected.server.get(key)

    def _defined(self, d: Directive, value: str) -> bool:
        """False, with a note, when `value` still holds a ${NAME} that nothing defined."""
        names = undefined_variables(value)
        if names:
            listed = ", ".join("${" + name + "}" for name in names)
            self.notes.append(Note.of(d, f"{listed} not defined here: export it, or give a "
                                         "file of `export NAME=VALUE` lines with --envvars"))
        return not names

    # --- [proxy] listen, mode, user

    def _listen(self) -> None:
        endpoints: list[Endpoint] = []
        sources: list[str] = []
        for d in self.collected.listens:
            endpoint = self._listen_endpoint(d)
            if endpoint and endpoint not in endpoints:
                endpoints.append(endpoint)
                sources.append(f"{d.text} ({d.where})")
        if endpoints:
            self.set("proxy", "listen", [str(e) for e in endpoints], "from " + "; ".join(sources))
            self._status_listen(endpoints)
        else:
            self.remarks.append("No usable Listen directive: hbfork's default listen address "
                                "is kept.")
        self.set("proxy", "mode", "http", "mod_proxy_http: every request is balanced")

    def _listen_endpoint(self, d: Directive) -> Endpoint | None:
        if not d.args:
            self.notes.append(Note.of(d, "no address"))
            return None
        if len(d.args) > 1 and d.args[1].lower() != "http":
            self.notes.append(Note.of(d, f"protocol {d.args[1]}: hbfork does not terminate TLS"))
            return None
        text = d.args[0]
        if not self._defined(d, text):
            return None
        if text.isdigit():
            self.remarks.append(f"{d.text} ({d.where}) listens on every address; translated "
                                f"to 0.0.0.0:{text}; add \"[::]:{text}\" to [proxy] listen "
                                "for IPv6 too.")
            text = f"0.0.0.0:{text}"
        elif text.startswith("*:"):
            text = "0.0.0.0:" + text[2:]
        try:
            return parse_endpoint(text)
        except ValueError as err:
            self.notes.append(Note.of(d, f"{err}"))
            return None

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

    # --- routes, balancers, members

    def _routes_and_members(self) -> None:
        chosen = self._choose_route()
        for route in self.collected.reverse:
            self._reverse(route, chosen)
        if chosen is None:
            self._choose_balancer_without_route()
        elif chosen.target.lower().startswith("balancer://"):
            self._use_balancer(balancer_name(chosen.target), chosen)
        else:
            self._direct_member(chosen)
        self._finish_members()

    def _choose_route(self) -> Route | None:
        chosen = None
        for route in self.collected.routes:
            d = route.directive
            if route.target == "!":
                self.notes.append(Note.of(d, f"hbfork forwards every path; it cannot keep "
                                             f"{route.path} out of the proxy"))
            elif chosen is not None and route.path.rstrip("/") == "":
                self.notes.append(Note.of(d, "hbfork forwards everything to one set of members:"
                                             f" the first ProxyPass / ({chosen.directive.where})"
                                             " was translated"))
            elif route.path.rstrip("/") != "":
                self.notes.append(Note.of(d, "hbfork forwards every path to one set of members;"
                                             " only ProxyPass / is translated"))
            else:
                chosen = route
        return chosen

    def _reverse(self, route: Route, chosen: Route | None) -> None:
        d = route.directive
        if chosen is not None and route.path.rstrip("/") == "" and \
                route.target.rstrip("/").lower() == chosen.target.rstrip("/").lower():
            self.remarks.append(f"{d.text} ({d.where}): nothing to set. hbfork passes the "
                                "client's Host header on (like ProxyPreserveHost On) and adds "
                                "X-Forwarded-Host; it does not rewrite Location headers.")
        else:
            self.notes.append(Note.of(d, "hbfork does not rewrite response headers"))

    def _choose_balancer_without_route(self) -> None:
        balancers = list(self.collected.balancers.values())
        if not balancers:
            self.remarks.append("No ProxyPass / and no balancer://: no members to translate.")
            return
        by_heartbeat = [b for b in balancers if self._lbmethod(b) == "heartbeat"]
        chosen = (by_heartbeat or balancers)[0]
        self.remarks.append(f"No ProxyPass / found: translated balancer://{chosen.name} "
                            f"({chosen.source.where}).")
        self._use_balancer(chosen.name, None)

    def _lbmethod(self, balancer: Balancer) -> str:
        methods = [v.lower() for k, v, _ in balancer.params if k == "lbmethod"]
        return methods[-1] if methods else "byrequests"

    def _use_balancer(self, name: str, route: Route | None) -> None:
        balancer = self.collected.balancers.get(name)
        for other in self.collected.balancers.values():
            if other.name != name:
                self.notes.append(Note.of(other.source, "hbfork balances over one set of "
                                                        "members"))
        if balancer is None:
            assert route is not None
            self.notes.append(Note.of(route.directive, f"balancer://{name} is not defined"))
            return
        if route is not None:  # ProxyPass / balancer://x/ key=value sets balancer parameters
            balancer.params.extend((k, v, route.directive) for k, v in key_values(route.params))
        for key, value, d in balancer.params:
            self._balancer_param(key, value, d)
        self._check_lbmethod(balancer)
        for d in balancer.members:
            self._member(d, d.args[0], d.args[1:])

    def _check_lbmethod(self, balancer: Balancer) -> None:
        self.lbmethod = self._lbmethod(balancer)
        if self.lbmethod != "heartbeat":
            self.remarks.append(f"balancer://{balancer.name} uses lbmethod={self.lbmethod}: "
                                "hbfork always balances by the members' heartbeats (weight = "
                                "ready), so every member must send heartbeats.")

    def _balancer_param(self, key: str, value: str, d: Directive) -> None:
        if key == "lbmethod":
            return  # read by _check_lbmethod
        if key == "maxattempts" and value.isdigit():
            retries = min(int(value), MAX_RETRIES)
            self.set("http", "retries", retries, f"maxattempts={value} ({d.where})"
                     + (f" (hbfork's limit is {MAX_RETRIES})" if retries < int(value) else ""))
            return
        reasons = {
            "stickysession": "hbfork has no sticky sessions",
            "nofailover": "hbfork always fails over to another member on a connect failure",
            "timeout": "a balancer's wait for a free worker: hbfork does not queue",
        }
        self.notes.append(Note.of(d, reasons.get(key, "no hbfork equivalent"), f"{key}={value}"))

    def _direct_member(self, route: Route) -> None:
        self.lbmethod = "none"
        self.remarks.append(f"{route.directive.text} ({route.directive.where}) names one server:"
                            " translated as the only member. It gets traffic only while it "
                            "sends heartbeats (mod_heartbeat, or hbfork beat).")
        self._member(route.directive, route.target, route.params)

    def _member(self, d: Directive, url: str, params: Sequence[str]) -> None:
        address = self._member_address(d, url)
        if address is None:
            return
        if any(m.address == address for m in self.members):
            self.notes.append(Note.of(d, f"{address} is already a member"))
            return
        member = Member(address, d, tuple(params))
        for key, value in key_values(params):
            self._member_param(member, key, value)
        self.members.append(member)

    def _member_address(self, d: Directive, url: str) -> str | None:
        if not self._defined(d, url):
            return None
        parts = urlsplit(url)
        if parts.scheme.lower() != "http":
            self.notes.append(Note.of(d, f"{parts.scheme or 'no'} scheme: hbfork talks plain "
                                         "HTTP/1.1 to members"))
            return None
        host = parts.hostname or ""
        try:
            ip = parse_ip(host)
            port = parts.port or 80
        except ValueError:
            self.notes.append(Note.of(d, f"{host or url!r} is not an IP address: members are "
                                         "matched to heartbeats by source IP (Apache's "
                                         "lbmethod_heartbeat never matched it either)"))
            return None
        if parts.path.strip("/"):
            self.notes.append(Note.of(d, f"the path {parts.path} is dropped: hbfork forwards "
                                         "the client's path unchanged"))
        return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"

    def _member_param(self, member: Member, key: str, value: str) -> None:
        if key == "lbset":
            if value.isdigit() and int(value) <= MAX_LBSET:
                member.lbset = int(value)
            else:
                self.notes.append(Note.of(member.source, f"lbset must be 0-{MAX_LBSET} "
                                          "(Apache refuses it too)", f"lbset={value}"))
        elif key == "status":
            self._status(member, value)
        elif key == "route" and value:
            member.name = value[:48]
        elif key in ("retry", "timeout", "connectiontimeout"):
            pass  # server-wide in hbfork: gathered in _timeouts
        elif key == "loadfactor":
            member.comments.append(f"loadfactor={value} dropped: hbfork weighs members by "
                                   "their heartbeats' ready count")
        else:
            self.notes.append(Note.of(member.source, "member parameter with no hbfork "
                                      f"equivalent ({member.address})", f"{key}={value}"))

    def _status(self, member: Member, value: str) -> None:
        on = True
        for flag in value.upper():
            if flag in "+-":
                on = flag == "+"
            elif flag in "DS" and on:
                member.disabled = True
                member.comments.append(f"status={value}: starts disabled "
                                       "(`hbfork ctl enable` lets it in)")
            elif flag in "HR" and on:
                member.hot = "hot standby" if flag == "H" else "hot spare"
            elif on:
                self.notes.append(Note.of(member.source, f"flag {flag} has no hbfork config "
                                          f"equivalent ({member.address})", f"status={value}"))

    def _finish_members(self) -> None:
        """Hot standbys and spares go one lbset above the highest regular member's."""
        regular = [m.lbset for m in self.members if not m.hot]
        hot_set = max(regular, default=0) + 1
        for member in self.members:
            if member.hot:
                member.lbset = max(member.lbset, hot_set)
                member.comments.append(
                    f"{member.hot}: lbset {member.lbset}, so it gets traffic only when no "
                    "lower lbset has an eligible member")
            if member.hot or member.lbset:
                if self.lbmethod == "heartbeat":
                    member.comments.append("Apache's lbmethod=heartbeat ignored lbset and "
                                           "hot standby; hbfork honours them")
        if not self.members:
            self.set("heartbeat", "discover", True,
                     "no members translated: admit any heartbeat sender (list [[member]]s and "
                     "remove this to restrict)")

    # --- [heartbeat]

    def _heartbeat(self) -> None:
        listen = self.server("heartbeatlisten")
        if listen is not None and listen.args:
            self._heartbeat_listen(listen)
            self._max_servers()
        elif self.lbmethod == "heartbeat" and (storage := self._storage_path()):
            self._file_source(storage)
        if len(self.members) > 256:
            self.set("heartbeat", "max_members", len(self.members))

    def _file_source(self, storage: str) -> None:
        self.set("heartbeat", "source", f"file:{storage}",
                 "no HeartbeatListen: this front read heartbeats from a file another "
                 "monitor writes (lbmethod_heartbeat's HeartbeatStorage)")
        self.set("heartbeat", "listen", LOOPBACK_HEARTBEAT,
                 "this front received no heartbeats itself: loopback only (hbfork's default, "
                 "a multicast group, needs a route)")
        others = [m.address for m in self.members if not m.address.endswith(":80")]
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
            slots = min(max(int(d.args[0]), len(self.members)), MAX_MEMBERS)
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
        if self.members:
            self._member_timeouts()

    def _member_timeouts(self) -> None:
        """Per-member values in Apache; one value for all members in hbfork."""
        params = [(k, v, m.source) for m in self.members for k, v in key_values(m.params)]
        retry = self._agreed("retry", params)
        if retry is None:
            self.set("proxy", "retry", APACHE_DEFAULT_RETRY,
                     "Apache's default retry=60 (hbfork's own default is 10)")
        else:
            self.set("proxy", "retry", min(retry, 3600), f"BalancerMember retry={retry}"
                     + (" (hbfork's limit is 3600)" if retry > 3600 else ""))
        connect = self._agreed("connectiontimeout", params)
        self._http_timeout("connect_timeout", connect,
                           f"BalancerMember connectiontimeout={connect}", 600)
        response = self._agreed("timeout", params)
        label = f"BalancerMember timeout={response}"
        for key in ("proxytimeout", "timeout"):
            d = self.server(key)
            if response is None and d is not None and d.args:
                response, label = parse_duration(d.args[0]), f"{d.text} ({d.where})"
        self._http_timeout("response_timeout", response, label, 86400)

    def _agreed(self, key: str, params: list[tuple[str, str, Directive]]) -> float | None:
        """One server-wide value from per-member ones: the most common (noted if they differ)."""
        values = [(parse_duration(v), d) for k, v, d in params if k == key]
        valid = Counter(v for v, _ in values if v is not None)
        if not valid:
            return None
        chosen = valid.most_common(1)[0][0]
        if len(valid) > 1:
            self.notes.append(Note.of(values[0][1], f"members differ; hbfork has one value: "
                                      f"used {chosen}", f"{key}={'/'.join(map(str, valid))}"))
        return chosen

    def _http_timeout(self, key: str, value: float | None, label: str, high: float) -> None:
        if value is not None and 0 < value <= high:
            self.set("http", key, value, label)

    def _server_duration(self, directive: str, key: str) -> None:
        d = self.server(directive)
        if d is not None and d.args:
            self._http_timeout(key, parse_duration(d.args[0]), f"{d.text} ({d.where})", 86400)

    def _server_flags(self) -> None:
        adds = self.server("proxyaddheaders")
        if adds is not None and adds.args and adds.args[0].lower() == "off":
            self.set("http", "forwarded_headers", False, f"{adds.text} ({adds.where})")
        for key, value, reason in (
                ("proxyrequests", "on", "hbfork is a reverse proxy only"),
                ("keepalive", "off", "hbfork keeps client connections alive "
                                     "(see [http] keepalive_timeout)"),
                ("proxypreservehost", "off", "hbfork always passes the client's Host on")):
            d = self.server(key)
            if d is not None and d.args and d.args[0].lower() == value:
                self.notes.append(Note.of(d, reason))


def translate(walked: Walked) -> Translation:
    """The hbfork settings, members and notes for a walked Apache config."""
    return Translator(walked).translate()
