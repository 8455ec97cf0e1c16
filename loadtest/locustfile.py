"""Locust load test for hbfork (or any front whose members answer with an `X-Backend` header).

    locust -f loadtest/locustfile.py -H http://127.0.0.1:8080 --headless -u 20 \\
        --scenario steady --duration 30 --status-url http://127.0.0.1:8081/status.json

`scripts/loadtest` starts a whole topology and runs this for you; use this file directly to
point Locust at a proxy you run yourself.

What it does
  * Users (FastHttpUser, keep-alive) send a mix of small GETs (`/`), larger downloads
    (`/?size=N`) and POST bodies; every response is checked (status 200, an X-Backend header,
    the right length; a POST's echoed byte count) and any other answer is a failure.
  * Every response's X-Backend is counted (across `--processes` workers, through Locust's
    worker reports), and the proxy's /status.json is sampled once a second for each member's
    reported ready and share. At the end each member's share of responses is printed next to
    its mean reported share, and written as JSON to `--share-report`.
  * `--scenario` shapes the users over `--duration` seconds (ScenarioShape) and fires the
    scenario's actions (event hooks, on the master only):
        steady       -u users from start to end
        ramp         1 -> u over 60 % of the run, hold 20 %, back down to 1 over the last 20 %
        spike        u/5 users, u users from 40 % to 60 % of the run, then u/5 again
        reload       steady, and SIGHUP to the master (pid from --pidfile) --reloads times
        member-down  steady, and --victim-pid is killed (SIGKILL) at 40 % of the run
        member-slow  steady (the slow member is set up by whoever starts the backends)
        overload     u/10 users, u users from 30 % to 60 % of the run (a burst far above what
                     the members serve at once: the front queue absorbs it), then u/10

Options (each also an environment variable, shown in brackets; all show in the web UI):
  --scenario [HBLOAD_SCENARIO]  --duration S [HBLOAD_DURATION]
  --mix small=8,download=1,post=1 [HBLOAD_MIX]     relative weights of the three requests
  --download-size BYTES [HBLOAD_DOWNLOAD_SIZE]     --post-size BYTES [HBLOAD_POST_SIZE]
  --think-ms MS [HBLOAD_THINK_MS]                  pause between a user's requests
  --status-url URL [HBLOAD_STATUS_URL]             the proxy's /status.json (optional)
  --pidfile PATH [HBLOAD_PIDFILE]   --reloads N [HBLOAD_RELOADS]
  --victim-pid PID [HBLOAD_VICTIM_PID]             --share-report PATH [HBLOAD_REPORT]
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

SCENARIOS = ("steady", "ramp", "spike", "reload", "member-down", "member-slow", "overload")
KINDS = ("small", "download", "post")
NO_HEADER = "(no X-Backend)"
SAMPLE_INTERVAL = 1.0
MEMBER_DOWN_AT = 0.4   # fraction of the run at which --victim-pid is killed


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    env = os.environ.get
    group = parser  # argument groups do not take include_in_web_ui
    group.add_argument("--scenario", choices=SCENARIOS, default=env("HBLOAD_SCENARIO", "steady"),
                       include_in_web_ui=True, help="load shape and actions (see the file)")
    group.add_argument("--duration", type=float, default=float(env("HBLOAD_DURATION", "60")),
                       include_in_web_ui=True, help="seconds the scenario lasts")
    group.add_argument("--mix", default=env("HBLOAD_MIX", "small=8,download=1,post=1"),
                       include_in_web_ui=True, help="weights: small=W,download=W,post=W")
    group.add_argument("--download-size", type=int,
                       default=int(env("HBLOAD_DOWNLOAD_SIZE", str(256 * 1024))),
                       include_in_web_ui=True, help="bytes per download (?size=)")
    group.add_argument("--post-size", type=int, default=int(env("HBLOAD_POST_SIZE", "16384")),
                       include_in_web_ui=True, help="bytes per POST body")
    group.add_argument("--think-ms", type=float, default=float(env("HBLOAD_THINK_MS", "0")),
                       include_in_web_ui=True, help="pause between a user's requests")
    group.add_argument("--status-url", default=env("HBLOAD_STATUS_URL", ""),
                       include_in_web_ui=True, help="the proxy's /status.json, sampled 1/s")
    group.add_argument("--pidfile", default=env("HBLOAD_PIDFILE", ""), include_in_web_ui=True,
                       help="hbfork's pidfile (reload scenario: the master to SIGHUP)")
    group.add_argument("--reloads", type=int, default=int(env("HBLOAD_RELOADS", "4")),
                       include_in_web_ui=True, help="SIGHUPs spread over a reload run")
    group.add_argument("--victim-pid", type=int, default=int(env("HBLOAD_VICTIM_PID", "0")),
                       include_in_web_ui=True, help="member-down: the backend pid to kill")
    group.add_argument("--share-report", default=env("HBLOAD_REPORT", ""),
                       include_in_web_ui=True, help="write the per-member report here (JSON)")


def parse_mix(text: str) -> dict[str, float]:
    """'small=8,download=1,post=1' -> weights; unknown kinds and negative weights are errors."""
    weights = dict.fromkeys(KINDS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        if kind not in weights:
            raise ValueError(f"--mix: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        weights[kind] = float(weight or 1)
        if weights[kind] < 0:
            raise ValueError(f"--mix: negative weight for {kind}")
    if not any(weights.values()):
        raise ValueError("--mix: every weight is 0")
    return weights


# --- the users ---------------------------------------------------------------------------

class ProxyUser(FastHttpUser):
    """One keep-alive client sending the configured mix; every answer is checked."""

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        weights = parse_mix(opts.mix)
        self.kinds = [k for k in KINDS if weights[k]]
        self.weights = [weights[k] for k in self.kinds]
        self.download_size = opts.download_size
        self.post_body = random.randbytes(opts.post_size)
        self.think = opts.think_ms / 1000

    def wait_time(self) -> float:
        return self.think

    @task
    def one_request(self) -> None:
        kind = random.choices(self.kinds, self.weights)[0]
        getattr(self, f"_{kind}")()

    def _small(self) -> None:
        with self.client.get("/", name="GET /", catch_response=True) as response:
            _check(response)

    def _download(self) -> None:
        size = self.download_size
        with self.client.get(f"/?size={size}", name="GET /?size=N",
                             catch_response=True) as response:
            if _check(response) and len(response.content or b"") != size:
                response.failure(f"short download: {len(response.content or b'')} of {size}")

    def _post(self) -> None:
        size = len(self.post_body)
        with self.client.post("/upload", data=self.post_body, name="POST /upload",
                              catch_response=True) as response:
            if not _check(response):
                return
            try:
                echoed = json.loads(response.content or b"{}").get("bytes")
            except ValueError:
                echoed = None
            if echoed != size:
                response.failure(f"POST body mangled: member saw {echoed} of {size} bytes")


def _check(response: Any) -> bool:
    """Status 200 and an X-Backend header, else a failure named by what went wrong."""
    if response.status_code != 200:
        if response.status_code == 0:  # connection-level error: keep Locust's own message
            response.failure(str(response.error or "connection failed"))
        else:
            response.failure(f"HTTP {response.status_code}")
        return False
    if not (response.headers or {}).get("X-Backend"):
        response.failure("200 without X-Backend")
        return False
    return True


# --- counting X-Backend across processes -------------------------------------------------

class Tally:
    """Responses per X-Backend: counted in every process, summed on the master."""

    def __init__(self) -> None:
        self.local: Counter[str] = Counter()   # this process, since the last worker report
        self.total: Counter[str] = Counter()   # master / single process: the whole run

    def count(self, name: str) -> None:
        self.local[name] += 1

    def take(self) -> dict[str, int]:
        data, self.local = dict(self.local), Counter()
        return data

    def merge(self, data: dict[str, int]) -> None:
        self.total.update(data)

    def reset(self) -> None:
        self.local.clear()
        self.total.clear()


TALLY = Tally()


@events.request.add_listener
def _on_request(response: Any = None, exception: Any = None, **_: Any) -> None:
    if response is None or exception is not None:
        return
    headers = getattr(response, "headers", None) or {}
    TALLY.count(headers.get("X-Backend") or NO_HEADER)


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any]) -> None:
    data["hbfork_backends"] = TALLY.take()


@events.worker_report.add_listener
def _worker_report(client_id: str, data: dict[str, Any]) -> None:
    TALLY.merge(data.get("hbfork_backends", {}))


# --- the load shape -----------------------------------------------------------------------

def users_at(scenario: str, fraction: float, users: int) -> int:
    """How many users the scenario wants `fraction` of the way through the run."""
    if scenario == "ramp":
        if fraction < 0.6:
            return max(1, math.ceil(users * fraction / 0.6))
        if fraction < 0.8:
            return users
        return max(1, math.ceil(users * (1 - fraction) / 0.2))
    if scenario == "spike":
        return users if 0.4 <= fraction < 0.6 else max(1, users // 5)
    if scenario == "overload":
        return users if 0.3 <= fraction < 0.6 else max(1, users // 10)
    return users


class ScenarioShape(LoadTestShape):
    """Users over time for --scenario, stopping after --duration seconds (-u is the peak)."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        elapsed = self.get_run_time()
        if elapsed >= opts.duration:
            return None
        users = max(1, opts.num_users or 20)
        return users_at(opts.scenario, elapsed / opts.duration, users), float(max(users, 10))


# --- the scenario's actions and the status sampler (master or single process only) --------

class Run:
    """What the controlling process records about one run."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        self.started = 0.0
        self.events: list[dict[str, Any]] = []
        self.samples: dict[str, dict[str, Any]] = {}
        self.first_status: dict[str, Any] | None = None
        self.last_status: dict[str, Any] | None = None
        self.queue_peak: dict[str, int] = {}   # per pool: the most waiting in one sample
        self.greenlets: list[gevent.Greenlet] = []

    def note(self, action: str, **details: Any) -> None:
        entry = {"t": round(time.monotonic() - self.started, 2), "action": action, **details}
        self.events.append(entry)
        print(f"[hbfork loadtest] t={entry['t']}s {action} "
              + " ".join(f"{k}={v}" for k, v in details.items()), flush=True)


RUN = Run()


def _controls(environment: Environment) -> bool:
    return not isinstance(environment.runner, WorkerRunner)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    if not _controls(environment):
        TALLY.reset()
        return
    for greenlet in RUN.greenlets:
        greenlet.kill(block=False)
    RUN.__init__()
    RUN.environment = environment
    RUN.started = time.monotonic()
    TALLY.reset()
    opts = environment.parsed_options
    parse_mix(opts.mix)  # fail now, on the master, rather than in every user
    if opts.status_url:
        RUN.greenlets.append(gevent.spawn(_sample_status, opts.status_url))
    if opts.scenario == "reload":
        RUN.greenlets.append(gevent.spawn(_reloads, opts.pidfile, opts.reloads, opts.duration))
    elif opts.scenario == "member-down":
        RUN.greenlets.append(gevent.spawn(_member_down, opts.victim_pid, opts.duration))


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if not _controls(environment):
        return
    for greenlet in RUN.greenlets:
        greenlet.kill(block=False)
    RUN.greenlets.clear()
    if environment.parsed_options.status_url:
        _sample_once(environment.parsed_options.status_url)


@events.quit.add_listener
def _on_quit(exit_code: int, **_: Any) -> None:
    environment = RUN.environment
    if environment is None or not _controls(environment):
        return
    if not isinstance(environment.runner, MasterRunner):
        TALLY.merge(TALLY.take())
    report = build_report(environment.parsed_options)
    print(format_shares(report), flush=True)
    if environment.parsed_options.share_report:
        path = Path(environment.parsed_options.share_report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))


def _at(fraction: float, duration: float) -> None:
    gevent.sleep(max(0.0, RUN.started + fraction * duration - time.monotonic()))


def _reloads(pidfile: str, count: int, duration: float) -> None:
    if not pidfile:
        RUN.note("reload skipped", reason="no --pidfile")
        return
    for k in range(1, count + 1):
        _at(k / (count + 1), duration)
        try:
            pid = int(Path(pidfile).read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
            RUN.note("SIGHUP", pid=pid, number=k)
        except (OSError, ValueError, IndexError) as err:
            RUN.note("SIGHUP failed", error=repr(err))


def _member_down(pid: int, duration: float) -> None:
    if not pid:
        RUN.note("member-down skipped", reason="no --victim-pid")
        return
    _at(MEMBER_DOWN_AT, duration)
    try:
        os.kill(pid, signal.SIGKILL)
        RUN.note("SIGKILL member", pid=pid)
    except OSError as err:
        RUN.note("SIGKILL member failed", pid=pid, error=repr(err))


def _sample_status(url: str) -> None:
    while True:
        _sample_once(url)
        gevent.sleep(SAMPLE_INTERVAL)


def _sample_once(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            status = json.loads(answer.read())
    except (OSError, ValueError) as err:
        RUN.note("status.json unreadable", error=repr(err))
        return
    if RUN.first_status is None:
        RUN.first_status = _summary(status)
    RUN.last_status = _summary(status)
    for pool in status.get("pools", []):
        name = pool.get("name", "?")
        RUN.queue_peak[name] = max(RUN.queue_peak.get(name, 0), int(pool.get("queued", 0)))
    for member in status.get("members", []):
        key = member.get("name") or member.get("address")
        entry = RUN.samples.setdefault(key, {
            "name": member.get("name"), "address": member.get("address"),
            "samples": 0, "ready_sum": 0, "share_sum": 0.0, "eligible": 0,
            "ready_min": None, "ready_max": None})
        ready = int(member.get("ready", 0))
        entry["samples"] += 1
        entry["ready_sum"] += ready
        entry["share_sum"] += float(member.get("share", 0.0))
        entry["eligible"] += bool(member.get("eligible"))
        entry["ready_min"] = ready if entry["ready_min"] is None else min(entry["ready_min"], ready)
        entry["ready_max"] = ready if entry["ready_max"] is None else max(entry["ready_max"], ready)


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    """The parts of /status.json a load-test report needs."""
    master = status.get("master", {})
    return {"time": status.get("time"), "master_pid": master.get("pid"),
            "config_generation": master.get("config_generation"),
            "totals": status.get("totals", {}), "heartbeats": status.get("heartbeats", {}),
            "workers": [{"pid": w.get("pid"), "generation": w.get("generation"),
                         "state": w.get("state")} for w in status.get("workers", [])],
            "members": [{k: m.get(k) for k in ("name", "address", "ready", "share", "state",
                                                "requests", "connect_failures", "in_flight",
                                                "capacity")}
                        for m in status.get("members", [])],
            "pools": [{k: p.get(k) for k in ("name", "queued", "dequeued", "handed_over",
                                             "queue_rejected")}
                      for p in status.get("pools", [])]}


# --- the report ---------------------------------------------------------------------------

def build_report(opts: Any) -> dict[str, Any]:
    counts = dict(TALLY.total)
    total = sum(counts.values())
    members = []
    seen = set()
    for key, entry in RUN.samples.items():
        names = {entry["name"], entry["address"], key} - {None, ""}
        got = sum(counts.get(n, 0) for n in names)
        seen |= names
        n = entry["samples"] or 1
        members.append({"name": entry["name"] or entry["address"], "address": entry["address"],
                        "responses": got, "observed_share": got / total if total else 0.0,
                        "mean_ready": entry["ready_sum"] / n,
                        "ready_min": entry["ready_min"], "ready_max": entry["ready_max"],
                        "mean_reported_share": entry["share_sum"] / n,
                        "eligible_fraction": entry["eligible"] / n, "samples": entry["samples"]})
    for name, got in sorted(counts.items()):
        if name not in seen:
            members.append({"name": name, "address": None, "responses": got,
                            "observed_share": got / total if total else 0.0,
                            "mean_ready": None, "mean_reported_share": None, "samples": 0})
    return {"scenario": opts.scenario, "duration": opts.duration, "users": opts.num_users,
            "mix": parse_mix(opts.mix), "download_size": opts.download_size,
            "post_size": opts.post_size, "responses_counted": total, "members": members,
            "events": RUN.events, "status_first": RUN.first_status,
            "status_last": RUN.last_status, "queue_peak": RUN.queue_peak}


def format_shares(report: dict[str, Any]) -> str:
    lines = [f"\nper-member share ({report['responses_counted']} responses counted by "
             "X-Backend) vs the share its reported ready gave it (mean of 1 s samples):",
             f"  {'member':22} {'responses':>9} {'observed':>9} {'reported':>9} "
             f"{'mean ready':>10}"]
    for m in report["members"]:
        reported = m["mean_reported_share"]
        ready = m["mean_ready"]
        lines.append(f"  {m['name'][:22]:22} {m['responses']:9d} {m['observed_share']:9.1%} "
                     + (f"{reported:9.1%} {ready:10.1f}" if reported is not None
                        else f"{'?':>9} {'?':>10}"))
    return "\n".join(lines)
