"""Members given by host name: resolved to their addresses (A and AAAA) whenever the config is
read — at start, by `hbfork check`, and on every reload (SIGHUP). Pure: the resolver is passed
in (hbfork.system.configfile passes the system's).

Heartbeats name a member by its source IP, so a member is an address. A name in a member's
`address` ("backend1.example.com:8080", as Apache's BalancerMember URLs often have) becomes one
member per address it resolves to, labelled with the name unless the entry has its own; its
heartbeats match by those addresses. A name that does not resolve is a configuration error
naming file, key and problem, unless the entry says `optional = true` (then it is left out,
with a warning). This runs before the document is validated, on the TOML as read: what comes
out is what an operator could have written with IPs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from hbfork.core.errors import ConfigError

HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
                       r"(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?")

# host name -> its addresses, as IP strings; raises OSError when the name does not resolve
Resolver = Callable[[str], list[str]]


def resolve_names(document: dict[str, Any], path: str, resolve: Resolver) -> list[str]:
    """Replace members given by name in `document` (in place) by one entry per address;
    returns the warnings said about optional members left out."""
    warnings: list[str] = []
    members = document.get("member")
    if isinstance(members, list):
        document["member"] = _expand(members, "[[member]]", path, resolve, warnings)
    pools = document.get("pool")
    for index, pool in enumerate(pools if isinstance(pools, list) else []):
        if not isinstance(pool, dict):
            continue
        where = f"[[pool]] {pool.get('name', f'#{index + 1}')!r}"
        for key in ("members", "member"):
            value = pool.get(key)
            if isinstance(value, list):
                pool[key] = _expand(value, f"{where} {key}", path, resolve, warnings)
    return warnings


def _expand(items: list[Any], where: str, path: str, resolve: Resolver,
            warnings: list[str]) -> list[Any]:
    out: list[Any] = []
    for number, item in enumerate(items, 1):
        table = dict(item) if isinstance(item, dict) else None
        optional = bool(table.pop("optional", False)) if table is not None else False
        address = table.get("address") if table is not None else item
        split = _name_and_port(address)
        if split is None:  # an IP, or something the validator will explain
            out.append(table if table is not None else item)
            continue
        host, port = split
        try:
            found = resolve(host)
        except OSError as err:
            found, problem = [], f"cannot resolve {host!r}: {err}"
        else:
            problem = f"{host!r} resolves to no address"
        if not found:
            if optional:
                warnings.append(f"{where} #{number}: {problem}; left out (optional = true)")
                continue
            raise ConfigError(path, f"{where} #{number} address",
                              f"{problem} (optional = true keeps going without it)")
        if table is not None and "route" in table and len(found) > 1:
            raise ConfigError(path, f"{where} #{number} address",
                              f"{host!r} resolves to {len(found)} addresses "
                              f"({', '.join(found)}); a member with a route needs one")
        for ip in found:
            entry = dict(table) if table is not None else {}
            entry["address"] = _join(ip, port)
            entry.setdefault("name", host)
            out.append(entry)
    return out


def _name_and_port(address: Any) -> tuple[str, str] | None:
    """(host name, ":port" or "") if `address` names its host by name; None otherwise."""
    if not isinstance(address, str) or not address.strip() or address.strip()[0] == "[":
        return None
    host, colon, port = address.strip().rpartition(":")
    if not colon:
        host, port = address.strip(), ""
    elif host.count(":"):  # a bare IPv6 address
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if not is_host_name(host):
        return None
    return host, (":" + port if colon else "")


def is_host_name(host: str) -> bool:
    """Is `host` a DNS name (labels of letters, digits, '-' and '_', at most 253 bytes)?"""
    return HOST_NAME.fullmatch(host) is not None


def _join(ip: str, port: str) -> str:
    return (f"[{ip}]" if ":" in ip else ip) + port
