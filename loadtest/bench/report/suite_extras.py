"""scripts/bench: the report's sections about everything but the request rounds: the members'
heartbeats during the rounds, worker scaling, memory, 10,000 idle connections, the master's
heartbeat throughput and the pick cost."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any


def members_seen(results: dict[str, Any]) -> str:
    runs = [r for r in results["runs"] if r.get("members_eligible_min") is not None]
    if not runs:
        return ""
    expected = len(results.get("members") or [0, 0, 0])
    short = [r for r in runs if r["members_eligible_min"] < expected]
    lows = defaultdict(list)
    for run in runs:
        for address, low in (run.get("ready_min") or {}).items():
            lows[address].append(low)
    rows = [f"| {address} | {min(values)} | {statistics.median(values):.0f} |"
            for address, values in sorted(lows.items())]
    text = ("## The members' heartbeats during the rounds\n\nhbfork-http's /status.json was "
            "sampled every 0.5 s through all rounds: the backends' reported ready (idle "
            "threads, mod_heartbeat) as every heartbeat front saw it. Per member: the lowest "
            "ready seen during any run, and the median over runs of each run's lowest.\n\n"
            "| member | lowest ready | median of per-run lowest |\n|---|---|---|\n"
            + "\n".join(rows))
    if short:
        text += ("\n\nRuns during which fewer members were eligible: " + ", ".join(
            f"{r['contender']} {r.get('kind', 'small')} c={r['connections']} "
            f"round {r['round'] + 1} "
            f"({r['members_eligible_min']} eligible)" for r in short) + ".")
    else:
        text += "\n\nEvery member stayed eligible throughout every run."
    return text


def workers(results: dict[str, Any]) -> str:
    runs = results.get("workers") or []
    if not runs:
        return ""
    by: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        if run.get("ok_rps"):
            by[run["workers"]].append(run["ok_rps"])
    base = statistics.median(by[min(by)]) if by else None
    rows = [f"| {w} | {statistics.median(v):,.0f} | {statistics.median(v) / base:.2f} |"
            for w, v in sorted(by.items())]
    level = runs[0]["connections"]
    return (f"## Requests/s against hbfork's worker count\n\nHTTP mode, wrk -t2 -c{level}, "
            f"median of {results['rounds']} interleaved rounds. The machine has "
            f"{results['machine']['cores']} cores shared with wrk and the backends, so more "
            "workers than cores cannot help here.\n\n| workers | req/s | x 1 worker |\n"
            "|---|---|---|\n" + "\n".join(rows))


def memory(results: dict[str, Any]) -> str:
    rows = []
    for name, processes in (results.get("memory") or {}).items():
        for proc in processes:
            title = proc["title"][:60].replace("|", "/")
            rows.append(f"| {name} | {proc['pid']} | `{title}` | {proc['rss'] / 1024:.1f} | "
                        f"{proc['pss'] / 1024:.1f} |")
    return ("## Memory per process\n\nAfter the throughput rounds. RSS counts shared pages in "
            "every process; PSS splits them among the processes sharing them (forked workers "
            "share most of the interpreter with the master).\n\n| front | pid | process | "
            "RSS MiB | PSS MiB |\n|---|---|---|---|---|\n" + "\n".join(rows))


def idle(results: dict[str, Any]) -> str:
    idle = results.get("idle") or {}
    if "skipped" in idle:
        return f"## 10,000 idle keep-alive connections\n\nSkipped: {idle['skipped']}"
    rows = []
    for name, r in idle.items():
        rows.append(f"| {name} | {r.get('attempted', r['opened']):,} | {r['opened']:,} | "
                    f"{r['still_open_after_hold']:,} | "
                    f"{r['rss_before_kib'] / 1024:.1f} | {r['rss_held_kib'] / 1024:.1f} | "
                    f"{r['kib_per_connection']:.2f} | {r['cpu_percent_idle']:.1f} |")
    hold = next(iter(idle.values()))["hold_seconds"] if idle else 0
    return ("## 10,000 idle keep-alive client connections\n\nEach connection makes one request "
            f"and is then held idle for {hold:g} s (the fronts' keep-alive timeouts are 300 s "
            "in this run). RSS is the sum over the front's processes; CPU is the front's CPU "
            "while the connections sit idle (100 % = one core). HAProxy is offered fewer: it "
            "reserves two descriptors per connection and refuses a maxconn that does not fit "
            "its descriptor limit, which this machine caps (hard RLIMIT_NOFILE, no "
            "CAP_SYS_RESOURCE).\n\n| front | offered | answered | still open after the hold | "
            "RSS before MiB | RSS held MiB | KiB per connection | CPU % idle |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))


def heartbeats(results: dict[str, Any]) -> str:
    hb = results.get("heartbeats")
    if not hb:
        return ""
    outcomes = ", ".join(f"{k} {v:,}" for k, v in hb["results"].items())
    return f"""## Master heartbeat throughput

A separate hbfork (`discover = true`, `rate_limit = 0`, one worker) receives valid heartbeats
blasted from {hb['sources']:,} loopback source addresses (one Python sender, round-robin, as
fast as it can, for {hb['seconds'] or 0:.1f} s); `heartbeats.accepted` is read from /status.json
every 0.5 s. Sender and master share the machine.

| | |
|---|---|
| sent | {hb['sent'] or 0:,} ({hb['sent_per_second'] or 0:,.0f}/s) |
| applied (accepted) | {hb['accepted']:,} ({(hb['applied_fraction'] or 0):.0%} of sent) |
| not applied | the rest: dropped by the kernel while the socket's receive buffer was full \
(the master counts every datagram it reads, valid or not) |
| applied per second | median {hb['accepted_per_second_median']:,.0f}/s, \
best 0.5 s window {hb['accepted_per_second_max']:,.0f}/s |
| outcomes | {outcomes} |
| members in the table | {hb['members']:,} |"""


def pick(results: dict[str, Any]) -> str:
    pick = results.get("pick")
    if not pick:
        return ""
    rows = [f"| pick() (random + bisect) | {pick['pick_us']:.3f} µs |"]
    for key, text in (("choose_us", "the worker's choose() + finished(), corrected (generation "
                                    "check, pick, reservation, cached target; the request's end)"),
                      ("choose_reported_us", "the same, weighting = \"reported\""),
                      ("choose_p2c_us", "the same, pick = \"p2c\""),
                      ("choose_excluding_us", "choose() excluding one member (a retry)"),
                      ("rebuild_us", "rebuild after a table change"),
                      ("random_us", "reference: random() alone")):
        if pick.get(key) is not None:
            rows.append(f"| {text} | {pick[key]:.3f} µs |")
    return (f"## Pick cost with 1,000 members\n\nFrom `{pick['source']}` (best of the "
            "repeats).\n\n| | per call |\n|---|---|\n" + "\n".join(rows))
