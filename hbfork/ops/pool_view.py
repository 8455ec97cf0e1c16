"""Pools and routes as the status page, /status.json, /metrics and `hbfork status` show them:
each pool's members with their state in that pool and their share of its picks, and the
request counters of pools and routes. Reads the table; needs the config for names.

Pool and route counters are per config generation (a reload may reorder or rename them): they
count what workers of the serving generation did, including those of its workers that exited.
"""

from __future__ import annotations

from typing import Any

from hbfork.core.config import Config
from hbfork.core.members import ELIGIBLE, GRACE
from hbfork.core.pool_admin import POOL_DISABLED, POOL_DRAINED
from hbfork.table.layout import (
    MAX_POOLS,
    MAX_ROUTES,
    PC_DEQUEUED,
    PC_NO_MEMBER,
    PC_QUEUE_FULL,
    PC_QUEUE_GONE,
    PC_QUEUE_HANDOFFS,
    PC_QUEUE_TIMEOUT,
    PC_QUEUED,
    PC_STATUS_CLASS,
    PC_STICKY,
    PC_STICKY_LOST,
    POOL_COUNTERS,
    RC_ERRORS,
    RC_REQUESTS,
    ROUTE_COUNTERS,
    STATE_FREE,
    W_CONFIG_GENERATION,
    MemberRecord,
)
from hbfork.table.table import Table

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def scoped_counters(table: Table) -> list[int]:
    """The pool and route counters of the serving generation, summed over its workers."""
    generation = table.header(W_CONFIG_GENERATION)
    width = MAX_POOLS * POOL_COUNTERS + MAX_ROUTES * ROUTE_COUNTERS
    total = [0] * width
    area = table.workers
    for record in area.records:
        if record is not area.retired and record.state == STATE_FREE:
            continue
        mine, values = record.scoped_words()
        if mine == generation:
            total = [a + b for a, b in zip(total, values, strict=True)]
    return total


def pools(config: Config, records: list[MemberRecord], admin: dict[tuple[str, int], int],
          counters: list[int]) -> list[dict[str, Any]]:
    by_address = {r.address: r for r in records}
    out = []
    for index, pool in enumerate(config.pools):
        members = []
        for member in pool.members:
            record = by_address.get(str(member.address))
            members.append(_member(pool.name, member.address, member.route, member.lbset,
                                   member.standby, record, admin))
        if pool.discover:
            listed = {str(m.address) for m in pool.members}
            members += [_member(pool.name, r.address, "", 0, False, r, admin)
                        for r in records if not r.static and r.address not in listed]
        _shares(members)
        at = index * POOL_COUNTERS
        responses = dict(zip(CLASSES, counters[at + PC_STATUS_CLASS:at + PC_STATUS_CLASS + 5],
                             strict=True))
        out.append({
            "name": pool.name,
            "stickysession": pool.stickysession or pool.sticky_cookie,
            "sticky_cookie": pool.sticky_cookie,
            "nofailover": pool.nofailover,
            "discover": pool.discover,
            "requests": sum(responses.values()),
            "responses": responses,
            "no_member": counters[at + PC_NO_MEMBER],
            "sticky_hits": counters[at + PC_STICKY],
            "sticky_lost": counters[at + PC_STICKY_LOST],
            "queued": counters[at + PC_QUEUED],
            "dequeued": counters[at + PC_DEQUEUED],
            # rooms a worker made and left to an older waiter of another worker (woken)
            "handed_over": counters[at + PC_QUEUE_HANDOFFS],
            "queue_rejected": {"timeout": counters[at + PC_QUEUE_TIMEOUT],
                               "full": counters[at + PC_QUEUE_FULL],
                               "gone": counters[at + PC_QUEUE_GONE]},
            "weighting": pool.weighting or config.balance.weighting,
            "pick": pool.pick or config.balance.pick,
            "members": members,
        })
    return out


def _member(pool: str, address: object, route: str, lbset: int, standby: bool,
            record: MemberRecord | None, admin: dict[tuple[str, int], int]) -> dict[str, Any]:
    flags = admin.get((pool, record.uid), 0) if record is not None else 0
    state = record.reason if record is not None else "unknown"
    if flags & POOL_DISABLED:
        state = "disabled in pool"
    elif flags & POOL_DRAINED:
        state = "drained in pool"
    weight = record.weight if record is not None and state in (ELIGIBLE, GRACE) else 0
    return {"address": str(address), "name": record.name if record else "", "route": route,
            "lbset": lbset, "standby": standby, "state": state,
            "eligible": state == ELIGIBLE, "weight": weight, "share": 0.0,
            "tier": lbset * 2 + (1 if standby else 0),
            "sticky_ok": bool(record is not None and not flags & POOL_DISABLED
                              and record.reason in (ELIGIBLE, "ready 0", "drained")),
            "pool": pool}


def _shares(members: list[dict[str, Any]]) -> None:
    """Each member's share of its pool's picks: the lowest tier with weight takes them all."""
    tiers = [m["tier"] for m in members if m["weight"]]
    if not tiers:
        return
    active = min(tiers)
    total = sum(m["weight"] for m in members if m["tier"] == active)
    for m in members:
        if m["tier"] == active and m["weight"]:
            m["share"] = m["weight"] / total


def routes(config: Config, counters: list[int]) -> list[dict[str, Any]]:
    base = MAX_POOLS * POOL_COUNTERS
    out = []
    for index, route in enumerate(config.routes):
        at = base + index * ROUTE_COUNTERS
        counted = index < MAX_ROUTES
        out.append({
            "index": index + 1,
            "label": route.label,
            "host": list(route.host),
            "path": route.path,
            "regex": route.regex,
            "pool": route.pool if route.passes else "",
            "pass": route.passes,
            "requests": counters[at + RC_REQUESTS] if counted else None,
            "errors": counters[at + RC_ERRORS] if counted else None,
        })
    return out
