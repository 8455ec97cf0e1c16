"""How long `hbfork health` takes, idle and with every core busy (issue 27).

Starts a front and one member on loopback, then runs `hbfork health` (the installed command,
as keepalived would) RUNS times in each of three ways: asking the master over its control socket
with `-c FILE`, with `--socket PATH` (no config read), and the earlier way (`--from-table`: a
full import that reads the table). Then the same with one busy-looping process per core (the
CPU hog) running. Prints median, 90th percentile and maximum wall time per way. A benchmark:
it asserts nothing.

    ./scripts/bench-health [--runs N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"
HBFORK = str(VENV_BIN / "hbfork")
HOG = "while True: pass"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(home: Path) -> list[subprocess.Popen[bytes]]:
    heartbeat, member = free_port(socket.SOCK_DGRAM), free_port()
    config = home / "hbfork.toml"
    config.write_text(f"""[proxy]
listen = ["127.0.0.1:{free_port()}"]
workers = 2
allow_root = true
pidfile = "{home}/hbfork.pid"
[heartbeat]
listen = "127.0.0.1:{heartbeat}"
max_age = 3
[status]
listen = "127.0.0.1:{free_port()}"
[[member]]
address = "127.0.0.2:{member}"
""")
    log = open(home / "hbfork.log", "ab")  # noqa: SIM115 - lives as long as the run
    return [subprocess.Popen([HBFORK, "run", "-c", str(config)], stdout=log, stderr=log),
            subprocess.Popen([HBFORK, "backend", "--listen", f"127.0.0.2:{member}",
                              "--heartbeat", f"127.0.0.1:{heartbeat}", "--interval", "0.5"],
                             stdout=log, stderr=log)]


def timed(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run(args, capture_output=True)
        times.append(time.perf_counter() - began)
        if done.returncode != 0:
            print(f"  ({' '.join(args[1:])} said: {done.stdout.decode().strip()})")
    return times


def summary(times: list[float]) -> str:
    times = sorted(times)
    p90 = times[int(0.9 * (len(times) - 1))]
    return (f"median {statistics.median(times) * 1e3:6.1f} ms   p90 {p90 * 1e3:6.1f} ms   "
            f"max {times[-1] * 1e3:6.1f} ms")


def measure(home: Path, runs: int) -> None:
    config = str(home / "hbfork.toml")
    ways = {
        "-c FILE (control socket)": [HBFORK, "health", "-q", "-c", config],
        "--socket PATH": [HBFORK, "health", "-q", "--socket", f"{home}/hbfork.pid.ctl"],
        "--from-table (before)": [HBFORK, "health", "-q", "-c", config, "--from-table"],
    }
    for name, args in ways.items():
        print(f"  {name:26} {summary(timed(args, runs))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        home = Path(tmp)
        procs = start(home)
        hogs: list[subprocess.Popen[bytes]] = []
        try:
            deadline = time.monotonic() + 15
            while subprocess.run([HBFORK, "health", "-q", "-c", str(home / "hbfork.toml")]
                                 ).returncode != 0:
                if time.monotonic() > deadline:
                    print((home / "hbfork.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.2)
            cores = os.cpu_count() or 1
            print(f"idle ({cores} cores; other users of the machine not stopped):")
            measure(home, args.runs)
            hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(cores)]
            print(f"with {cores} CPU hogs (one busy loop per core):")
            measure(home, args.runs)
        finally:
            for proc in hogs + procs[::-1]:
                proc.terminate()
                proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
