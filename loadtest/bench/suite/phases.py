"""scripts/bench: what is watched during the request rounds (the members' heartbeats as
hbfork-http sees them, Apache's error log) and the phases after them: requests/s against
hbfork's worker count, memory per process, 10,000 idle keep-alive clients, the master's
heartbeat throughput and the pick cost with 1,000 members."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path
from typing import Any

from loadtest.bench.clients.idle import IdleClients
from loadtest.bench.paths import ROOT
from loadtest.bench.proc_stats import tree_cpu, tree_memory
from loadtest.bench.procs import free_port, raise_nofile
from loadtest.bench.programs import servers
from loadtest.bench.programs.configs import haproxy_maxconn, hbfork_conf
from loadtest.bench.programs.servers import Server, spawn_hbfork, start_front, status
from loadtest.bench.suite.measure import measure

IDLE_CONTENDERS = ("hbfork-http", "nginx", "haproxy")
IDLE_CONNECTIONS = 10_000
HEARTBEAT_SOURCES = 1000
WORKER_COUNTS = (1, 2, 4)


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Watcher:
    """Samples hbfork-http's /status.json every 0.5 s: the members' heartbeats over time."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.samples: list[tuple[float, list[tuple[str, int, bool]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                members = status(self.server)["members"]
            except (OSError, ValueError, KeyError):
                continue
            self.samples.append((time.monotonic(), [(m["address"], m["ready"], m["eligible"])
                                                    for m in members]))

    def annotate(self, run: dict[str, Any]) -> None:
        window = [members for t, members in self.samples if run["t0"] <= t <= run["t1"]]
        if not window:
            return
        run["members_eligible_min"] = min(sum(e for _, _, e in ms) for ms in window)
        lows: dict[str, int] = {}
        for members in window:
            for address, ready, _ in members:
                lows[address] = min(ready, lows.get(address, ready))
        run["ready_min"] = lows

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def apache_errors(path: Path, skip: int, initial: set[int]) -> dict[str, Any]:
    """AH01170 ("All workers are in error state": a 503) lines Apache logged during the
    rounds, and from how many child processes."""
    lines = path.read_text(errors="replace").splitlines()[skip:]
    hits = [line for line in lines if "AH01170" in line]
    pids = {int(m.group(1)) for line in hits if (m := re.search(r"\[pid (\d+)", line))}
    return {"ah01170": len(hits), "children": len(pids), "new_children": len(pids - initial),
            "other": [line[:300] for line in lines if "AH01170" not in line
                      and "AH0049" not in line and "AH00094" not in line][:20]}


def worker_scaling(env: Any, workdir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    servers = {}
    try:
        for count in WORKER_COUNTS:
            servers[count] = start_front("hbfork-http", workdir / f"hbfork-w{count}",
                                         env.members, heartbeat_listen=env.heartbeat_listen(),
                                         workers=count)
        for server in servers.values():
            measure(server, "small", 32, 1)
        runs = []
        connections = 32 if 32 in args.levels else args.levels[len(args.levels) // 2]
        for round_number in range(args.rounds):
            for count, server in servers.items():
                result = measure(server, "small", connections, args.seconds)
                result.update(workers=count, round=round_number, connections=connections)
                runs.append(result)
                log(f"workers={count} c={connections} {result.get('rps', 0):9.0f} req/s")
        return runs
    finally:
        for server in servers.values():
            server.stop()


def memory(fronts: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {name: tree_memory(server.proc.pid) for name, server in fronts.items()}


def idle_connections(fronts: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    limit = raise_nofile(IDLE_CONNECTIONS + 1000, raise_hard=True)
    if limit < IDLE_CONNECTIONS + 100:
        return {"skipped": f"RLIMIT_NOFILE is {limit} here and cannot be raised to "
                           f"{IDLE_CONNECTIONS + 1000}"}
    out: dict[str, Any] = {}
    for name in IDLE_CONTENDERS:
        server = fronts[name]
        pid = server.proc.pid
        base = sum(p["rss"] for p in tree_memory(pid))
        started = time.monotonic()
        # HAProxy cannot be given maxconn 10,000 under a 20,000 descriptor limit.
        count = min(IDLE_CONNECTIONS, haproxy_maxconn() - 50) if name == "haproxy" \
            else IDLE_CONNECTIONS
        clients = IdleClients(server.host, server.port, count)
        opened = time.monotonic() - started
        time.sleep(0.5)
        cpu0, t0 = tree_cpu(pid), time.monotonic()
        time.sleep(args.idle_hold)
        cpu = (tree_cpu(pid) - cpu0) / (time.monotonic() - t0)
        held = tree_memory(pid)
        still = clients.still_open()
        clients.close()
        rss = sum(p["rss"] for p in held)
        out[name] = {"attempted": count, "opened": clients.answered, "failed": clients.failed,
                     "still_open_after_hold": still, "open_seconds": opened,
                     "rss_before_kib": base, "rss_held_kib": rss,
                     "kib_per_connection": (rss - base) / max(1, clients.answered),
                     "cpu_percent_idle": cpu * 100, "hold_seconds": args.idle_hold,
                     "processes": held}
        log(f"idle: {name}: {clients.answered} connections answered, {still} still open after "
            f"{args.idle_hold:g} s; RSS {base / 1024:.1f} -> {rss / 1024:.1f} MiB; "
            f"CPU {cpu * 100:.1f} % while idle")
        time.sleep(1)   # let the server reap the closed connections
    return out


def heartbeat_throughput(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    directory = workdir / "hbfork-heartbeats"
    directory.mkdir(parents=True, exist_ok=True)
    hb_port = free_port(kind=socket.SOCK_DGRAM)
    status_port = free_port()
    conf = directory / "hbfork.toml"
    conf.write_text(hbfork_conf(directory, free_port(), "http", 1, f"127.0.0.1:{hb_port}", [],
                                status_port, discover=True, max_members=4096))
    proc = spawn_hbfork("hbfork-heartbeats", conf, directory)
    server = Server("hbfork-heartbeats", "127.0.0.1", 0, proc, directory,
                    {"status_url": f"http://127.0.0.1:{status_port}/status.json"})
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                status(server)
                break
            except OSError:
                time.sleep(0.1)
        blaster = subprocess.Popen(
            [sys.executable, "-m", "loadtest.bench.clients.blast", f"127.0.0.1:{hb_port}",
             str(HEARTBEAT_SOURCES), str(args.blast_seconds)],
            stdout=subprocess.PIPE, text=True)
        samples = []
        while blaster.poll() is None:
            snap = status(server)
            samples.append((time.monotonic(), snap["heartbeats"]["accepted"],
                            sum(snap["heartbeats"].values())))
            time.sleep(0.5)
        sent = json.loads(blaster.stdout.read() or "{}")
        time.sleep(0.5)
        snap = status(server)
        samples.append((time.monotonic(), snap["heartbeats"]["accepted"],
                        sum(snap["heartbeats"].values())))
        rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(samples)
                 if b[0] > a[0]]
        busy = [r for r in rates if r > 0]
        result = {"sources": HEARTBEAT_SOURCES, "sent": sent.get("sent"),
                  "sent_per_second": sent.get("sent_per_second"),
                  "accepted": snap["heartbeats"]["accepted"],
                  "results": {k: v for k, v in snap["heartbeats"].items() if v},
                  "members": len(snap["members"]),
                  "accepted_per_second_median": statistics.median(busy) if busy else 0.0,
                  "accepted_per_second_max": max(busy, default=0.0),
                  "seconds": sent.get("seconds")}
        result["applied_fraction"] = (result["accepted"] / result["sent"]
                                      if result.get("sent") else None)
        log(f"heartbeats: sent {result['sent']} ({result['sent_per_second'] or 0:.0f}/s) from "
            f"{HEARTBEAT_SOURCES} sources; applied {result['accepted']} "
            f"(median {result['accepted_per_second_median']:.0f}/s); "
            f"{result['members']} members in the table")
        return result
    finally:
        proc.stop()


def pick_cost(args: argparse.Namespace) -> dict[str, Any]:
    home = servers.HBFORK_HOME or ROOT
    number = 20_000 if args.quick else 100_000
    if (home / "loadtest" / "bench" / "micro" / "pick.py").exists():
        # From `home` (its cwd and PYTHONPATH): the pick code of the hbfork being measured.
        done = subprocess.run([sys.executable, "-m", "loadtest.bench.micro.pick", "--number",
                               str(number), "--repeat", "3"], capture_output=True, text=True,
                              timeout=300, check=False, cwd=home,
                              env={**os.environ, "PYTHONPATH": str(home)})
        # bench-pick's row for 1,000 members: pick(), then choose() corrected, reported and
        # p2c (each with the finished() that ends its request), excluded, rebuild
        row = re.search(r"^\s*1000" + r"\s+([\d.]+)µs" * 6, done.stdout, re.MULTILINE)
        ref = re.search(r"reference random\(\):\s+([\d.]+)", done.stdout)
        if done.returncode == 0 and row:
            return {"source": f"scripts/bench-pick --number {number} --repeat 3",
                    "members": 1000, "pick_us": float(row.group(1)),
                    "choose_us": float(row.group(2)), "choose_reported_us": float(row.group(3)),
                    "choose_p2c_us": float(row.group(4)),
                    "choose_excluding_us": float(row.group(5)),
                    "rebuild_us": float(row.group(6)),
                    "random_us": float(ref.group(1)) if ref else None,
                    "output": done.stdout}
    from hbfork.core.balancer import Picker, pack_word

    rng = random.Random(1)
    picker = Picker()
    picker.rebuild([pack_word(rng.randrange(1, 200), 0) for _ in range(1000)], 1)
    draw = rng.random
    best = min(timeit.Timer(lambda: picker.pick(draw())).repeat(3, number)) / number * 1e6
    return {"source": "hbfork.balancer.Picker timed directly", "members": 1000,
            "pick_us": best}
