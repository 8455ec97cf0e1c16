"""Balancers and single servers -> hbfork [[pool]]s [pure].

Every `<Proxy balancer://NAME>` (or balancer a ProxyPass names) becomes the pool NAME; its
BalancerMembers become [[pool.member]]s (hbfork.apache.members) and its ProxySet / ProxyPass
key=value parameters the pool's stickysession, stickysessionsep, nofailover and retries. A
ProxyPass to one server (`http://10.0.0.5:8080/`) becomes a pool with that one member, as
Apache makes it a worker of its own. retry=, timeout= and connectiontimeout= are per member in
Apache and per pool in hbfork: carried over when every member of the balancer has the same
value, noted otherwise. Apache's recipe for a route cookie (`Header add Set-Cookie
"ROUTEID=.%{BALANCER_WORKER_ROUTE}e"`) becomes `sticky_cookie`.

Routes ask `PoolBook.destination(url)` for the pool a ProxyPass URL names and the member-side
path in front of the URL's own path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hbfork.apache.ajp import ajp_keys
from hbfork.apache.collect import Balancer, Collector, balancer_name
from hbfork.apache.conf import Directive, Note, parse_duration, resolve_path
from hbfork.apache.hchecks import Definitions, apply_checks
from hbfork.apache.members import DEFAULT_PORTS, Member, parse_member
from hbfork.core.pool_settings import POOL_NAME, PoolSettings
from hbfork.core.values import BadSetting, build

MAX_RETRIES = 100                       # hbfork's limit on retries
# Apache's member timing parameter -> (the pool key, hbfork's limit, zero allowed).
TIMING_KEYS = {"retry": ("retry", 3600, True), "timeout": ("response_timeout", 86400, False),
               "connectiontimeout": ("connect_timeout", 86400, False)}
BALANCER_REASONS = {
    "growth": "hbfork's pools are fixed by the config (a reload changes them)",
    "forcerecovery": "hbfork tries members in error again after their retry, one at a time",
    "nonce": "no balancer-manager: `hbfork ctl` on the control socket steers members",
}
ROUTE_COOKIE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=(.?)%\{BALANCER_WORKER_ROUTE\}e")


@dataclass
class PoolPlan:
    """A [[pool]] to be: its keys (with the directive each came from) and members."""

    name: str
    source: Directive
    members: list[Member] = field(default_factory=list)
    settings: list[tuple[str, Any, str]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    path: str = ""                     # the members' URL path (the same for all)
    lbmethod: str = "byrequests"       # mod_proxy_balancer's default
    direct: bool = False               # one server named by a ProxyPass, not a balancer

    def set(self, key: str, value: Any, comment: str) -> None:
        self.settings = [s for s in self.settings if s[0] != key]
        self.settings.append((key, value, comment))

    def value(self, key: str) -> Any:
        return next((v for k, v, _ in self.settings if k == key), None)

    @property
    def usable(self) -> bool:
        return bool(self.members)


@dataclass(frozen=True)
class Destination:
    """Where a ProxyPass URL sends requests: a pool and the member-side path before the
    URL's path, or (pool "") why it cannot be translated."""

    pool: str
    prefix: str = ""
    problem: str = ""


class PoolBook:
    """Every pool, built from the collected balancers and from the servers ProxyPass names."""

    def __init__(self, collected: Collector, server_root: str = "/") -> None:
        self.collected = collected
        self.server_root = server_root
        self.pools: dict[str, PoolPlan] = {}
        self.by_balancer: dict[str, PoolPlan] = {}
        self.by_server: dict[str, PoolPlan] = {}
        self.notes: list[Note] = []
        self.hc = Definitions(collected.hc, self.notes)
        for balancer in collected.balancers.values():
            self._balancer(balancer)
        self._route_cookies(collected.route_cookies)

    # --- lookups for routes

    def destination(self, url: str, d: Directive, params: Sequence[str],
                    regex: bool = False) -> Destination:
        """The pool `url` (a ProxyPass target) names, creating the one-server pool of a plain
        http:// URL on first use. With `regex` (ProxyPassMatch) the URL may hold $N right
        after the host (`http://10.0.0.5$1`)."""
        if url.lower().startswith("balancer://"):
            name = balancer_name(url)
            pool = self.by_balancer.get(name)
            balancer = self.collected.balancers.get(name)
            if balancer is None or not balancer.members:
                return Destination("", problem=f"balancer://{name} has no BalancerMember "
                                                "(Apache answers 503 too)")
            if pool is None or not pool.usable:
                return Destination("", problem=f"balancer://{name} has no member hbfork can "
                                                "use")
            return Destination(pool.name, pool.path + _url_path(url, regex))
        path = _url_path(url, regex)
        server = url[:len(url) - len(path)] if path else url
        plan = self._server(server, d, params)
        if plan is None:
            return Destination("", problem=f"{server} cannot be a member")
        return Destination(plan.name, path)

    def member_urls(self, pool: str) -> list[str]:
        """`scheme://IP:PORT` + the members' path, lower-cased, for each member of `pool`
        (also without the port when it is the scheme's default, as a URL may say it)."""
        plan = self.pools[pool]
        first = plan.members[0]
        scheme = "https" if first.tls else "ajp" if first.ajp else "http"
        default = DEFAULT_PORTS[scheme]
        urls = []
        for member in plan.members:
            urls.append(f"{scheme}://{member.address}{plan.path}".lower())
            host, _, port = member.address.rpartition(":")
            if port == str(default):
                urls.append(f"{scheme}://{host}{plan.path}".lower())
        return urls

    # --- balancers

    def _balancer(self, balancer: Balancer) -> None:
        plan = PoolPlan(self._name(balancer.name, balancer.source), balancer.source)
        self.by_balancer[balancer.name] = plan
        for d in balancer.members:
            member = parse_member(d, d.args[0], d.args[1:], self.notes)
            if member is not None:
                self._add(plan, member)
        for key, value, d in balancer.params:
            self._param(plan, key, value, d)
        self._timing(plan)
        self._tls(plan)
        self._ajp(plan)
        self._checks(plan)
        if plan.lbmethod != "heartbeat":
            plan.comments.append(f"lbmethod={plan.lbmethod}: hbfork balances by the members' "
                                 "heartbeats (weight = ready), so every member must send them")
        elif any(m.lbset or m.standby for m in plan.members):
            plan.comments.append("Apache's lbmethod=heartbeat ignored lbset and hot standby; "
                                 "hbfork honours them")
        if plan.usable:
            self.pools[plan.name] = plan
        elif balancer.members:
            self.notes.append(Note.of(balancer.source, f"no member hbfork can use, so no pool "
                                                       f"{plan.name!r}"))

    def _add(self, plan: PoolPlan, member: Member) -> None:
        d = member.source
        if any(m.address == member.address for m in plan.members):
            self.notes.append(Note.of(d, f"{member.address} is already a member"))
        elif plan.members and (member.tls, member.ajp) != (plan.members[0].tls,
                                                           plan.members[0].ajp):
            scheme = "https" if member.tls else "ajp" if member.ajp else "http"
            self.notes.append(Note.of(d, f"{scheme} while the other members are not: hbfork "
                                         "talks one protocol to all the members of a pool"))
        elif plan.members and member.path != plan.path:
            self.notes.append(Note.of(d, f"its path {member.path or '/'} differs from the other "
                                         f"members' ({plan.path or '/'}): hbfork sends every "
                                         "member of a pool the same path"))
        elif member.route and any(m.route == member.route for m in plan.members):
            self.notes.append(Note.of(d, f"route={member.route} is already another member's"))
        else:
            if not plan.members:
                plan.path = member.path
            plan.members.append(member)

    def _param(self, plan: PoolPlan, key: str, value: str, d: Directive) -> None:
        where = f"{key}={value} ({d.where})"
        if key == "lbmethod":
            plan.lbmethod = value.lower()
        elif key in ("stickysession", "stickysessionsep"):
            self._checked(plan, key, value, where, d)
        elif key == "nofailover" and value.lower() in ("on", "off"):
            plan.set("nofailover", value.lower() == "on", where)
        elif key == "timeout" and (wait := parse_duration(value)) is not None:
            # the balancer's wait for a free member: hbfork's front queue
            limit = " (hbfork's limit is 3600)" if wait > 3600 else ""
            plan.set("queue_timeout", min(wait, 3600),
                     f"{where}: wait this long for a member with room{limit}")
        elif key == "maxattempts" and value.isdigit():
            retries = min(int(value), MAX_RETRIES)
            limit = f" (hbfork's limit is {MAX_RETRIES})" if retries < int(value) else ""
            plan.set("retries", retries, where + limit)
        elif key == "failonstatus":
            statuses = [int(s) if s.strip().isdigit() else s.strip() for s in value.split(",")]
            self._checked(plan, key, statuses, where + ": these answers count toward [outlier] "
                          "consecutive_5xx (an ejection), not an error state at once", d)
        elif key == "failontimeout" and value.lower() in ("on", "off"):
            if value.lower() == "on":
                plan.set("retry_on", ["reset", "empty-response", "malformed-response",
                                      "timeout"], where + ": a response timeout goes to another "
                                      "member and counts toward [outlier] "
                                      "consecutive_gateway_failures")
        elif key == "scolonpathdelim":
            if value.lower() == "on":
                self.notes.append(Note.of(d, "hbfork ends a session value in the URL at ? or & "
                                             "only", f"{key}={value}"))
        else:
            reason = BALANCER_REASONS.get(key, "no hbfork equivalent")
            self.notes.append(Note.of(d, reason, f"{key}={value}"))

    def _checked(self, plan: PoolPlan, key: str, value: Any, where: str,
                 d: Directive) -> None:
        """A value hbfork validates the same way when it loads the file."""
        try:
            build(PoolSettings, {"name": "x", key: value}, members=())
        except BadSetting as err:
            shown = ",".join(map(str, value)) if isinstance(value, list) else value
            self.notes.append(Note.of(d, err.problem, f"{key}={shown}"))
            return
        plan.set(key, value, where)

    def _checks(self, plan: PoolPlan) -> None:
        """mod_proxy_hcheck parameters -> hc* keys: the pool's when every member agrees."""
        for key, value in apply_checks(plan.members, self.hc, self.notes).items():
            plan.set(key, value, "hc* parameters of every member (mod_proxy_hcheck)"
                     if key == "hcmethod" else "")
        if plan.value("hcinterval") == 30.0 or any(m.checks.get("hcinterval") == 30.0
                                                   for m in plan.members):
            plan.comments.append("hcinterval 30: Apache's (default) interval; hbfork's "
                                 "default is 10 s")

    def _timing(self, plan: PoolPlan) -> None:
        """Per-member retry/timeout/connectiontimeout -> one pool value when all agree."""
        for apache_key, (key, high, zero) in TIMING_KEYS.items():
            values = [m.timing.get(apache_key) for m in plan.members]
            if all(v is None for v in values):
                continue
            if len(set(values)) > 1:
                shown = "/".join("unset" if v is None else f"{v:g}" for v in values)
                self.notes.append(Note.of(plan.members[0].source, "the members disagree and "
                                          "hbfork has one value per pool: the pool keeps the "
                                          "server-wide one", f"{apache_key}={shown}"))
                continue
            self._timing_value(plan, apache_key, key, values[0], high, zero)

    def _timing_value(self, plan: PoolPlan, apache_key: str, key: str, value: float | None,
                      high: float, zero: bool) -> None:
        assert value is not None
        label = f"BalancerMember {apache_key}={value:g}" if not plan.direct else \
            f"{apache_key}={value:g} ({plan.source.where})"
        if value == 0 and not zero:
            self.notes.append(Note.of(plan.source, "must be more than 0", f"{apache_key}=0"))
        elif value > high:
            plan.set(key, high, f"{label} (hbfork's limit is {high})")
        else:
            plan.set(key, value, label + ("" if plan.direct else " on every member"))

    def _tls(self, plan: PoolPlan) -> None:
        """https:// members: TLS to the pool, checked as mod_ssl's SSLProxy* settings say."""
        if not plan.members or not plan.members[0].tls:
            return
        plan.set("tls", True, "https:// members")
        verify = self.collected.server.get("sslproxyverify")
        if verify is None or not verify.args or verify.args[0].lower() != "require":
            said = f"{verify.text} ({verify.where})" if verify else "Apache's default " \
                "SSLProxyVerify none"
            plan.set("tls_verify", False, f"{said}: the members' certificates were not "
                                          "checked. Check them: tls_verify = true, with tls_ca "
                                          "for a private CA")
            return
        ca = self.collected.server.get("sslproxycacertificatefile")
        if ca is not None and ca.args:
            plan.set("tls_ca", resolve_path(self.server_root, ca.args[0]),
                     f"{ca.text} ({ca.where})")

    def _ajp(self, plan: PoolPlan) -> None:
        """ajp:// members: an AJP pool (hbfork.apache.ajp)."""
        found = ajp_keys(plan.members, self.collected.server.get("proxyiobuffersize"),
                         self.notes)
        for key, value, comment in found.settings:
            plan.set(key, value, comment)
        plan.comments += found.comments

    def _route_cookies(self, headers: list[Directive]) -> None:
        """`Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/"`: hbfork
        sets that cookie itself (sticky_cookie) for the pools that read it."""
        for d in headers:
            match = ROUTE_COOKIE.search(d.raw)
            pools = [p for p in self.pools.values() if match and
                     str(p.value("stickysession") or "").split("|")[0] == match[1]]
            if match is None or not pools:
                self.notes.append(Note.of(d, "a route cookie no balancer's stickysession reads"))
                continue
            path = re.search(r"(?i)\bpath=([^;\s\"]+)", d.raw)
            for pool in pools:
                if (pool.value("stickysessionsep") or ".") != match[2]:
                    self.notes.append(Note.of(d, f"its separator {match[2]!r} is not pool "
                                                 f"{pool.name!r}'s stickysessionsep"))
                    continue
                pool.set("sticky_cookie", match[1], f"{d.text} ({d.where}): hbfork sets it")
                if path and path[1].startswith("/"):
                    pool.set("sticky_cookie_path", path[1], "its path=")
                pool.set("sticky_cookie_httponly", "httponly" in d.raw.lower(),
                         "HttpOnly as in that header")
                if "secure" in d.raw.lower():
                    pool.set("sticky_cookie_secure", True, "Secure as in that header")

    # --- single servers

    def _server(self, url: str, d: Directive, params: Sequence[str]) -> PoolPlan | None:
        key = _server_key(url)
        if key in self.by_server:
            pool = self.by_server[key]
            worker = [p for p in params if "=" in p]
            if worker and pool.source is not d:
                self.notes.append(Note.of(d, f"the server is already {pool.source.text} "
                                             f"({pool.source.where}); Apache shares that worker "
                                             "and ignores these too", " ".join(worker)))
            return pool
        worker = [p for p in params if "=" in p]
        member = parse_member(d, url, worker, self.notes)
        if member is None:
            return None
        label = member.address.replace("[", "").replace("]", "")
        pool = PoolPlan(self._name(label, d), d, [member], direct=True)
        pool.comments.append("a ProxyPass to one server: a pool of one member, which gets "
                             "traffic only while it sends heartbeats")
        self._timing(pool)
        self._tls(pool)
        self._ajp(pool)
        self._checks(pool)
        self.by_server[key] = self.pools[pool.name] = pool
        return pool

    def _name(self, wanted: str, d: Directive) -> str:
        """A pool name hbfork accepts, unique among the pools."""
        name = re.sub(r"[^A-Za-z0-9_.\-]", "-", wanted).strip("-")[:32] or "pool"
        base, number = name[:29], 2
        while name in self.pools or name in {p.name for p in self.by_balancer.values()}:
            name, number = f"{base}-{number}", number + 1
        assert POOL_NAME.fullmatch(name)
        return name


def _url_path(url: str, regex: bool = False) -> str:
    """The path part of a ProxyPass URL, to which Apache appends the request's rest."""
    rest = url.split("://", 1)[1] if "://" in url else url
    ends = [i for i in (rest.find("/"), rest.find("$") if regex else -1) if i >= 0]
    return rest[min(ends):] if ends else ""


def _server_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"

