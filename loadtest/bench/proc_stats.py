"""CPU and memory of processes, read from /proc: the one `cpu_seconds()` every benchmark uses.

CPU counts user + system time plus the time of children the process has reaped (cutime,
cstime): a worker that exits during a run (respawned, or an Apache child reaped by its
parent) still has its CPU counted, in its parent's figures. Deltas of these sums over a run
are what the benchmarks report.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTicks:
    """Clock ticks from /proc/PID/stat: utime, stime, cutime, cstime."""

    user: int = 0
    system: int = 0
    children_user: int = 0
    children_system: int = 0

    def __add__(self, other: CpuTicks) -> CpuTicks:
        return CpuTicks(self.user + other.user, self.system + other.system,
                        self.children_user + other.children_user,
                        self.children_system + other.children_system)

    def seconds(self, tck: int = CLK_TCK) -> float:
        return (self.user + self.system + self.children_user + self.children_system) / tck

    def split(self, tck: int = CLK_TCK) -> tuple[float, float]:
        """(user, system) seconds, reaped children's included."""
        return ((self.user + self.children_user) / tck,
                (self.system + self.children_system) / tck)


def parse_stat(text: str) -> CpuTicks:
    """The CPU fields of one /proc/PID/stat line. The command name (field 2) is in
    parentheses and may itself hold spaces and ')': split after the LAST ')'."""
    fields = text.rsplit(")", 1)[1].split()
    # After the name: state is fields[0], so utime (field 14 of the line) is fields[11].
    return CpuTicks(*(int(f) for f in fields[11:15]))


def cpu_ticks(pids: list[int] | tuple[int, ...]) -> CpuTicks:
    """The sum over `pids`; a pid that is gone counts 0 (it exited between listing and
    reading; its time is in its parent's children figures once reaped)."""
    total = CpuTicks()
    for pid in pids:
        try:
            total += parse_stat(Path(f"/proc/{pid}/stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
    return total


def cpu_seconds(*pids: int) -> float:
    """User + system CPU seconds of the processes, reaped children included."""
    return cpu_ticks(pids).seconds()


def cpu_split(*pids: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the processes, reaped children included."""
    return cpu_ticks(pids).split()


def descendants(pid: int) -> list[int]:
    """pid and every live descendant (children of every thread, recursively)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return sorted(set(out))


def tree_cpu(pid: int) -> float:
    """cpu_seconds() of `pid` and all its descendants."""
    return cpu_seconds(*descendants(pid))


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or VmHWM, the peak) of `pid` in KiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and Pss (proportional: shared pages split among the processes sharing them)."""
    out = {"rss": rss_kib(pid), "pss": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def tree_memory(pid: int) -> list[dict[str, Any]]:
    return [{"pid": p, "title": process_title(p), **memory_kib(p)} for p in descendants(pid)]


class RssSampler(threading.Thread):
    """The highest VmRSS of `pid` seen while running (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_kib(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak
