"""One BalancerMember (or the one server a ProxyPass names) -> a [[pool.member]] [pure].

The member's URL is `http[s]://HOST[:PORT][/path]` (`ws://` and `wss://` members become HTTP
members: hbfork tunnels WebSockets over its HTTP pools) or `ajp://HOST[:PORT]` (mod_proxy_ajp: a
member of an AJP pool; its secret=, ping= and iobuffersize= are kept in `ajp_params` for
hbfork.apache.ajp to make the pool's ajp_secret, ajp_ping and ajp_packet_size). A host name is
kept: hbfork resolves it whenever it reads its config, and its heartbeats match by the
addresses it resolves to.
Parameters with an hbfork equivalent are carried over: route=, lbset=, status= flags (D and S
disable, H is a hot standby, R a hot spare, N drains); retry=, timeout= and
connectiontimeout= are kept in `timing` for hbfork.apache.pools to decide per pool, the hc*
ones in `hc` for hbfork.apache.hchecks; the rest is a note or, for loadfactor=, a comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hbfork.apache.conf import Directive, Note, key_values, parse_duration, undefined_note
from hbfork.core.addresses import parse_ip
from hbfork.core.member_names import is_host_name
from hbfork.core.pool_settings import PoolMemberSettings
from hbfork.core.values import BadSetting, build

MAX_LBSET = 99                          # Apache refuses lbset outside 0-99
TIMING = ("retry", "timeout", "connectiontimeout")
AJP_PARAMS = ("secret", "ping", "iobuffersize")   # an ajp:// member's, for its pool
DEFAULT_PORTS = {"http": 80, "https": 443, "ajp": 8009}
HC_PARAMS = ("hcmethod", "hcuri", "hcinterval", "hcpasses", "hcfails", "hcexpr", "hctemplate")
# Worker parameters that tune Apache's own connection handling: hbfork has its own.
CONNECTION_PARAMS = {
    "keepalive": "hbfork keeps member connections alive ([http] pool_size, pool_idle_timeout)",
    "ttl": "idle member connections close after [http] pool_idle_timeout",
    "max": "Apache limits each child's connections to the member; hbfork's max_conns limits "
           "the whole front's requests in flight to it (set it if that is what you meant)",
    "smax": "hbfork keeps no minimum of member connections",
    "min": "hbfork keeps no minimum of member connections",
    "disablereuse": "hbfork always reuses member connections ([http] pool_size = 0 to stop)",
    "flushpackets": "hbfork streams responses as they arrive",
    "ping": "hbfork has no 100-continue probe of HTTP members (an AJP member's ping= is its "
            "CPING: ajp_ping)",
    "redirect": "hbfork has no redirect route: a down member's sessions fail over",
}


@dataclass
class Member:
    """A [[pool.member]] to be, from a BalancerMember (or a ProxyPass to one server)."""

    address: str
    source: Directive
    path: str = ""                     # the URL's path, prefixed to what the member is sent
    tls: bool = False                  # an https:// member
    ajp: bool = False                  # an ajp:// member (mod_proxy_ajp)
    ajp_params: dict[str, str] = field(default_factory=dict)  # its AJP_PARAMS
    route: str = ""
    lbset: int = 0
    standby: bool = False
    disabled: bool = False
    drain: bool = False
    timing: dict[str, float] = field(default_factory=dict)
    hc: dict[str, str] = field(default_factory=dict)        # mod_proxy_hcheck parameters
    checks: dict[str, Any] = field(default_factory=dict)    # hc* keys (hbfork.apache.hchecks)
    comments: list[str] = field(default_factory=list)

    def table(self) -> dict[str, Any]:
        """The [[pool.member]] keys, in the order they are written."""
        out: dict[str, Any] = {"address": self.address}
        if self.route:
            out["route"] = self.route
        for key in ("lbset", "standby", "disabled", "drain"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return {**out, **self.checks}


def parse_member(d: Directive, url: str, params: Sequence[str],
                 notes: list[Note]) -> Member | None:
    """The member a BalancerMember URL names (None, with a note, if it cannot be one)."""
    found = _address(d, url, notes)
    if found is None:
        return None
    address, path, scheme = found
    member = Member(address, d, path, scheme == "https", scheme == "ajp")
    for key, value in key_values(params):
        _param(member, key, value, notes)
    try:
        build(PoolMemberSettings, {k: v for k, v in member.table().items() if k != "address"})
    except BadSetting as err:  # e.g. a route hbfork cannot carry (spaces, too long)
        notes.append(Note.of(d, f"{err.key}: {err.problem}", f"{err.key}={member.route}"))
        member.route = ""
    return member


def _address(d: Directive, url: str, notes: list[Note]) -> tuple[str, str, str] | None:
    note = undefined_note(d, url)
    if note is not None:
        notes.append(note)
        return None
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in DEFAULT_PORTS:
        notes.append(Note.of(d, f"{parts.scheme or 'no'} scheme: hbfork talks HTTP/1.1 (or "
                                "over TLS) or AJP/1.3 to members"))
        return None
    host = parts.hostname or ""
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        notes.append(Note.of(d, f"{url!r} has an invalid port"))
        return None
    try:
        ip = parse_ip(host)
    except ValueError:
        if not is_host_name(host):
            notes.append(Note.of(d, f"{host or url!r} is neither an IP address nor a host name"))
            return None
        return f"{host}:{port}", parts.path.rstrip("/"), scheme
    address = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    return address, parts.path.rstrip("/"), scheme


def _param(member: Member, key: str, value: str, notes: list[Note]) -> None:
    d = member.source
    if key == "lbset":
        if value.isdigit() and int(value) <= MAX_LBSET:
            member.lbset = int(value)
        else:
            notes.append(Note.of(d, f"lbset must be 0-{MAX_LBSET} (Apache refuses it too)",
                                 f"lbset={value}"))
    elif key == "status":
        _status(member, value, notes)
    elif key == "route":
        member.route = value
    elif key in TIMING:
        seconds = parse_duration(value)
        if seconds is None:
            notes.append(Note.of(d, "not a duration", f"{key}={value}"))
        else:
            member.timing[key] = seconds
    elif member.ajp and key in AJP_PARAMS:
        member.ajp_params[key] = value  # hbfork.apache.pools: one value per pool
    elif key in HC_PARAMS:
        member.hc[key] = value  # hbfork.apache.hchecks, once the server's templates are known
    elif key == "loadfactor":
        member.comments.append(f"loadfactor={value} ignored: hbfork weighs members by their "
                               "heartbeats' ready count")
    else:
        reason = CONNECTION_PARAMS.get(key, "member parameter with no hbfork equivalent")
        notes.append(Note.of(d, f"{reason} ({member.address})", f"{key}={value}"))


def _status(member: Member, value: str, notes: list[Note]) -> None:
    """Apache's status flags: `+X` sets, `-X` clears, a bare letter sets."""
    on, spare = True, False
    for flag in value.upper():
        if flag in "+-":
            on = flag == "+"
        elif flag in "DS":
            member.disabled = on
        elif flag in "HR":
            member.standby, spare = on, on and flag == "R"
        elif flag == "N":
            member.drain = on
        elif on:
            notes.append(Note.of(member.source, f"flag {flag} has no hbfork config equivalent "
                                                f"({member.address})", f"status={value}"))
    if member.disabled:
        member.comments.append(f"status={value}: starts disabled (`hbfork ctl enable "
                               "POOL/MEMBER` lets it in)")
    if spare:
        member.comments.append("status=+R (hot spare): hbfork has no spares; as a hot standby "
                               "it takes traffic only when no other member of its lbset can")
