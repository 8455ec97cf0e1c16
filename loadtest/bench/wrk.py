"""The one wrk runner and its output parser.

wrk is the closed-loop client of every benchmark here: each connection sends its next request
when the last one is answered. `run()` returns the parsed figures (requests/s, requests,
percentiles in ms, socket errors, non-2xx answers); what a benchmark asks of wrk differs only
in its options (threads, --timeout, a Lua script, extra headers).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

WRK = shutil.which("wrk") or "/usr/bin/wrk"
DEFAULT_TIMEOUT = "5s"
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
PERCENTILES = ("50", "75", "90", "99")


def command(url: str, connections: int, seconds: float, threads: int = 2, *,
            timeout: str | None = DEFAULT_TIMEOUT, script: list[str] | None = None,
            script_args: list[str] | None = None, headers: tuple[str, ...] = ()) -> list[str]:
    """wrk's argv. `timeout` None keeps wrk's own default (2 s); `script`: the options for a
    Lua script (["-s", FILE]), `script_args` go after `--` to its init(args); `headers` are
    "Name: value" strings (-H)."""
    # wrk refuses fewer connections than threads.
    argv = [WRK, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s",
            "--latency"]
    if timeout is not None:
        argv += ["--timeout", timeout]
    for header in headers:
        argv += ["-H", header]
    return [*argv, *(script or []), url, *(["--", *script_args] if script_args else [])]


def run(url: str, connections: int, seconds: float, threads: int = 2, *,
        check: bool = False, **options: Any) -> dict[str, Any]:
    """One wrk run, parsed. When wrk fails (exit status, or no Requests/sec line) the result
    has "error" (the end of its output), or with `check` the benchmark stops (SystemExit)."""
    argv = command(url, connections, seconds, threads, **options)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 40,
                          check=False)
    result = parse(done.stdout)
    if done.returncode != 0 or "rps" not in result:
        result["error"] = (done.stderr or done.stdout)[-500:]
        if check:
            raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
    return result


def to_ms(text: str) -> float:
    """wrk's "612.00us", "1.20ms", "2.01s", "1.00m" in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse(text: str) -> dict[str, Any]:
    """wrk's --latency output as numbers: p50/p75/p90/p99 (ms, those present), rps,
    requests, errors (the sum of the socket errors) and socket_errors by kind, non2xx, and
    ok_rps (requests/s less the non-2xx answers)."""
    out: dict[str, Any] = {"errors": 0, "non2xx": 0}
    for pct in PERCENTILES:
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.MULTILINE)
        if match:
            out[f"p{pct}"] = to_ms(match.group(1))
    if match := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE):
        out["rps"] = float(match.group(1))
    if match := re.search(r"^\s+(\d+) requests in", text, re.MULTILINE):
        out["requests"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                          r"timeout (\d+)", text):
        out["errors"] = sum(int(g) for g in match.groups())
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, match.groups()), strict=True))
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        out["non2xx"] = int(match.group(1))
    if out.get("requests") and "rps" in out:
        # wrk counts error responses (a front's fast 503s) as requests; these do not.
        out["ok_rps"] = out["rps"] * (out["requests"] - out["non2xx"]) / out["requests"]
    return out


def error_count(result: dict[str, Any]) -> int:
    """Socket errors plus non-2xx answers: every exchange that did not go as it should."""
    return int(result.get("errors", 0)) + int(result.get("non2xx", 0))
