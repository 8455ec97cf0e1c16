"""The HTTP fast path of two source trees, A against B, in ABBA blocks: the wall-clock A/B of
requests/s and worker CPU per request that a shared, noisy machine can still resolve.

A measurement, not a test. One nginx member on 127.0.0.2 (heartbeats sent for it) and two
hbfork fronts (one worker each, scripts/bench-headers' plain configuration), one from each
tree, both up for the whole run. Each block runs wrk (2 threads, 8 keep-alive connections,
`--seconds`) against A, B, B, A; the block's ratio is (A1 + A2) / (B1 + B2), which cancels a
drift of the machine that is linear over the block. The report is the median of the blocks'
ratios with a 95 % bootstrap interval: the interval, not the point, says whether a target
such as "≥ 0.97x" is met.

    scripts/ab-http --a DIR --b DIR [--blocks 24] [--seconds 2] [--a-extra TOML] [--b-extra TOML]

`--a-extra` / `--b-extra` append TOML to one side's configuration ("\\n" for a line break),
e.g. `--a . --b . --b-extra '[outlier]\\nenabled = false'`: what a feature costs, one tree.

Why not bench-http's ratio of medians: there A and B run seconds apart with other targets
between them, and identical trees came out ±10 % apart on these machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from hbfork.beat.beacon import Beacon
from loadtest.bench import tools, wrk
from loadtest.bench.lab.loopback import NGINX
from loadtest.bench.proc_stats import cpu_seconds
from loadtest.bench.procs import free_port, wait_children
from loadtest.bench.profile.instructions import front_config, member_config, wait_serving
from loadtest.bench.stats import abba_ratio, bootstrap_median, median

PATH = "/index.html"


class Front:
    """One hbfork (one worker) run from `tree`, beating for the member itself."""

    def __init__(self, tree: Path, home: Path, member: str, extra: str = "") -> None:
        home.mkdir(mode=0o755)
        self.tree = tree
        self.port, beats, status = (free_port(), free_port(kind=socket.SOCK_DGRAM),
                                    free_port())
        # Trees older than request IDs do not know their section.
        kind = "none" if (tree / "hbfork" / "core" / "request_id.py").exists() else "base"
        text = front_config(kind, self.port, beats, status, member, home)
        (home / "hbfork.toml").write_text(f"{text}\n{extra}\n" if extra else text)
        with open(home / "output.log", "wb") as out:
            self.master = subprocess.Popen(
                [sys.executable, "-m", "hbfork", "run", "-c", str(home / "hbfork.toml")],
                cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, stdout=out,
                stderr=subprocess.STDOUT)
        host, port = member.rsplit(":", 1)
        self.beacon = Beacon(("127.0.0.1", beats), port=int(port), source=host, interval=0.5)
        self.beacon.start(lambda: (100, 0))
        wait_serving(self.port, self.master, 30, lambda: f"from {tree}: see {home}")
        self.worker = wait_children(self.master.pid)[0]

    def run(self, seconds: float) -> tuple[float, float]:
        """(requests/s, worker CPU µs per request) of one wrk run."""
        before = cpu_seconds(self.worker)
        result = wrk.run(f"http://127.0.0.1:{self.port}{PATH}", 8, seconds, 2, check=True)
        done = result["requests"]
        return result["rps"], (cpu_seconds(self.worker) - before) / max(done, 1) * 1e6

    def stop(self) -> None:
        self.beacon.stop()
        self.master.terminate()
        self.master.wait(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ab-http", description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="source tree A (e.g. this checkout)")
    parser.add_argument("--b", type=Path, required=True, help="source tree B (the reference)")
    parser.add_argument("--blocks", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0, help="per wrk run")
    parser.add_argument("--a-extra", default="", help="TOML appended to A's configuration")
    parser.add_argument("--b-extra", default="", help="TOML appended to B's configuration")
    args = parser.parse_args(argv)
    tools.require("scripts/ab-http", "nginx", "wrk")
    work = Path(tempfile.mkdtemp(prefix="ab-http-"))
    work.chmod(0o755)  # nginx's workers run unprivileged
    nginx = None
    fronts: list[Front] = []
    try:
        conf, member = member_config(work)
        nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(conf.parent)])
        fronts = [Front(args.a.resolve(), work / "a", member,
                        args.a_extra.replace("\\n", "\n")),
                  Front(args.b.resolve(), work / "b", member,
                        args.b_extra.replace("\\n", "\n"))]
        a, b = fronts
        a.run(args.seconds), b.run(args.seconds)  # warm: caches, bytecode, pooled connections
        rates: list[float] = []
        cpus: list[float] = []
        for block in range(1, args.blocks + 1):
            a1, b1, b2, a2 = a.run(args.seconds), b.run(args.seconds), b.run(args.seconds), \
                a.run(args.seconds)
            rates.append(abba_ratio(a1[0], b1[0], b2[0], a2[0]))
            cpus.append(abba_ratio(a1[1], b1[1], b2[1], a2[1]))
            print(f"block {block:2}: A {a1[0]:6.0f} {a2[0]:6.0f} req/s {a1[1]:5.1f} {a2[1]:5.1f} "
                  f"µs/req | B {b1[0]:6.0f} {b2[0]:6.0f} req/s {b1[1]:5.1f} {b2[1]:5.1f} µs/req | "
                  f"A/B {rates[-1]:.3f} req/s, {cpus[-1]:.3f} CPU", flush=True)
        low, high = bootstrap_median(rates)
        cpu_low, cpu_high = bootstrap_median(cpus)
        print(f"A = {args.a} {args.a_extra!r}, B = {args.b} {args.b_extra!r}: {args.blocks} "
              f"ABBA blocks of {args.seconds:g}-s runs")
        print(f"A/B requests/s {median(rates):.3f} (95 % interval {low:.3f}-{high:.3f}); "
              f"CPU per request {median(cpus):.3f} ({cpu_low:.3f}-{cpu_high:.3f})")
    finally:
        for front in fronts:
            front.stop()
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
