"""Running a benchmark inside a fresh network-namespace lab: build the lab, run the same
module with `--in-lab PREFIX` on its front host, remove the lab whatever happens
(scripts/bench, bench-balance, bench-overload)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from loadtest.bench.lab import netns


def log(tag: str, text: str) -> None:
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {text}", flush=True)


def lab_unavailable(programs: tuple[str, ...] = ("nginx", "haproxy", "apache2")) -> str | None:
    """Why the lab cannot run here (no root, no namespaces, a program missing), or None."""
    reason = netns.unavailable_reason()
    if reason:
        return reason
    for program in programs:
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


def run_in_lab(module: str, argv: list[str], backends: int, base: str) -> int:
    """Build a lab with `backends` member hosts and run `python -m module --in-lab PREFIX
    argv` on its front host; the lab is removed afterwards whatever happens."""
    prefix = netns.unique_prefix(base)
    with netns.Lab(prefix=prefix, backends=backends) as lab:
        log(base, f"netns lab {prefix} up ({backends} member hosts)")
        # `ip netns exec` keeps the working directory: the checkout's editable install and
        # any relative --output or --results still resolve inside the lab.
        done = subprocess.run(lab.command("front", [sys.executable, "-m", module, "--in-lab",
                                                    prefix, *argv]), check=False)
    log(base, f"netns lab {prefix} removed")
    return done.returncode


def exit_on_term(signum: int, frame: object) -> None:
    """SIGTERM handler: turn TERM (a timeout, a CI cancel) into an exception, so every
    `finally` stops the servers this run started instead of leaving them behind."""
    raise SystemExit(128 + signum)
