"""The runs of scripts/bench-balance and scripts/bench-overload: one open-loop run (its own
process, clients/openloop.py) or one wrk run, and the figures their reports use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadtest.bench import wrk
from loadtest.bench.stats import pct

OPENLOOP = "loadtest.bench.clients.openloop"


def openloop(url: str, rate: float, seconds: float, seed: int, out: Path,
             timeout: float = 10.0, max_connections: int = 1024) -> dict[str, Any]:
    """One open-loop run (a separate process, so it is scheduled apart from this one)."""
    cmd = [sys.executable, "-m", OPENLOOP, "--url", url, "--rate", f"{rate:.1f}",
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


def wrk_run(url: str, connections: int, seconds: float, threads: int = 2) -> dict[str, Any]:
    """wrk (closed loop: each connection sends its next request when the last is answered),
    with its latency distribution; errors = socket errors + non-2xx answers."""
    out = wrk.run(url, connections, seconds, threads, timeout="10s")
    if "error" in out:
        out["failed"] = out.pop("error")
        return out
    out["goodput"] = out.get("ok_rps", 0.0)
    out["errors_total"] = wrk.error_count(out)
    return out

