"""A consistent read of the whole table as plain data: what the status page, /status.json,
/metrics and `hbfork status` show. Reads only; safe from any process attached to the table.

The dict returned by snapshot() is the documented /status.json schema (SCHEMA_VERSION); add
fields, never rename or remove them.
"""

from __future__ import annotations

import time
from typing import Any

from hbfork.core.config import Config
from hbfork.core.hcheck import CHECK_FAILING, CHECK_PASSING, R_NONE, describe
from hbfork.core.members import CHECK_FAILED, EJECTED, ELIGIBLE
from hbfork.core.outlier import CAUSES
from hbfork.ops import pool_view
from hbfork.table.layout import (
    LATENCY_BUCKETS,
    LOAD_MASK,
    MC_CONNECT_FAILURES,
    MC_INFLIGHT,
    MC_STATUS_CLASS,
    MC_UID,
    MEMBER_COUNTERS,
    PROXY_RESULTS,
    STATE_FREE,
    TLS_RESULTS,
    W_CODE_LOADED_US,
    W_CONFIG_GENERATION,
    W_CONFIG_LOADED_US,
    W_FRONT_DRAINING_NS,
    W_LAST_HEARTBEAT_NS,
    W_MASTER_PID,
    W_STARTED_NS,
    W_STARTED_US,
    W_STATS_SEQ,
    WK_ACCEPTED,
    WK_BYTES_IN,
    WK_BYTES_OUT,
    WK_CLIENT_ERRORS,
    WK_CONNECT_FAILURES,
    WK_CONNECTIONS,
    WK_FAST_PATH,
    WK_GENERATION,
    WK_HISTOGRAM,
    WK_NO_MEMBER,
    WK_NUMBER,
    WK_PID,
    WK_PROXY,
    WK_QUEUE_HISTOGRAM,
    WK_REQUESTS,
    WK_RETRIES,
    WK_STATE,
    WK_STATUS_CLASS,
    WK_TICK_NS,
    WK_TLS,
    WK_UPSTREAM_TIMEOUTS,
    WORKER_STATES,
    MemberRecord,
)
from hbfork.table.table import Table

SCHEMA_VERSION = 1
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
NS = 1e9


def snapshot(table: Table, config: Config | None = None,
             certificates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole table as plain data; with the config, also its pools and routes; with
    `certificates` (names, file, not_after), the TLS certificates in use."""
    now_ns = time.monotonic_ns()
    members = table.members()
    for attempt in range(200):  # retry while the master folds an exited worker into totals
        seq = table.header(W_STATS_SEQ)
        if seq & 1:
            if attempt > 20:
                time.sleep(0.0001)  # the master may be descheduled mid-fold
            continue
        workers, totals, per_member = _workers(table, now_ns)
        scoped = pool_view.scoped_counters(table) if config is not None else []
        if table.header(W_STATS_SEQ) == seq:
            break
    else:
        # Never quiet: counters from mid-fold may count one worker twice for this one read.
        workers, totals, per_member = _workers(table, now_ns)
        scoped = pool_view.scoped_counters(table) if config is not None else []
    started = table.header(W_STARTED_US) / 1e6
    data = {
        "schema": SCHEMA_VERSION,
        "time": time.time(),
        "master": {
            "pid": table.header(W_MASTER_PID),
            "started": started,
            "uptime_seconds": max(0.0, time.time() - started),
            "config_generation": table.header(W_CONFIG_GENERATION),
            "config_loaded": table.header(W_CONFIG_LOADED_US) / 1e6,
            # Which code serves, and since when: a reload keeps both, an upgrade moves both.
            "version": table.version(),
            "code_loaded": table.header(W_CODE_LOADED_US) / 1e6,
            "table": table.name,
            "member_capacity": table.capacity,
            # Monotonic seconds since the last accepted heartbeat (since start if none): a
            # front whose heartbeat socket went deaf must not look healthy (ops.health).
            "heartbeat_silence_seconds": _since(now_ns, max(
                table.header(W_LAST_HEARTBEAT_NS), table.header(W_STARTED_NS))),
            "front_draining": bool(table.header(W_FRONT_DRAINING_NS)),
        },
        "heartbeats": table.heartbeat_counters(),
        "members": _members(members, per_member, now_ns, table.load_words()),
        "workers": workers,
        "totals": totals,
    }
    data["tls"] = {"handshakes": totals.pop("tls"), "certificates": [
        {**c, "expires_in_seconds": c["not_after"] - time.time()} for c in certificates or ()]}
    if config is not None:
        admin = table.read_admin() if table.admin_count() else {}
        data["pools"] = pool_view.pools(config, members, admin, scoped)
        data["routes"] = pool_view.routes(config, scoped)
    return data


def _since(now_ns: int, then_ns: int) -> float:
    return max(0.0, (now_ns - then_ns) / NS)


def _members(records: list[MemberRecord], per_member: dict[int, list[int]],
             now_ns: int, loads: list[int]) -> list[dict[str, Any]]:
    eligible = [r for r in records if r.weight > 0]
    active_set = min((r.lbset for r in eligible), default=None)
    total = sum(r.weight for r in eligible if r.lbset == active_set)
    out = []
    for r in records:
        counters = per_member.get(r.slot, [0] * MEMBER_COUNTERS)
        responses = dict(zip(CLASSES, counters[MC_STATUS_CLASS:MC_STATUS_CLASS + 5],
                             strict=True))
        share = r.weight / total if total and r.weight and r.lbset == active_set else 0.0
        out.append({
            "address": r.address,
            "name": r.name,
            "lbset": r.lbset,
            "state": r.reason,
            "why": _why(r, now_ns, active_set),
            "eligible": r.reason == ELIGIBLE,
            "picked": share > 0,
            "ready": r.ready,
            "busy": r.busy,
            "weight": r.weight,
            "share": share,
            "heartbeat_age_seconds": (now_ns - r.last_seen) / NS if r.first_seen else None,
            "heartbeats": r.heartbeats,
            "errors": r.errors,
            "error_seconds_left": max(0.0, (r.error_until - now_ns) / NS)
            if r.error_until > now_ns else 0.0,
            "ejected": r.ejected_until > now_ns,
            "eject_reason": CAUSES[r.eject_cause] if r.ejected_until > now_ns and
            0 < r.eject_cause < len(CAUSES) else "",
            "eject_seconds_left": max(0.0, (r.ejected_until - now_ns) / NS),
            "ejections": r.ejected_total,
            **_check(r, now_ns),
            "static": r.static,
            "drained": r.drained,
            "disabled": r.disabled,
            "requests": sum(responses.values()),
            "responses": responses,
            "connect_failures": counters[MC_CONNECT_FAILURES],
            "in_flight": counters[MC_INFLIGHT],
            "capacity": loads[r.slot] & LOAD_MASK,
        })
    return out


CHECK_STATES = {CHECK_PASSING: "passing", CHECK_FAILING: "failing"}


def _check(r: MemberRecord, now_ns: int) -> dict[str, Any]:
    """Its active checks: "none" (not configured), "passing" or "failing", the last result,
    and passes / failures in a row."""
    c = r.check
    return {"check": CHECK_STATES.get(c.state, "none"),
            "check_result": describe(c.result, c.status) if c.result != R_NONE else "",
            "check_passes": c.passes, "check_fails": c.fails,
            "check_age_seconds": _since(now_ns, c.at) if c.at else None}


def _why(r: MemberRecord, now_ns: int, active_set: int | None) -> str:
    """A sentence an operator can act on."""
    if r.reason == ELIGIBLE:
        if active_set is not None and r.lbset != active_set:
            return f"eligible, but standing by: lbset {active_set} has eligible members"
        checked = "; active check passing" if r.check.state == CHECK_PASSING else ""
        return f"fresh heartbeat, ready {r.ready}{checked}"
    if r.reason == CHECK_FAILED:
        c = r.check
        return (f"fails its active check: {describe(c.result, c.status)} ({c.fails} in a "
                f"row{', ' + str(c.passes) + ' passed since' if c.passes else ''}); back "
                "after hcpasses passes, whatever its heartbeat says")
    if r.reason == "stale":
        return f"no heartbeat for {(now_ns - r.last_seen) / NS:.1f}s"
    if r.reason == "in error":
        return f"connect failed; in error for {(r.error_until - now_ns) / NS:.1f}s more"
    if r.reason == EJECTED:
        cause = CAUSES[r.eject_cause] if 0 < r.eject_cause < len(CAUSES) else "failures"
        return (f"ejected for its answers ({cause}); back in "
                f"{(r.ejected_until - now_ns) / NS:.1f}s")
    if r.reason == "ready 0":
        return "reports no idle capacity (ready=0)"
    if r.reason == "never seen":
        return "no heartbeat received yet"
    if r.reason == "startup grace":
        return "no heartbeat received yet; tried during the startup grace (failover if it refuses)"
    return {"drained": "drained by an operator: no new requests",
            "disabled": "disabled by an operator"}.get(r.reason, r.reason)


def _workers(table: Table, now_ns: int) -> tuple[list[dict[str, Any]], dict[str, Any],
                                                 dict[int, list[int]]]:
    workers = []
    sums: dict[str, Any] = {
            "connections": 0, "accepted": 0, "requests": 0, "fast_path": 0, "no_member": 0,
            "retries": 0,
            "connect_failures": 0, "upstream_timeouts": 0, "client_errors": 0,
            "bytes_in": 0, "bytes_out": 0, "responses": dict.fromkeys(CLASSES, 0),
            "tls": dict.fromkeys(TLS_RESULTS, 0),
            "proxy_protocol": dict.fromkeys(PROXY_RESULTS, 0)}
    histograms = {"latency": [0] * HISTOGRAM_WORDS, "queue_wait": [0] * HISTOGRAM_WORDS}
    per_member: dict[int, list[int]] = {}
    uids = [table.uid(slot) for slot in range(table.capacity)]
    used = [(slot, uid) for slot, uid in enumerate(uids) if uid]
    area = table.workers
    for record in area.records:
        retired = record is area.retired
        if not retired and record.state == STATE_FREE:
            continue
        # Copy the fixed part, and the counters of occupied slots only: a record holds
        # max_members x 8 words, most of them for empty slots.
        values = record.fixed_words()
        member_words = {slot: record.member_words(slot) for slot, _ in used}
        if not retired:
            workers.append({
                "pid": values[WK_PID], "number": values[WK_NUMBER],
                "generation": values[WK_GENERATION],
                "state": WORKER_STATES[values[WK_STATE]] if values[WK_STATE] < 5 else "?",
                "connections": values[WK_CONNECTIONS], "accepted": values[WK_ACCEPTED],
                "requests": values[WK_REQUESTS],
                "tick_age_seconds": (now_ns - values[WK_TICK_NS]) / NS
                if values[WK_TICK_NS] else None,
            })
            sums["connections"] += values[WK_CONNECTIONS]
        for key, word in (("accepted", WK_ACCEPTED), ("requests", WK_REQUESTS),
                          ("fast_path", WK_FAST_PATH),
                          ("no_member", WK_NO_MEMBER), ("retries", WK_RETRIES),
                          ("connect_failures", WK_CONNECT_FAILURES),
                          ("upstream_timeouts", WK_UPSTREAM_TIMEOUTS),
                          ("client_errors", WK_CLIENT_ERRORS), ("bytes_in", WK_BYTES_IN),
                          ("bytes_out", WK_BYTES_OUT)):
            sums[key] += values[word]
        for i, name in enumerate(CLASSES):
            sums["responses"][name] += values[WK_STATUS_CLASS + i]
        for i, name in enumerate(TLS_RESULTS):
            sums["tls"][name] += values[WK_TLS + i]
        for i, name in enumerate(PROXY_RESULTS):
            sums["proxy_protocol"][name] += values[WK_PROXY + i]
        for name, start in (("latency", WK_HISTOGRAM), ("queue_wait", WK_QUEUE_HISTOGRAM)):
            acc = histograms[name]
            for i in range(HISTOGRAM_WORDS):
                acc[i] += values[start + i]
        for slot, uid in used:
            mine = member_words[slot]
            if mine[MC_UID] == uid:
                counters = per_member.setdefault(slot, [0] * MEMBER_COUNTERS)
                for k in range(1, MEMBER_COUNTERS):
                    counters[k] += mine[k]
    for name, acc in histograms.items():
        sums[name] = _histogram(acc)
    workers.sort(key=lambda w: (w["generation"], w["number"]))
    return workers, sums, per_member



HISTOGRAM_WORDS = len(LATENCY_BUCKETS) + 3  # buckets, +Inf, sum (µs), count


def _histogram(acc: list[int]) -> dict[str, Any]:
    """Per-bucket counts as Prometheus wants them: cumulative, with the sum in seconds."""
    cumulative, running = [], 0
    for bound, count in zip((*LATENCY_BUCKETS, "+Inf"), acc[:len(LATENCY_BUCKETS) + 1],
                            strict=True):
        running += count
        cumulative.append([bound, running])
    return {"buckets": cumulative, "sum_seconds": acc[-2] / 1e6, "count": acc[-1]}
