"""Pools and routes as a config file declares them, assembled and checked across each other.

The top-level `[[member]]` entries are the pool "default"; a `[[pool]]` named "default" sets that
pool's options (and may add members). A member listed in several pools is one member (one
table entry, one heartbeat sender); what is intrinsic to it (name, max_ready,
require_signature) must agree wherever it is listed, what belongs to its place in a pool (route,
lbset, standby, drain, disabled) is per pool.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from hbfork.core.addresses import Endpoint
from hbfork.core.errors import ConfigError
from hbfork.core.hcheck import HcheckSettings, problem
from hbfork.core.pool_settings import (
    DEFAULT_POOL,
    MAX_POOLS,
    POOL_NAME,
    PoolMemberSettings,
    PoolSettings,
    RouteSettings,
    parse_member,
)
from hbfork.core.settings import HeartbeatSettings, MemberSettings
from hbfork.core.values import BadSetting, build


def parse_pools(raw: Any, path: str, heartbeat: HeartbeatSettings,
                members: tuple[MemberSettings, ...]) -> tuple[PoolSettings, ...]:
    """The pools: every `[[pool]]`, and "default" from the top-level `[[member]]`s."""
    if not isinstance(raw, list):
        raise ConfigError(path, "[[pool]]", "must be an array of tables ([[pool]] blocks)")
    pools: list[PoolSettings] = []
    for index, table in enumerate(raw):
        pools.append(_pool(table, f"[[pool]] #{index + 1}", path, heartbeat.default_port))
    seen: dict[str, int] = {}
    for index, pool in enumerate(pools):
        if pool.name in seen:
            raise ConfigError(path, f"[[pool]] #{index + 1} name",
                              f"{pool.name!r} is already pool #{seen[pool.name] + 1}")
        seen[pool.name] = index
    legacy = tuple(PoolMemberSettings(address=m.address, route=m.route, lbset=m.lbset,
                                      name=m.name, max_ready=m.max_ready,
                                      require_signature=m.require_signature,
                                      max_conns=m.max_conns)
                   for m in members)
    if legacy or (not pools and heartbeat.discover):
        if DEFAULT_POOL in seen:
            at = seen[DEFAULT_POOL]
            pools[at] = replace(pools[at], members=legacy + pools[at].members)
        else:
            pools.insert(0, PoolSettings(name=DEFAULT_POOL, members=legacy,
                                         discover=heartbeat.discover))
    if heartbeat.discover and not any(p.discover for p in pools):
        # Discovered members join the pool "default" unless another pool takes them.
        found = next((i for i, p in enumerate(pools) if p.name == DEFAULT_POOL), None)
        if found is None:
            raise ConfigError(path, "[heartbeat] discover",
                              "discovered members need a pool: set discover = true on one")
        pools[found] = replace(pools[found], discover=True)
    if len(pools) > MAX_POOLS:
        raise ConfigError(path, "[[pool]]", f"{len(pools)} pools; at most {MAX_POOLS}")
    return tuple(pools)


def _pool(table: Any, where: str, path: str, default_port: int) -> PoolSettings:
    if not isinstance(table, dict):
        raise ConfigError(path, where, "must be a table")
    body = dict(table)
    items = body.pop("members", [])
    items = (items if isinstance(items, list) else [items]) + _as_list(body.pop("member", []))
    if "name" not in body:
        raise ConfigError(path, f"{where} name", "is required")
    checks = _hc_keys(body)
    try:
        pool = build(PoolSettings, body, members=(), hcheck=build(HcheckSettings, checks))
    except BadSetting as err:
        raise ConfigError(path, f"{where} {err.key}", err.problem) from None
    if not POOL_NAME.fullmatch(pool.name):
        raise ConfigError(path, f"{where} name", f"{pool.name!r}: 1-32 letters, digits, "
                                                 "'_', '.' or '-'")
    where = f"[[pool]] {pool.name!r}"
    members = []
    for number, item in enumerate(items, 1):
        try:
            item = dict(item) if isinstance(item, dict) else item  # the document stays as read
            own = _hc_keys(item) if isinstance(item, dict) else {}
            member = parse_member(item, default_port)
            if own:
                member = replace(member, hcheck=build(HcheckSettings, {**checks, **own}))
            members.append(member)
        except BadSetting as err:
            raise ConfigError(path, f"{where} member #{number} {err.key}".rstrip(),
                              err.problem) from None
    return replace(pool, members=tuple(members))


def _hc_keys(table: dict[str, Any]) -> dict[str, Any]:
    """Take the hc* keys (hbfork.core.hcheck) out of a pool's or member's table."""
    return {key: table.pop(key) for key in [k for k in table if k.startswith("hc")]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def parse_routes(raw: Any, path: str) -> tuple[RouteSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError(path, "[[route]]", "must be an array of tables ([[route]] blocks)")
    routes = []
    for index, table in enumerate(raw):
        where = f"[[route]] #{index + 1}"
        if not isinstance(table, dict):
            raise ConfigError(path, where, "must be a table")
        try:
            routes.append(build(RouteSettings, table))
        except BadSetting as err:
            raise ConfigError(path, f"{where} {err.key}", err.problem) from None
    return tuple(routes)


# --- checks across pools, members and routes


def check_pools(path: str, pools: tuple[PoolSettings, ...], discovering: bool) -> None:
    discover = [p.name for p in pools if p.discover]
    if len(discover) > 1:
        raise ConfigError(path, "[[pool]] discover",
                          f"only one pool can take discovered members; {discover} all do")
    for pool in pools:
        where = f"[[pool]] {pool.name!r}"
        _check_members(path, where, pool)
        if not pool.members and not (pool.discover and discovering):
            raise ConfigError(path, f"{where} members",
                              "is empty (and it takes no discovered members)")
        if pool.sticky_cookie and pool.stickysession and \
                pool.sticky_names[0] != pool.sticky_cookie:
            raise ConfigError(path, f"{where} sticky_cookie",
                              f"{pool.sticky_cookie!r} is set by hbfork, so stickysession must "
                              f"read it (it reads {pool.sticky_names[0]!r})")
        for number, check in _checks(pool):
            found = problem(check, pool.protocol == "ajp")
            if found is not None:
                member = f" member #{number}" if number else ""
                raise ConfigError(path, f"{where}{member} {found[0]}", found[1])
        if pool.protocol == "ajp":
            _check_ajp(path, where, pool)
        if pool.sticky_cookie_samesite == "None" and not pool.sticky_cookie_secure:
            raise ConfigError(path, f"{where} sticky_cookie_samesite",
                              "\"None\" needs sticky_cookie_secure = true (browsers drop it)")
    _check_member_identity(path, pools)


def _check_ajp(path: str, where: str, pool: PoolSettings) -> None:
    if pool.tls:
        raise ConfigError(path, f"{where} tls", "AJP members are spoken to in plain AJP/1.3 "
                                                "(AJP over TLS is not supported)")
    if pool.proxy_protocol:
        raise ConfigError(path, f"{where} proxy_protocol", "AJP carries the client's address "
                                                           "itself (no PROXY header before it)")


def _checks(pool: PoolSettings) -> list[tuple[int, HcheckSettings]]:
    """The pool's active check (number 0) and its members' own ones (their numbers)."""
    return [(0, pool.hcheck)] + [(n, m.hcheck) for n, m in enumerate(pool.members, 1)
                                 if m.hcheck is not None]


def _check_members(path: str, where: str, pool: PoolSettings) -> None:
    addresses: dict[Endpoint, int] = {}
    routes: dict[str, Endpoint] = {}
    for number, member in enumerate(pool.members, 1):
        if member.address in addresses:
            raise ConfigError(path, f"{where} member #{number} address",
                              f"{member.address} is already member #{addresses[member.address]}")
        addresses[member.address] = number
        if member.route:
            if member.route in routes:
                raise ConfigError(path, f"{where} member #{number} route",
                                  f"{member.route!r} is already the route of "
                                  f"{routes[member.route]}")
            routes[member.route] = member.address


def _check_member_identity(path: str, pools: tuple[PoolSettings, ...]) -> None:
    """A member listed in several pools is one member: its own settings must agree."""
    first: dict[Endpoint, tuple[str, PoolMemberSettings]] = {}
    for pool in pools:
        for member in pool.members:
            if member.address not in first:
                first[member.address] = (pool.name, member)
                continue
            other_pool, other = first[member.address]
            for key in ("name", "max_ready", "require_signature", "max_conns"):
                mine, theirs = getattr(member, key), getattr(other, key)
                if mine != theirs and mine != PoolMemberSettings.__dataclass_fields__[key] \
                        .default:
                    raise ConfigError(path, f"[[pool]] {pool.name!r} member {member.address} "
                                            f"{key}",
                                      f"{mine!r} disagrees with {theirs!r} in pool "
                                      f"{other_pool!r} (one address is one member)")


def static_members(pools: tuple[PoolSettings, ...],
                   legacy: tuple[MemberSettings, ...]) -> tuple[MemberSettings, ...]:
    """Every listed member once, as the heartbeat registry knows it: the top-level entries as
    they are, then members that only pools list (their lbset and route are per pool)."""
    out = list(legacy)
    seen = {m.address for m in legacy}
    for pool in pools:
        for member in pool.members:
            if member.address in seen:
                continue
            seen.add(member.address)
            named = next((m for p in pools for m in p.members
                          if m.address == member.address and m.name), member)
            out.append(MemberSettings(address=member.address, name=named.name,
                                      max_ready=member.max_ready,
                                      require_signature=member.require_signature,
                                      max_conns=member.max_conns))
    return tuple(out)


def check_routes(path: str, routes: tuple[RouteSettings, ...],
                 pools: tuple[PoolSettings, ...], mode: str) -> None:
    if routes and mode != "http":
        raise ConfigError(path, "[[route]]", "routes need [proxy] mode = \"http\"")
    names = {p.name for p in pools}
    seen: dict[tuple[tuple[str, ...], str, str], int] = {}
    for index, route in enumerate(routes):
        where = f"[[route]] #{index + 1}"
        _check_route(path, where, route, names)
        key = (tuple(sorted(route.host)), route.path, route.regex)
        if key in seen:
            raise ConfigError(path, where, f"the same host and {'path' if route.path else 'regex'}"
                                           f" as [[route]] #{seen[key] + 1}")
        seen[key] = index


def _check_route(path: str, where: str, route: RouteSettings, pools: set[str]) -> None:
    if bool(route.path) == bool(route.regex):
        raise ConfigError(path, where, "needs exactly one of path or regex")
    if route.path and not route.path.startswith("/"):
        raise ConfigError(path, f"{where} path", f"{route.path!r} must start with /")
    if route.regex:
        try:
            re.compile(route.regex)
        except re.error as err:
            raise ConfigError(path, f"{where} regex", f"invalid regular expression: {err}") \
                from None
    if not route.passes:
        for key in ("pool", "rewrite", "strip_prefix", "reverse"):
            if getattr(route, key) not in ("", None, False):
                raise ConfigError(path, f"{where} {key}", "means nothing with pass = false")
        return
    if not route.pool:
        raise ConfigError(path, f"{where} pool", "is required (or pass = false)")
    if route.pool not in pools:
        raise ConfigError(path, f"{where} pool", f"no pool is named {route.pool!r} (pools: "
                                                 f"{', '.join(sorted(pools))})")
    if route.strip_prefix and (route.rewrite is not None or route.regex):
        raise ConfigError(path, f"{where} strip_prefix",
                          "cannot be combined with rewrite or regex")
    if route.rewrite is not None and route.path:
        if route.rewrite and not route.rewrite.startswith("/"):
            raise ConfigError(path, f"{where} rewrite", f"{route.rewrite!r} must start with /")
        if route.rewrite and route.rewrite.endswith("/") != route.path.endswith("/"):
            # Apache warns of the same: /app/x would become //x or /xx.
            raise ConfigError(path, f"{where} rewrite",
                              f"{route.rewrite!r} and path {route.path!r} must both end in / "
                              "or both not")
