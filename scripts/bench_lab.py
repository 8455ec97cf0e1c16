"""What scripts/bench-balance and scripts/bench-overload share: running inside a fresh
network-namespace lab, running hbfork as committed, the open-loop and wrk runs and their
figures, a note of the machine, and their own section of BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
OPENLOOP = SCRIPTS / "bench_openloop.py"


def log(tag: str, text: str) -> None:
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {text}", flush=True)


def bootstrap(script: str, extras: str = "bench") -> None:
    """Re-run `script` under the project's .venv (made with `extras` when needed)."""
    try:
        import hbfork  # noqa: F401
        if "bench" in extras:
            import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("HBBENCH_BOOTSTRAPPED"):
        sys.exit(f"{script}: hbfork (or matplotlib) still not importable in .venv")
    subprocess.run(["bash", "-c", f". scripts/_venv.sh && ensure_venv {extras}"], cwd=ROOT,
                   check=True)
    os.environ["HBBENCH_BOOTSTRAPPED"] = "1"
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), script, *sys.argv[1:]])


def export_head(directory: Path) -> Path:
    """hbfork/ as committed at HEAD, so uncommitted work in the tree is not what is measured."""
    directory.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "hbfork"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    os.chmod(directory, 0o755)
    return directory


def lab_unavailable(need_apache: bool = True) -> str | None:
    import netlab

    reason = netlab.unavailable_reason()
    if reason:
        return reason
    for program in ("nginx", "haproxy", *(("apache2",) if need_apache else ())):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


def run_in_lab(script: str, argv: list[str], backends: int, base: str) -> int:
    """Build a lab with `backends` member hosts and run `script --in-lab PREFIX argv` on its
    front host; the lab is removed afterwards whatever happens."""
    import netlab

    prefix = netlab.unique_prefix(base)
    with netlab.Lab(prefix=prefix, backends=backends) as lab:
        log(base, f"netns lab {prefix} up ({backends} member hosts)")
        done = subprocess.run(lab.command("front", [sys.executable, script, "--in-lab", prefix,
                                                    *argv]), check=False)
    log(base, f"netns lab {prefix} removed")
    return done.returncode


def first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "commit": commit,
            "nginx": first_line(["nginx", "-v"]), "haproxy": first_line(["haproxy", "-v"]),
            "apache": first_line(["apache2", "-v"]).removeprefix("Server version: "),
            "wrk": first_line(["wrk", "-v"]),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- runs ---------------------------------------------------------------------------------

def openloop(url: str, rate: float, seconds: float, seed: int, out: Path,
             timeout: float = 10.0, max_connections: int = 1024) -> dict[str, Any]:
    """One open-loop run (a separate process, so it is scheduled apart from this one)."""
    cmd = [sys.executable, str(OPENLOOP), "--url", url, "--rate", f"{rate:.1f}",
           "--seconds", f"{seconds:g}", "--seed", str(seed), "--timeout", f"{timeout:g}",
           "--max-connections", str(max_connections), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout + 60,
                          check=False)
    if done.returncode != 0 or not out.exists():
        return {"failed": (done.stderr or done.stdout)[-800:]}
    return json.loads(out.read_text())


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """p50/p99/p99.9 over every request (a failed one counts at the time it failed), the
    errors (no answer, or a non-2xx answer), goodput, shares of the 2xx answers."""
    if "failed" in result:
        return {"failed": result["failed"]}
    latency = sorted(result["latency_ms"])
    non2xx = {k: v for k, v in result["status"].items() if not k.startswith("2")}
    ok = sum(v for k, v in result["status"].items() if k.startswith("2"))
    errors = sum(result["errors"].values()) + sum(non2xx.values())
    backends = result["backends"]
    total_ok = sum(backends.values()) or 1
    return {"sent": result["sent"], "ok": ok, "errors": errors,
            "error_kinds": {**result["errors"], **{f"HTTP {k}": v for k, v in non2xx.items()}},
            "p50": pct(latency, 50), "p99": pct(latency, 99), "p999": pct(latency, 99.9),
            "max": latency[-1] if latency else 0.0,
            # Answers may come after the last arrival (queued ones): per second of the span
            # from the first arrival to the last 2xx answer, never less than the arrivals'.
            "goodput": ok / max(result["seconds"], result.get("last_ok_s", 0.0)),
            "by_second": result.get("by_second", []),
            "shares": {name: count / total_ok for name, count in sorted(backends.items())},
            "lag_p99": result["lag_ms"]["p99"], "client_queued": result["client_queued"],
            "connections": result["most_connections"],
            "retried_on_reuse": result.get("retried_on_reuse", 0),
            "first_error_at": min((t for t, _ in result["error_times"]), default=None)}


def pct(values: Sequence[float], p: float) -> float:
    if not values:
        return 0.0
    return float(values[min(len(values) - 1, int(len(values) * p / 100))])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return (median(values), min(values), max(values)) if values else (float("nan"),) * 3


def wrk_run(url: str, connections: int, seconds: float, threads: int = 2) -> dict[str, Any]:
    """wrk (closed loop: each connection sends its next request when the last is answered),
    with its latency distribution; errors = socket errors + non-2xx answers."""
    from bench_measure import WRK, parse_wrk

    cmd = [WRK, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s",
           "--latency", "--timeout", "10s", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 40,
                          check=False)
    out = parse_wrk(done.stdout)
    if done.returncode != 0 or "rps" not in out:
        out["failed"] = (done.stderr or done.stdout)[-500:]
        return out
    out["goodput"] = out.get("ok_rps", 0.0)
    out["errors_total"] = out["errors"] + out["non2xx"]
    return out


# --- BENCHMARKS.md --------------------------------------------------------------------------

def update_section(path: Path, name: str, text: str, after: str = "") -> None:
    """Put `text` between `<!-- NAME:start -->` and `<!-- NAME:end -->` in `path`, replacing
    what a previous run put there; a new one goes right after the section `after` if that is
    there, else at the end. scripts/bench rewrites the whole file: run this script's
    `--report-only` afterwards to put the section back."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.strip()}\n{end}\n"
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    anchor = f"<!-- {after}:end -->\n" if after else ""
    if pattern.search(current):
        current = pattern.sub(lambda _: block, current)
    elif anchor and anchor in current:
        current = current.replace(anchor, anchor + "\n" + block, 1)
    else:
        current = current.rstrip("\n") + "\n\n" + block
    path.write_text(current)


def fmt_ms(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"
