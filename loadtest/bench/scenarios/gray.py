"""Gray failures (issue 23): a member whose heartbeats say it is fine while its application
fails, through hbfork, HAProxy and nginx over the same members in the same run.

    scripts/bench-gray [--duration 8] [--scenarios 5xx-all,5xx-30,hang,graceful-stop,slow]
                       [--rounds 1] [--write]
    scripts/bench-gray --report-only bench/results/gray-....json --write

Loopback only (127.0.0.1-4). Two healthy members, `hbfork backend --workers 8` on 127.0.0.2
and .3, stay up for the whole run and send honest heartbeats (unicast to the hbfork front's
heartbeat port). The third, on 127.0.0.4, is started afresh for every front's run and keeps
beating ready 8, busy 0 while its application fails as the scenario says
(loadtest/bench/programs/gray.py); the fault starts FAULT_AT seconds into the run (SIGHUP,
`--fault-on-signal`), the graceful stop likewise (SIGTERM, `--stop graceful`), and the slow
member is slow from the start. Each front is started afresh for each run too (no state
carried over: an ejection, a mark-down, nginx's fail count), one front at a time, in an order
rotated every round. Load: wrk, 16 keep-alive connections, 2 threads, --duration seconds.

Per run: requests, client-visible failures (non-2xx answers + socket errors), goodput (2xx/s),
p99; the moment the front took the third member out (hbfork: /status.json polled every 50 ms,
state "ejected" or not eligible; HAProxy: `show stat` on its stats socket, status DOWN; nginx
shows nothing), and the requests that reached the third member after the fault began and
after it was taken out (the member's own record, `--arrivals`). Then, for the scenarios where
a member should be ejected, hbfork and HAProxy each alone at a paced DETECTION_RATE
requests/s (loadtest/bench/clients/openloop.py, uniform arrivals): the time from the fault
to the ejection (HAProxy's to DOWN, for comparison). Results: JSON in bench/results/, and
with --write a section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hbfork.core.members import ELIGIBLE
from hbfork.table.layout import segment_name
from hbfork.table.table import Table
from loadtest.bench import tools, wrk
from loadtest.bench.lab.inlab import exit_on_term
from loadtest.bench.machine import export_head, loadavg, machine
from loadtest.bench.markdown import update_section
from loadtest.bench.paths import ROOT
from loadtest.bench.procs import Proc, free_port, wait_http
from loadtest.bench.programs import gray as conf
from loadtest.bench.programs import servers
from loadtest.bench.report.gray import section, summary
from loadtest.bench.scenarios import runs

TAG = "bench-gray"
HEALTHY = (("m1", "127.0.0.2"), ("m2", "127.0.0.3"))
THIRD = ("m3", "127.0.0.4")
WORKERS = 8
CLIENTS = 16
FAULT_AT = 1.0          # seconds into each run
POLL = 0.05             # seconds between looks at a front's view of the third member
DETECTION_RATE = 1000.0


def log(text: str) -> None:
    print(f"[{TAG} {time.strftime('%H:%M:%S')}] {text}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-gray",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds per run")
    parser.add_argument("--scenarios", default=",".join(conf.SCENARIOS))
    parser.add_argument("--fronts", default=",".join(conf.FRONTS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--detection-rate", type=float, default=DETECTION_RATE,
                        help="requests/s of the detection runs; 0 = none")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--report-only", type=Path, metavar="JSON")
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.fronts = [f for f in args.fronts.split(",") if f]
    unknown = [s for s in args.scenarios if s not in conf.SCENARIOS] + \
        [f for f in args.fronts if f not in conf.FRONTS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    return args


class Watcher(threading.Thread):
    """Every POLL s, asks the front whether the third member is still in; records when it
    first was not (monotonic), and why.

    hbfork is asked through its shared-memory table (what `hbfork status` reads), not its
    /status.json: building that page 20 times a second took ~1 ms of a worker's CPU each time
    and the poll as much again here, 4-6 % of hbfork's throughput in this closed loop, a cost
    the other fronts' watchers (HAProxy's stats socket) or none (nginx) do not pay."""

    def __init__(self, front: servers.Server, address: str) -> None:
        super().__init__(daemon=True)
        self.front, self.address = front, address
        self.stopped = threading.Event()
        self.out_at: float | None = None
        self.ejected_at: float | None = None
        self.why = ""
        self.table: Table | None = None

    def run(self) -> None:
        try:
            while not self.stopped.wait(POLL):
                try:
                    state = self.look()
                except (OSError, ValueError, KeyError, StopIteration):
                    continue
                now = time.monotonic()
                if state and self.out_at is None:
                    self.out_at, self.why = now, state
                if state == "ejected" and self.ejected_at is None:
                    self.ejected_at = now
        finally:
            if self.table is not None:
                self.table.close()

    def look(self) -> str:
        """"" while the member is in; else the front's word for its state."""
        kind = self.front.info["kind"]
        if kind == "hbfork":
            if self.table is None:  # the master's segment, attached read-only
                self.table = Table.attach(segment_name(self.front.proc.pid))
            record = next(r for r in self.table.members() if r.address == self.address)
            return "" if record.reason == ELIGIBLE else record.reason
        if kind == "haproxy":
            return haproxy_state(Path(self.front.info["socket"]), "m3")
        return ""


def haproxy_state(path: Path, server: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1)
        sock.connect(str(path))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return stat_state(data.decode(), server)


def stat_state(text: str, server: str) -> str:
    """From HAProxy's `show stat` CSV: "" while `server` is in the rotation (UP, also "UP
    1/2" while failing checks count towards fall), else its status (DOWN, MAINT, ...)."""
    lines = text.splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") == server:
            status = row.get("status", "")
            return "" if status.startswith("UP") or status == "no check" else status
    return ""


class Session:
    def __init__(self, args: argparse.Namespace, workdir: Path, home: Path) -> None:
        self.args, self.workdir, self.home = args, workdir, home
        self.port = free_port("127.0.0.2")
        self.heartbeat = f"127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}"
        self.members = [f"{ip}:{self.port}" for _, ip in (*HEALTHY, THIRD)]
        self.third = self.members[-1]
        self.healthy: list[Proc] = []
        self.env = {**os.environ, "PYTHONPATH": str(home)}

    def member(self, name: str, ip: str, extra: tuple[str, ...] = (),
               arrivals: Path | None = None) -> Proc:
        argv = conf.member_argv(sys.executable, f"{ip}:{self.port}", self.heartbeat, name,
                                WORKERS, extra, arrivals)
        proc = Proc(name, argv, self.workdir / f"member-{name}.log", cwd=self.home,
                    env=self.env)
        try:
            wait_http(ip, self.port)
        except BaseException:
            proc.stop(timeout=5)
            raise
        return proc

    def start_front(self, kind: str, where: Path) -> servers.Server:
        where.mkdir(parents=True, exist_ok=True)
        port = free_port()
        info: dict[str, Any] = {"kind": kind}
        if kind == "hbfork":
            status_port = free_port()
            path = where / "hbfork.toml"
            path.write_text(conf.hbfork_conf(where, port, status_port, self.heartbeat,
                                             self.members))
            proc = servers.spawn_hbfork(kind, path, where)
            info["status_url"] = f"http://127.0.0.1:{status_port}/status.json"
        elif kind == "haproxy":
            path = where / "haproxy.cfg"
            path.write_text(conf.haproxy_conf(where, port, self.members))
            proc = servers.spawn(kind, ["haproxy", "-db", "-f", str(path)], where)
            info["socket"] = str(where / "haproxy.sock")
        else:
            path = where / "nginx.conf"
            path.write_text(conf.nginx_conf(where, port, self.members))
            proc = servers.spawn(kind, ["nginx", "-p", str(where), "-c", str(path), "-e",
                                        "stderr"], where)
        server = servers.Server(kind, "127.0.0.1", port, proc, where, info)
        try:
            if kind == "hbfork":
                servers.wait_members(server, len(self.members))
            servers.wait_http(server, timeout=30)
        except BaseException:
            proc.stop(timeout=5)
            raise
        return server

    def run(self, scenario: conf.Scenario, kind: str, tag: str,
            rate: float = 0.0) -> dict[str, Any]:
        """One run of `kind` with the third member as `scenario` says (wrk, or the open-loop
        client at `rate`)."""
        where = self.workdir / tag
        where.mkdir(parents=True)
        arrivals = where / "arrivals.json"
        third = self.member(THIRD[0], THIRD[1], scenario.args, arrivals)
        front: servers.Server | None = None
        watcher: Watcher | None = None
        marks: dict[str, float] = {}
        timer = None
        try:
            front = self.start_front(kind, where / kind)
            watcher = Watcher(front, self.third)
            if kind == "hbfork":
                before = servers.status(front)["totals"]
            watcher.start()
            started = time.monotonic()
            if scenario.trigger:
                signum = signal.SIGHUP if scenario.trigger == "sighup" else signal.SIGTERM

                def trigger() -> None:
                    marks["fault"] = time.monotonic()
                    third.send_signal(signum)

                timer = threading.Timer(FAULT_AT, trigger)
                timer.start()
            else:
                marks["fault"] = started
            if rate:
                raw = runs.openloop(front.url, rate, self.args.duration, 1,
                                    where / "openloop.json", timeout=5)
                result = runs.figures(raw)
                result.update(requests=result.get("sent", 0), failures=result.get("errors", 0))
            else:
                result = wrk.run(front.url, CLIENTS, self.args.duration, 2, timeout="5s")
                result.update(goodput=result.get("ok_rps", 0.0),
                              failures=wrk.error_count(result))
            if timer:
                timer.join()
            if kind == "hbfork":
                after = servers.status(front)["totals"]
                result["hbfork_totals"] = {k: after[k] - before.get(k, 0) for k in after
                                           if isinstance(after[k], int)}
        finally:   # what was started is stopped, even when the front did not start
            if watcher is not None and watcher.is_alive():
                watcher.stopped.set()
                watcher.join()
            if timer:
                timer.cancel()
            third.stop(timeout=10)
            if front is not None:
                front.stop()
        seen = json.loads(arrivals.read_text()) if arrivals.exists() else {}
        times = seen.get("arrivals") or []
        fault = seen.get("fault_started") or marks.get("fault", started)
        result.update(
            scenario=scenario.name, front=kind, loadavg=loadavg(), started=started,
            fault_at=fault - started,
            out_after=None if watcher.out_at is None else watcher.out_at - fault,
            ejected_after=None if watcher.ejected_at is None else watcher.ejected_at - fault,
            out_state=watcher.why, third_requests=len(times),
            third_after_fault=sum(1 for t in times if t >= fault),
            third_after_out=None if watcher.out_at is None else
            sum(1 for t in times if t > watcher.out_at))
        return result


def show(r: dict[str, Any]) -> None:
    out = "-" if r["out_after"] is None else f"{r['out_after']:.2f} s ({r['out_state']})"
    paced = f" @{r['rate']:g}/s" if r.get("rate") else ""
    log(f"{r['scenario']:13} {r['front']:7}{paced}: "
        f"{r.get('requests', 0)} requests, {r['failures']} failures, goodput "
        f"{r.get('goodput', 0):.0f}/s, p99 {r.get('p99', float('nan')):.1f} ms; out after "
        f"{out}; at m3 after the fault {r['third_after_fault']}, after out "
        f"{r['third_after_out']}; load {r['loadavg']}")


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="hbgray-"))
    home = export_head(workdir / "hbfork-head")
    servers.HBFORK_HOME = home
    session = Session(args, workdir, home)
    results: dict[str, Any] = {
        "argv": argv, "machine": machine(), "duration": args.duration, "rounds": args.rounds,
        "clients": CLIENTS, "workers": WORKERS, "fault_at": FAULT_AT, "poll": POLL,
        "detection_rate": args.detection_rate, "settings": conf.settings_lines(),
        "scenarios": {n: conf.SCENARIOS[n].what for n in args.scenarios},
        "no_fault_moment": [n for n in args.scenarios if not conf.SCENARIOS[n].trigger],
        "runs": [], "detection": []}
    started = time.monotonic()
    try:
        for name, ip in HEALTHY:   # one by one: the finally stops those that started
            session.healthy.append(session.member(name, ip))
        for round_number in range(args.rounds):
            k = round_number % len(args.fronts)
            order = args.fronts[k:] + args.fronts[:k]
            for name in args.scenarios:
                for kind in order:
                    r = session.run(conf.SCENARIOS[name], kind, f"r{round_number}-{name}-{kind}")
                    r["round"] = round_number
                    results["runs"].append(r)
                    show(r)
        detecting = [f for f in ("hbfork", "haproxy") if f in args.fronts]
        for name in args.scenarios if args.detection_rate else []:
            for kind in detecting if conf.SCENARIOS[name].ejects else []:
                r = session.run(conf.SCENARIOS[name], kind, f"detect-{name}-{kind}",
                                rate=args.detection_rate)
                r["rate"] = args.detection_rate
                results["detection"].append(r)
                show(r)
    finally:
        for proc in session.healthy:
            proc.stop(timeout=10)
        keep = args.results / f"gray-logs-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copytree(workdir, keep, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("hbfork-head", "openloop.json",
                                                      "*.pid", "*.sock", "__pycache__"))
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_seconds"] = time.monotonic() - started
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        raw = args.report_only
    else:
        tools.require("scripts/bench-gray", "wrk", "haproxy", "nginx")
        args.results.mkdir(parents=True, exist_ok=True)
        results = run_all(args, argv)
        raw = args.results / f"gray-{time.strftime('%Y%m%d-%H%M%S')}.json"
        raw.write_text(json.dumps(results, indent=1))
        log(f"done in {results['elapsed_seconds']:.0f} s: {raw}")
    print(summary(results))
    if args.write:
        update_section(args.output, "bench-gray", section(results, raw), after="bench-overload")
        log(f"{args.output}: section bench-gray written")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, exit_on_term)   # every `finally` stops what it started
    sys.exit(main())
