"""The status listener, served by the workers from the shared table.

    /             an HTML page (auto-refreshing, no external assets)
    /status.json  snapshot() as JSON (schema in hbfork/snapshot.py)
    /metrics      Prometheus text exposition format 0.0.4

Rendering functions are pure (a snapshot in, text out); `respond` reads the table and renders.
The worker-side I/O is hbfork.proxy.status_server.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from hbfork.core import http_heads
from hbfork.core.config import Config
from hbfork.ops.snapshot import CLASSES, snapshot
from hbfork.table.table import Table

# --- /status.json


def render_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


# --- /metrics


def _labels(**labels: object) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf"
    return repr(value) if isinstance(value, float) else str(value)


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, object], float | int | None]]) -> None:
        if kind == "counter":
            name += "_total"  # the text format names counters in full, TYPE line included
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, data: dict[str, Any]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        for bound, count in data["buckets"]:
            self.lines.append(f'{name}_bucket{{le="{bound}"}} {count}')
        self.lines.append(f"{name}_sum {data['sum_seconds']!r}")
        self.lines.append(f"{name}_count {data['count']}")

    def text(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def render_metrics(data: dict[str, Any]) -> bytes:
    m = _Metrics()
    master, totals, members = data["master"], data["totals"], data["members"]
    m.family("hbfork_up", "gauge", "1 while the master runs.", [({}, 1)])
    m.family("hbfork_start_time_seconds", "gauge", "Unix time the master started.",
             [({}, master["started"])])
    m.family("hbfork_config_generation", "gauge", "Config generation (reloads + 1).",
             [({}, master["config_generation"])])

    def per_member(key: str) -> list[tuple[dict[str, object], Any]]:
        return [({"member": x["address"], "name": x["name"] or x["address"],
                  "lbset": x["lbset"]}, x[key]) for x in members]

    m.family("hbfork_member_ready", "gauge", "Idle capacity the member last reported.",
             per_member("ready"))
    m.family("hbfork_member_busy", "gauge", "Busy slots the member last reported.",
             per_member("busy"))
    m.family("hbfork_member_weight", "gauge", "Weight used for picks (0 = not picked).",
             per_member("weight"))
    m.family("hbfork_member_share", "gauge", "Current probability of being picked.",
             per_member("share"))
    m.family("hbfork_member_eligible", "gauge", "1 if the member may be picked.",
             [(labels, int(v)) for labels, v in per_member("eligible")])
    m.family("hbfork_member_heartbeat_age_seconds", "gauge",
             "Seconds since the member's last heartbeat (NaN: never).",
             per_member("heartbeat_age_seconds"))
    m.family("hbfork_member_in_flight", "gauge", "Requests in flight to the member.",
             per_member("in_flight"))
    m.family("hbfork_member_capacity", "gauge",
             "Most requests in flight to the member at once (ready + busy, or max_conns).",
             per_member("capacity"))
    m.family("hbfork_member_heartbeats", "counter", "Heartbeats accepted from the member.",
             per_member("heartbeats"))
    m.family("hbfork_member_errors", "counter", "Times the member was put in error.",
             per_member("errors"))
    m.family("hbfork_member_connect_failures", "counter", "Failed connects to the member.",
             per_member("connect_failures"))
    m.family("hbfork_member_ejections", "counter",
             "Times the member was ejected for failing answers ([outlier]).",
             per_member("ejections"))
    m.family("hbfork_member_ejected", "gauge", "1 while the member is ejected.",
             [({"member": x["address"]}, int(x["ejected"])) for x in members])
    m.family("hbfork_member_check_failing", "gauge",
             "1 while the member fails its active checks (0: passing or none configured).",
             [({"member": x["address"]}, int(x["check"] == "failing")) for x in members])
    m.family("hbfork_member_check_fails", "gauge",
             "The member's active checks failed in a row (0 after a pass).",
             per_member("check_fails"))
    m.family("hbfork_requests", "counter",
             "Responses from each member, by status class.",
             [({"member": x["address"], "code": code}, x["responses"][code])
              for x in members for code in CLASSES])
    m.family("hbfork_heartbeats", "counter", "Heartbeat datagrams by result.",
             [({"result": k}, v) for k, v in data["heartbeats"].items()])
    m.family("hbfork_responses", "counter",
             "Responses sent to clients (the proxy's own included), by status class.",
             [({"code": code}, totals["responses"][code]) for code in CLASSES])
    for key, help_text in (("accepted", "Client connections accepted."),
                           ("no_member", "Requests with no eligible member (503)."),
                           ("retries", "Requests retried on another member."),
                           ("fast_path", "Requests served end to end by the HTTP fast path "
                                         "(lean heads, a pooled member connection)."),
                           ("upstream_timeouts", "Responses that timed out (504)."),
                           ("client_errors", "Malformed requests answered 4xx by the proxy."),
                           ("bytes_in", "Bytes received from clients."),
                           ("bytes_out", "Bytes sent to clients.")):
        m.family(f"hbfork_{key}", "counter", help_text, [({}, totals[key])])
    m.family("hbfork_worker_connections", "gauge", "Open client connections per worker.",
             [({"worker": w["number"], "generation": w["generation"], "pid": w["pid"]},
               w["connections"]) for w in data["workers"]])
    m.family("hbfork_worker_requests", "counter", "Requests served per worker.",
             [({"worker": w["number"], "generation": w["generation"], "pid": w["pid"]},
               w["requests"]) for w in data["workers"]])
    if "pools" in data:
        _pool_metrics(m, data)
    tls = data["tls"]
    m.family("hbfork_tls_handshakes", "counter",
             "TLS handshakes by result (ok, resumed, or why they failed).",
             [({"result": k}, v) for k, v in tls["handshakes"].items()])
    m.family("hbfork_tls_cert_expiry_seconds", "gauge",
             "Unix time each certificate expires (by its first name).",
             [({"name": c["names"][0] if c["names"] else c["file"]}, c["not_after"])
              for c in tls["certificates"]])
    m.family("hbfork_proxy_protocol_headers", "counter",
             "PROXY protocol headers received, by result (ok, local, or why the connection "
             "was closed).",
             [({"result": k}, v) for k, v in totals.get("proxy_protocol", {}).items()])
    m.histogram("hbfork_request_duration_seconds",
                "Time from request head to the end of the response.", totals["latency"])
    m.histogram("hbfork_queue_wait_seconds",
                "Time requests waited in the front queue before a member had room.",
                totals["queue_wait"])
    return m.text()


def _pool_metrics(m: _Metrics, data: dict[str, Any]) -> None:
    pools, routes = data["pools"], data["routes"]
    m.family("hbfork_pool_requests", "counter", "Responses to requests routed to each pool.",
             [({"pool": p["name"], "code": code}, p["responses"][code])
              for p in pools for code in CLASSES])
    m.family("hbfork_pool_no_member", "counter", "Requests with no eligible member in the pool.",
             [({"pool": p["name"]}, p["no_member"]) for p in pools])
    m.family("hbfork_pool_sticky", "counter",
             "Requests that named a member of the pool: served by it (hit) or not (lost).",
             [({"pool": p["name"], "result": "hit"}, p["sticky_hits"]) for p in pools]
             + [({"pool": p["name"], "result": "lost"}, p["sticky_lost"]) for p in pools])
    members = [(p["name"], x) for p in pools for x in p["members"]]
    m.family("hbfork_pool_member_eligible", "gauge", "1 if the member may be picked in the pool.",
             [({"pool": pool, "member": x["address"], "route": x["route"]}, int(x["eligible"]))
              for pool, x in members])
    m.family("hbfork_pool_member_share", "gauge", "The member's share of the pool's picks.",
             [({"pool": pool, "member": x["address"], "route": x["route"]}, x["share"])
              for pool, x in members])
    m.family("hbfork_queue_depth", "gauge", "Requests waiting in the front queue.",
             [({"pool": p["name"]}, p["queued"]) for p in pools])
    m.family("hbfork_queue_handed_over", "counter",
             "Rooms a worker made and left to an older waiter of another worker, woken for it.",
             [({"pool": p["name"]}, p.get("handed_over", 0)) for p in pools])
    m.family("hbfork_queue_rejected", "counter",
             "Requests that left the front queue without a member, by reason.",
             [({"pool": p["name"], "reason": reason}, count) for p in pools
              for reason, count in p["queue_rejected"].items()])
    m.family("hbfork_route_requests", "counter", "Requests matched by each route.",
             [({"route": r["label"], "index": r["index"]}, r["requests"]) for r in routes])
    m.family("hbfork_route_errors", "counter", "5xx answers to requests of each route.",
             [({"route": r["label"], "index": r["index"]}, r["errors"]) for r in routes])


# --- / (HTML)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 .2em}h2{font-size:16px;margin:1.4em 0 .4em}
.sub{color:#666}table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}
th,td{padding:4px 10px;text-align:right;border-bottom:1px solid #eee;white-space:nowrap}
th{background:#f0f0f0;font-weight:600}td.l,th.l{text-align:left}
.ok{color:#176f2c;font-weight:600}.bad{color:#b3261e;font-weight:600}
.warn{color:#8a5a00;font-weight:600}.bar{background:#e8eef8;width:160px;text-align:left}
.bar span{display:inline-block;height:12px;background:#3b6fd6}
.tot{margin:.6em 0;display:flex;gap:2em;flex-wrap:wrap}.tot b{font-size:18px}
"""


def _state_class(state: str) -> str:
    if state == "eligible":
        return "ok"
    return "warn" if state in ("drained", "disabled", "ready 0", "startup grace") else "bad"


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


def render_html(data: dict[str, Any]) -> bytes:
    esc = html.escape
    master, totals = data["master"], data["totals"]
    rows = []
    for x in data["members"]:
        bar = f'<span style="width:{x["share"] * 100:.1f}%"></span> {x["share"]:.0%}'
        rows.append(
            f'<tr><td class="l">{esc(x["address"])}</td><td class="l">{esc(x["name"])}</td>'
            f'<td>{x["lbset"]}</td><td class="l {_state_class(x["state"])}">'
            f'{esc(x["state"])}</td><td class="l">{esc(x["why"])}</td>'
            f'<td>{x["ready"]}</td><td>{x["busy"]}</td>'
            f'<td>{_age(x["heartbeat_age_seconds"])}</td><td class="bar">{bar}</td>'
            f'<td>{x["requests"]}</td><td>{x["responses"]["5xx"]}</td>'
            f'<td>{x["connect_failures"]}</td><td>{x["in_flight"]}/{x["capacity"]}</td></tr>')
    workers = "".join(
        f'<tr><td>{w["number"]}</td><td>{w["pid"]}</td><td>{w["generation"]}</td>'
        f'<td class="l">{esc(w["state"])}</td><td>{w["connections"]}</td>'
        f'<td>{w["requests"]}</td><td>{_age(w["tick_age_seconds"])}</td></tr>'
        for w in data["workers"])
    hb = data["heartbeats"]
    rejected = sum(v for k, v in hb.items() if k not in ("accepted", "truncated"))
    r = totals["responses"]
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="2"><title>hbfork status</title><style>{_STYLE}</style>
</head><body><h1>hbfork</h1><div class="sub">master pid {master["pid"]} &middot; up
{master["uptime_seconds"]:.0f}s &middot; config generation {master["config_generation"]}
&middot; refreshes every 2 s</div>
<div class="tot"><div><b>{totals["requests"]}</b> requests</div>
<div><b>{totals["connections"]}</b> open connections</div>
<div><b>{r["2xx"] + r["3xx"]}</b> 2xx/3xx &middot; <b>{r["4xx"]}</b> 4xx &middot;
<b>{r["5xx"]}</b> 5xx</div><div><b>{totals["no_member"]}</b> with no member</div>
<div><b>{hb["accepted"]}</b> heartbeats &middot; <b>{rejected}</b> rejected</div></div>
<h2>Members</h2><table><tr><th class="l">address</th><th class="l">name</th><th>lbset</th>
<th class="l">state</th><th class="l">why</th><th>ready</th><th>busy</th><th>heartbeat</th>
<th class="l">share of picks</th><th>requests</th><th>5xx</th><th>connect fails</th>
<th>in flight / capacity</th></tr>{"".join(rows)}</table>
{_pools_html(data)}{_tls_html(data)}
<h2>Workers</h2><table><tr><th>#</th><th>pid</th><th>gen</th><th class="l">state</th>
<th>connections</th><th>requests</th><th>last tick</th></tr>{workers}</table>
</body></html>"""
    return page.encode()


def _tls_html(data: dict[str, Any]) -> str:
    certificates = data["tls"]["certificates"]
    if not certificates:
        return ""
    esc = html.escape
    rows = "".join(
        f'<tr><td class="l">{esc(", ".join(c["names"]))}</td><td class="l">{esc(c["file"])}'
        f'</td><td class="{"bad" if c["expires_in_seconds"] < 14 * 86400 else "ok"}">'
        f'{c["expires_in_seconds"] / 86400:.0f} days</td></tr>' for c in certificates)
    shakes = " &middot; ".join(f"{k} {v}" for k, v in data["tls"]["handshakes"].items())
    return (f'<h2>TLS</h2><div class="sub">handshakes: {shakes}</div><table><tr>'
            f'<th class="l">names</th><th class="l">certificate</th><th>expires in</th></tr>'
            f'{rows}</table>')


def _pools_html(data: dict[str, Any]) -> str:
    if "pools" not in data:
        return ""
    esc = html.escape
    rows = []
    for p in data["pools"]:
        sticky = esc(p["stickysession"]) or "off"
        for x in p["members"]:
            bar = f'<span style="width:{x["share"] * 100:.1f}%"></span> {x["share"]:.0%}'
            tier = f'{x["lbset"]}{" standby" if x["standby"] else ""}'
            rows.append(
                f'<tr><td class="l">{esc(p["name"])}</td><td class="l">{sticky}'
                f' &middot; queued {p["queued"]}</td>'
                f'<td class="l">{esc(x["address"])}</td><td class="l">{esc(x["route"])}</td>'
                f'<td>{tier}</td><td class="l {_state_class(x["state"])}">{esc(x["state"])}'
                f'</td><td class="bar">{bar}</td><td>{p["requests"]}</td>'
                f'<td>{p["sticky_hits"]}/{p["sticky_lost"]}</td></tr>')
    routes = "".join(
        f'<tr><td>{r["index"]}</td><td class="l">{esc(", ".join(r["host"]) or "*")}</td>'
        f'<td class="l">{esc(r["path"] or "~ " + r["regex"])}</td>'
        f'<td class="l">{esc(r["pool"]) if r["pass"] else "kept out"}</td>'
        f'<td>{r["requests"]}</td><td>{r["errors"]}</td></tr>' for r in data["routes"])
    table = (f'<h2>Pools</h2><table><tr><th class="l">pool</th><th class="l">sticky</th>'
             f'<th class="l">member</th><th class="l">route</th><th>lbset</th>'
             f'<th class="l">state in pool</th><th class="l">share of the pool</th>'
             f'<th>pool requests</th><th>sticky hit/lost</th></tr>{"".join(rows)}</table>')
    if routes:
        table += (f'<h2>Routes (first match wins)</h2><table><tr><th>#</th>'
                  f'<th class="l">host</th><th class="l">path</th><th class="l">pool</th>'
                  f'<th>requests</th><th>5xx</th></tr>{routes}</table>')
    return table


PAGES = {b"/": ("text/html; charset=utf-8", render_html),
         b"/status.json": ("application/json", render_json),
         b"/metrics": ("text/plain; version=0.0.4; charset=utf-8", render_metrics)}


def respond(table: Table, target: bytes, method: bytes, config: Config | None = None,
            certificates: list[dict[str, Any]] | None = None) -> bytes:
    """The whole response to one status request."""
    path = target.split(b"?", 1)[0]
    page = PAGES.get(path)
    if page is None:
        return http_heads.error_response(404 if method in (b"GET", b"HEAD") else 405,
                                     "try /, /status.json or /metrics")
    if method not in (b"GET", b"HEAD"):
        return http_heads.error_response(405, "status pages are read-only",
                                     extra=(("Allow", "GET, HEAD"),))
    content_type, render = page
    body = render(snapshot(table, config, certificates))
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
            "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
    return head if method == b"HEAD" else head + body
