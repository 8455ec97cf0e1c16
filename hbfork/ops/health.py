"""Is this front fit to take traffic? The verdict behind `GET /healthz` and `hbfork health`
(keepalived's vrrp_script), computed from a table snapshot by one pure function.

Healthy means all of: the master runs; at least one worker is ready and its loop ticked
recently; the front is not handing over (`hbfork ctl drain-front`); when there are members, a
heartbeat was accepted within max_age (a front whose heartbeat socket went deaf, say its
interface is down, must step aside rather than serve a table that only ages); and every pool
has an eligible member (weight > 0: a fresh heartbeat with ready > 0, or the startup grace).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hbfork.core import http_heads
from hbfork.ops.snapshot import snapshot

if TYPE_CHECKING:
    from hbfork.core.config import Config
    from hbfork.table.table import Table

WORKER_TICK_LIMIT = 5.0  # seconds: a ready worker's loop ticks at least every 0.5 s


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str  # one short line, for humans and keepalived's log

    @property
    def line(self) -> str:
        return f"{'healthy' if self.ok else 'unhealthy'}: {self.reason}"


def verdict(data: dict[str, Any], max_age: float, master_alive: bool = True,
            live_pids: Container[int] | None = None) -> Verdict:
    """The verdict for a snapshot (hbfork.ops.snapshot) of a front whose max_age is given.
    `live_pids`, when given, holds the worker pids known to be running: a worker whose process
    is gone does not count, however fresh its last tick (a killed master's workers exit at
    once, while their table rows age out only after WORKER_TICK_LIMIT)."""
    if not master_alive:
        return Verdict(False, "the master is not running")
    master = data["master"]
    if master.get("front_draining"):
        return Verdict(False, "draining: handing over to another front")
    # A worker that has not ticked yet (tick age None) became ready a moment ago.
    workers = [w for w in data["workers"] if w["state"] == "ready"
               and (w["tick_age_seconds"] or 0.0) < WORKER_TICK_LIMIT
               and (live_pids is None or w["pid"] in live_pids)]
    if not workers:
        return Verdict(False, "no worker is serving")
    members = data["members"]
    if not members:
        return Verdict(False, "no members")
    silence = master.get("heartbeat_silence_seconds", 0.0)
    if silence >= max_age:
        return Verdict(False, f"no heartbeat accepted for {silence:.1f}s (max_age "
                              f"{max_age:g}s): is the heartbeat socket receiving?")
    # With named pools the snapshot lists each pool's members (their weight there); without,
    # every member is in the one unnamed pool.
    pools = {p["name"]: p["members"] for p in data.get("pools") or ()} or {"": members}
    empty = sorted(name for name, group in pools.items()
                   if not any(m["weight"] > 0 for m in group))
    if empty:
        named = [name for name in empty if name]
        return Verdict(False, "no eligible member" + (f" in pool {', '.join(named)}"
                                                      if named else ""))
    usable = sum(m["weight"] > 0 for m in members)
    return Verdict(True, f"{len(workers)} workers, {usable} of {len(members)} members usable")


def answer(table: Table, config: Config, worker_pids: Container[int]) -> str:
    """The master's answer to "health" on its control socket (`hbfork health`): the verdict
    line for its own table, counting only workers it knows to be running."""
    data = snapshot(table, config)
    return verdict(data, config.heartbeat.max_age, True, worker_pids).line


def http_response(result: Verdict, method: bytes) -> bytes:
    """The whole /healthz response: 200 or 503, the verdict's line as the body."""
    body = (result.line + "\n").encode()
    status = "200 OK" if result.ok else "503 Service Unavailable"
    head = (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close"
            "\r\n\r\n").encode()
    if method not in (b"GET", b"HEAD"):
        return http_heads.error_response(405, "/healthz is read-only",
                                     extra=(("Allow", "GET, HEAD"),))
    return head if method == b"HEAD" else head + body
