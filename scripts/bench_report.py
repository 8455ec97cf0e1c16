"""scripts/bench: BENCHMARKS.md and the chart, from the raw results of one run."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

LABELS = {
    "hbfork-http": "hbfork, HTTP mode",
    "hbfork-tcp": "hbfork, TCP mode",
    "apache": "Apache httpd, mod_proxy_balancer",
    "nginx": "nginx, upstream random + keepalive",
    "haproxy": "HAProxy, balance random (HTTP)",
    "haproxy-tcp": "HAProxy, balance random (TCP)",
    "direct": "direct to one backend",
}
COLORS = {"hbfork-http": "#d62728", "hbfork-tcp": "#ff9896", "apache": "#1f77b4",
          "nginx": "#2ca02c", "haproxy": "#9467bd", "haproxy-tcp": "#c5b0d5",
          "direct": "#7f7f7f"}
TARGETS = (  # (contender, reference, minimum ratio of requests/s)
    ("hbfork-http", "apache", 1.3),
    ("hbfork-http", "nginx", 0.8),
    ("hbfork-tcp", "haproxy", 0.9),
)


def label(results: dict[str, Any], name: str) -> str:
    if name == "apache":
        method = results.get("apache_lbmethod") or "heartbeat"
        suffix = "lbmethod=heartbeat" if method == "heartbeat" else \
            "lbmethod=byrequests (STAND-IN: no heartbeats on loopback)"
        return f"{LABELS[name]}, {suffix}"
    return LABELS[name]


class Table:
    """Runs grouped by (contender, connections), each a list over rounds."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.by: dict[tuple[str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
        for run in runs:
            self.by[(run["contender"], run["connections"])][run["round"]] = run
        self.contenders = list(dict.fromkeys(run["contender"] for run in runs))
        self.levels = sorted({run["connections"] for run in runs})

    def values(self, name: str, level: int, key: str) -> list[float]:
        return [r[key] for r in self.by[(name, level)].values() if r.get(key) is not None]

    def median(self, name: str, level: int, key: str) -> float | None:
        values = self.values(name, level, key)
        return statistics.median(values) if values else None

    def ratio(self, name: str, reference: str, level: int, key: str = "ok_rps"
              ) -> float | None:
        """Median over rounds of the same-round ratio (drift on a shared machine cancels)."""
        mine, theirs = self.by[(name, level)], self.by[(reference, level)]
        ratios = [mine[r][key] / theirs[r][key] for r in mine
                  if r in theirs and mine[r].get(key) and theirs[r].get(key)]
        return statistics.median(ratios) if ratios else None

    def errors(self, name: str, level: int) -> int:
        return sum(r.get("errors", 0) + r.get("non2xx", 0) + ("error" in r)
                   for r in self.by[(name, level)].values())

    def error_kinds(self, name: str, level: int) -> str:
        kinds: dict[str, int] = defaultdict(int)
        for run in self.by[(name, level)].values():
            for kind, count in (run.get("socket_errors") or {}).items():
                kinds[f"socket {kind}"] += count
            kinds["non-2xx/3xx responses"] += run.get("non2xx", 0)
            kinds["wrk failed"] += "error" in run
        return ", ".join(f"{count:,} {kind}" for kind, count in kinds.items() if count)


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def headline(results: dict[str, Any]) -> str:
    table = Table(results["runs"])
    lines = ["Headline (median of same-round ratios, requests/s; p99 ratio: lower is better):"]
    for level in table.levels:
        parts = []
        for name, reference, goal in TARGETS:
            ratio = table.ratio(name, reference, level)
            verdict = "" if ratio is None else (" ok" if ratio >= goal else " MISSED")
            parts.append(f"{name}/{reference} {_f(ratio, '.2f')} (target >= {goal}{verdict})")
        p99 = table.ratio("hbfork-http", "apache", level, "p99")
        parts.append(f"p99 hbfork-http/apache {_f(p99, '.2f')} (target <= 1"
                     + ("" if p99 is None else (" ok" if p99 <= 1 else " MISSED")) + ")")
        lines.append(f"  c={level}: " + "; ".join(parts))
    return "\n".join(lines)


KEPT = "<!-- kept by scripts/bench:"


def write_report(results: dict[str, Any], output: Path, chart: Path, raw: Path) -> None:
    table = Table(results["runs"])
    chart.parent.mkdir(parents=True, exist_ok=True)
    make_chart(results, table, chart)
    root = output.resolve().parent
    try:
        chart_ref = chart.resolve().relative_to(root)
    except ValueError:
        chart_ref = chart
    sections = [
        _intro(results, chart_ref),
        _targets(results, table),
        _throughput(results, table),
        _latency(results, table),
        _cpu(results, table),
        _members_seen(results),
        _workers(results),
        _memory(results),
        _idle(results),
        _heartbeats(results),
        _pick(results),
        _method(results, raw),
    ]
    # Sections measured by other scripts (profile-http, bench-tcp, bench-conns) follow KEPT in
    # the file; a regeneration replaces only what is above it.
    kept = ""
    if output.exists():
        text = output.read_text()
        if KEPT in text:
            kept = "\n" + text[text.index(KEPT):]
    output.write_text("\n\n".join(s.strip() for s in sections if s) + "\n" + kept)


def _intro(results: dict[str, Any], chart_ref: Path) -> str:
    m = results["machine"]
    apache_note = ""
    if results.get("apache_lbmethod") == "byrequests":
        apache_note = ("\n**Apache is a stand-in in this run**: on loopback Apache cannot receive "
                       "heartbeats (HeartbeatListen needs multicast), so it balances with "
                       "lbmethod=byrequests. Run as root with network namespaces for the real "
                       "lbmethod=heartbeat front.\n")
    return f"""# Benchmarks

Generated by `scripts/bench` on {m['date']} (`{results['environment']}` topology,
{results['rounds']} interleaved rounds, {results['seconds']:g} s per wrk run,
{results['elapsed_seconds']:.0f} s in all).
Numbers are from **one run on one shared machine**: other engineers were running tests on it
at the same time (load average at the start: {' '.join(m['loadavg'])}), so absolute
requests/s drift between rounds and between runs. Compare contenders by the **same-round
ratios**, not by absolute numbers.
{apache_note}
![requests/s and p99 latency per contender and concurrency]({chart_ref})

## Machine

| | |
|---|---|
| CPU | {m['cpu']}, {m['cores']} cores (everything below shares them: client, fronts, backends) |
| memory | {m['memory_mib']} MiB |
| kernel | {m['kernel']} |
| Python | {m['python']} |
| hbfork | {m['hbfork']} |
| nginx | {m['nginx']} |
| HAProxy | {m['haproxy']} |
| Apache httpd | {m['apache']} |
| wrk | {m['wrk']} |

Topology: {results['description']}"""


def _targets(results: dict[str, Any], table: Table) -> str:
    rows = []
    for level in table.levels:
        for name, reference, goal in TARGETS:
            ratio = table.ratio(name, reference, level)
            rows.append(f"| c={level} | {name} / {reference} requests/s | ≥ {goal} | "
                        f"{_f(ratio, '.2f')} | {_verdict(ratio, goal, True)} |")
        p99 = table.ratio("hbfork-http", "apache", level, "p99")
        rows.append(f"| c={level} | hbfork-http / apache p99 latency | ≤ 1.00 | "
                    f"{_f(p99, '.2f')} | {_verdict(p99, 1.0, False)} |")
        tcp = table.ratio("hbfork-tcp", "haproxy-tcp", level)
        rows.append(f"| c={level} | (hbfork-tcp / haproxy-tcp requests/s, like for like) | - | "
                    f"{_f(tcp, '.2f')} | |")
    return ("## Targets\n\nEach ratio is the median over rounds of the ratio measured in the same "
            "round.\n\n| concurrency | ratio | target | measured | |\n|---|---|---|---|---|\n"
            + "\n".join(rows))


def _verdict(value: float | None, goal: float, higher: bool) -> str:
    if value is None:
        return "not measured"
    return "met" if (value >= goal if higher else value <= goal) else "**not met**"


def _throughput(results: dict[str, Any], table: Table) -> str:
    head = "| contender | " + " | ".join(f"c={c} req/s (min-max)" for c in table.levels) + \
        " | " + " | ".join(f"c={c} xnginx | c={c} xApache" for c in table.levels) + " |"
    sep = "|---" * (1 + 3 * len(table.levels)) + "|"
    rows = []
    for name in table.contenders:
        cells = []
        for level in table.levels:
            values = table.values(name, level, "ok_rps")
            errors = table.errors(name, level)
            cells.append(f"{_f(table.median(name, level, 'ok_rps'), ',.0f')} "
                         f"({_f(min(values, default=None), ',.0f')}-"
                         f"{_f(max(values, default=None), ',.0f')})"
                         + (f" ⚠ {errors} errors" if errors else ""))
        for level in table.levels:
            cells.append(_f(table.ratio(name, "nginx", level), ".2f"))
            cells.append(_f(table.ratio(name, "apache", level), ".2f"))
        rows.append(f"| {label(results, name)} | " + " | ".join(cells) + " |")
    notes = [f"* {label(results, name)}, c={level}: {table.error_kinds(name, level)} "
             f"(summed over the rounds)"
             for name in table.contenders for level in table.levels
             if table.errors(name, level)]
    apache = results.get("apache_log") or {}
    if apache.get("ah01170"):
        notes.append(f"* Apache's error log has {apache['ah01170']:,} `AH01170: balancer://members:"
                     f" All workers are in error state` lines (each a 503) from "
                     f"{apache['children']} child process(es) during the rounds "
                     f"({apache.get('new_children', '?')} of them started by mpm_event during "
                     "the rounds, as it reaps idle children between this front's runs and "
                     "starts new ones under load), while the members' heartbeats were fresh "
                     "(next section).")
    return ("## Requests per second\n\nSuccessful (2xx/3xx) responses per second: wrk -t2, "
            "keep-alive, a 604-byte file; median of the rounds (min-max), and same-round "
            "ratios. wrk's own Requests/sec also counts error responses, which a front that "
            "answers 503 quickly would profit from; these numbers do not.\n\n"
            + head + "\n" + sep + "\n" + "\n".join(rows)
            + ("\n\nErrors wrk saw (a socket read error is a connection the front closed; wrk "
               "reconnects):\n\n" + "\n".join(notes) if notes else ""))


def _latency(results: dict[str, Any], table: Table) -> str:
    head = "| contender | " + " | ".join(f"c={c} p50 / p90 / p99 ms" for c in table.levels) + " |"
    sep = "|---" * (1 + len(table.levels)) + "|"
    rows = []
    for name in table.contenders:
        cells = [" / ".join(_f(table.median(name, c, k), ".2f") for k in ("p50", "p90", "p99"))
                 for c in table.levels]
        rows.append(f"| {label(results, name)} | " + " | ".join(cells) + " |")
    return ("## Latency\n\nwrk's latency distribution (`--latency`), median over rounds.\n\n"
            + head + "\n" + sep + "\n" + "\n".join(rows))


def _cpu(results: dict[str, Any], table: Table) -> str:
    head = "| contender | " + " | ".join(f"c={c}" for c in table.levels) + " |"
    sep = "|---" * (1 + len(table.levels)) + "|"
    rows = []
    for name in table.contenders:
        cells = [_f(table.median(name, c, "cpu_us_per_request"), ".1f") for c in table.levels]
        rows.append(f"| {label(results, name)} | " + " | ".join(cells) + " |")
    return ("## CPU per request\n\nCPU time (user + system) of the front's processes per "
            "request, in µs (for *direct*: the backend's). Less sensitive than requests/s to "
            "other load on the machine.\n\n" + head + "\n" + sep + "\n" + "\n".join(rows))


def _members_seen(results: dict[str, Any]) -> str:
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
            f"{r['contender']} c={r['connections']} round {r['round'] + 1} "
            f"({r['members_eligible_min']} eligible)" for r in short) + ".")
    else:
        text += "\n\nEvery member stayed eligible throughout every run."
    return text


def _workers(results: dict[str, Any]) -> str:
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


def _memory(results: dict[str, Any]) -> str:
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


def _idle(results: dict[str, Any]) -> str:
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


def _heartbeats(results: dict[str, Any]) -> str:
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


def _pick(results: dict[str, Any]) -> str:
    pick = results.get("pick")
    if not pick:
        return ""
    rows = [f"| pick() (random + bisect) | {pick['pick_us']:.3f} µs |"]
    for key, text in (("choose_us", "the worker's choose() (generation check, pick, cached "
                                    "target)"),
                      ("choose_excluding_us", "choose() excluding one member (a retry)"),
                      ("rebuild_us", "rebuild after a table change"),
                      ("random_us", "reference: random() alone")):
        if pick.get(key) is not None:
            rows.append(f"| {text} | {pick[key]:.3f} µs |")
    return (f"## Pick cost with 1,000 members\n\nFrom `{pick['source']}` (best of the "
            "repeats).\n\n| | per call |\n|---|---|\n" + "\n".join(rows))


def _method(results: dict[str, Any], raw: Path) -> str:
    argv = " ".join(results["argv"]) or "(no options)"
    return f"""## How this was measured

    scripts/bench {argv}

* Every contender is started once and kept running; each **round** runs wrk against every
  contender at every concurrency level ({', '.join(map(str, results['levels']))} connections),
  the contender order rotating from round to round, after a 1 s warm-up of each. The wrk command
  for each run is `{results['wrk_command']}` (URL and -c varying).
* Fronts: hbfork (`workers = "auto"`, i.e. one per core; no access log), nginx
  (`worker_processes auto`, `upstream {{ random; keepalive 64; }}`, HTTP/1.1 to the members),
  HAProxy (its default threads = cores, `balance random`, `mode http` and `mode tcp`), Apache
  httpd (mpm_event with Debian's default sizes, mod_proxy_balancer, connection reuse to the
  members). None writes an access log; keep-alive request limits are lifted everywhere so no
  front closes a benchmark connection.
* Raw results: `{_shown(raw)}` (not committed); configs and logs of every server next to it.
* Not a test: nothing here fails a build. Speed is only ever compared inside one run."""


def _shown(path: Path) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def make_chart(results: dict[str, Any], table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = table.contenders
    levels = table.levels
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=80)
    width = 0.8 / len(names)
    for metric, ax, title in (("ok_rps", axes[0], "successful responses/s (median)"),
                              ("p99", axes[1], "p99 latency, ms (median; lower is better)")):
        for i, name in enumerate(names):
            values = [table.median(name, c, metric) or 0 for c in levels]
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(levels))]
            ax.bar(xs, values, width, label=name, color=COLORS.get(name))
        ax.set_xticks(range(len(levels)), [f"{c} conns" for c in levels])
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"hbfork vs Apache, nginx, HAProxy ({results['environment']}, "
                 f"{results['machine']['cores']} cores, one shared machine)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
