"""Which servers become hbfork [[member]]s, from balancers and routes [pure].

hbfork forwards everything to one set of members, so one route is chosen: the first
`ProxyPass /` (else a balancer with lbmethod=heartbeat, else the first balancer). Its
BalancerMembers (or the one server it names) become members; member parameters with an hbfork
equivalent are carried over (lbset=, route=, status=D/S/H/R), hot standbys and spares go into a
higher lbset, and the rest is noted. retry=, timeout= and connectiontimeout= are per member in
Apache but server-wide in hbfork: apache_translate decides them from Member.params.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hbfork.apache.collect import Balancer, Collector, Route, balancer_name
from hbfork.apache.conf import Directive, Note, key_values, undefined_note
from hbfork.core.addresses import parse_ip

MAX_LBSET = 99                          # Apache refuses lbset outside 0-99
MAX_RETRIES = 100                       # hbfork's limit on [http] retries


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
class Balanced:
    """What the balancer side of the config gives: members and the few settings it decides
    ((section, key, value, comment) in order), with what could not be carried over."""

    members: list[Member]
    lbmethod: str
    settings: list[tuple[str, str, Any, str]]
    notes: list[Note]
    remarks: list[str]


def choose_members(collected: Collector) -> Balanced:
    """The members of the one route hbfork takes over, and what it left behind."""
    return MemberTranslator(collected).translate()


class MemberTranslator:
    """Routes and balancers -> members. Every choice is written down as a member comment, a
    remark or a note, as in apache_translate."""

    def __init__(self, collected: Collector) -> None:
        self.collected = collected
        self.members: list[Member] = []
        self.lbmethod = "byrequests"  # mod_proxy_balancer's default
        self.settings: list[tuple[str, str, Any, str]] = []
        self.notes: list[Note] = []
        self.remarks: list[str] = []

    def translate(self) -> Balanced:
        self._routes_and_members()
        return Balanced(self.members, self.lbmethod, self.settings, self.notes, self.remarks)

    def _defined(self, d: Directive, value: str) -> bool:
        note = undefined_note(d, value)
        if note is not None:
            self.notes.append(note)
        return note is None


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
            limit = f" (hbfork's limit is {MAX_RETRIES})" if retries < int(value) else ""
            self.settings.append(("http", "retries", retries,
                                  f"maxattempts={value} ({d.where}){limit}"))
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
