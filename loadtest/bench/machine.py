"""What a result was measured on and with: the machine, the programs' versions, the commit,
and an export of hbfork as committed (so uncommitted work in the tree is not what is run)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from loadtest.bench.paths import ROOT

EXPORTED = ("hbfork", "loadtest")   # what export_head() unpacks: the proxy and this harness


def first_line(cmd: list[str]) -> str:
    """The first line `cmd` prints (stdout, then stderr: `nginx -v` writes to stderr)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def commit(root: Path = ROOT) -> str:
    return first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])


def machine() -> dict[str, Any]:
    """CPU, cores, memory, kernel, Python, the commit, the reference programs' versions,
    the load average and the date: the head of every report."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "memory_mib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
            "python": platform.python_version(), "commit": commit(),
            "nginx": first_line(["nginx", "-v"]), "haproxy": first_line(["haproxy", "-v"]),
            "apache": first_line(["apache2", "-v"]).removeprefix("Server version: "),
            "wrk": first_line(["wrk", "-v"]),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def export_head(directory: Path, paths: tuple[str, ...] = EXPORTED, root: Path = ROOT) -> Path:
    """`paths` as committed at HEAD of the tree `root` (default: this one), unpacked in
    `directory` (made; readable by all, for Apache's unprivileged children and the lab's
    hosts)."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", "HEAD", *paths],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    os.chmod(directory, 0o755)
    return directory
