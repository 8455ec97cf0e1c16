"""mod_heartmonitor's `<Location PATH> SetHandler heartbeat` -> [heartbeat] http_path, and that
location's `Require ip ...` -> [heartbeat] allow [pure].

Apache merges a <Location>'s Require lines as RequireAny: a sender is let in by any of them, so
their addresses add up. `Require all granted` lets anyone in (allow stays empty); `Require local`
is loopback. Any other Require line (host names, `not`, env, ...) has no hbfork equivalent and
is noted; a Require in a <Location> that takes no heartbeats is noted as any access rule.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from hbfork.apache.collected import Location, Server, label
from hbfork.apache.conf import Note
from hbfork.apache.unhandled import reason_left_out

LOCAL = ("127.0.0.0/8", "::1/128")


@dataclass
class BeatPlan:
    settings: list[tuple[str, Any, str]] = field(default_factory=list)  # [heartbeat] keys
    notes: list[Note] = field(default_factory=list)


def plan_beats(servers: list[Server]) -> BeatPlan:
    plan = BeatPlan()
    chosen: tuple[Location, Server] | None = None
    for server in servers:
        for location in server.locations:
            if location.heartbeat is None:
                reason = reason_left_out("require") or "hbfork has no access rules"
                plan.notes += [Note.of(d, reason) for d in location.requires]
            elif chosen is None:
                chosen = (location, server)
            else:
                plan.notes.append(Note.of(location.heartbeat, f"hbfork takes heartbeats on one "
                                          f"path: {chosen[0].path} is the one translated"))
    if chosen is None:
        return plan
    location, server = chosen
    d = location.heartbeat
    assert d is not None
    where = f"<Location {location.path}> {d.text} ({d.where})"
    if server.source is not None:
        where += f", in {label(server)}: hbfork takes it on every listener (http_listen " \
                 "narrows that)"
    plan.settings.append(("http_path", location.path, where))
    allow, granted = _allow(location, plan.notes)
    if allow and not granted:
        sources = "; ".join(f"{r.text} ({r.where})" for r in location.requires)
        plan.settings.append(("allow", allow, f"{sources}; applies to UDP heartbeats too"))
    return plan


def _allow(location: Location, notes: list[Note]) -> tuple[list[str], bool]:
    """The networks a heartbeat location's Require lines let in, and whether one of them lets
    everyone in."""
    allow: list[str] = []
    granted = False
    for d in location.requires:
        kind = d.args[0].lower() if d.args else ""
        if kind == "ip":
            for item in d.args[1:]:
                try:
                    allow.append(str(apache_network(item)))
                except ValueError:
                    notes.append(Note.of(d, f"{item!r} is not an address hbfork can allow"))
        elif kind == "local":
            allow.extend(LOCAL)
        elif kind == "all" and len(d.args) > 1 and d.args[1].lower() == "granted":
            granted = True
        else:
            notes.append(Note.of(d, "[heartbeat] allow takes addresses only (Require ip, "
                                    "Require local, Require all granted)"))
    return list(dict.fromkeys(allow)), granted


def apache_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """What `Require ip` accepts: a full address, a CIDR, address/netmask, or the leading
    bytes of an IPv4 address ("10.1" = 10.1.0.0/16)."""
    if "/" in text or ":" in text:
        return ipaddress.ip_network(text, strict=False)
    parts = [p for p in text.split(".") if p != ""]
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    full = parts + ["0"] * (4 - len(parts))
    return ipaddress.ip_network(f"{'.'.join(full)}/{8 * len(parts)}", strict=False)
