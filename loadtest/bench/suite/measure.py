"""scripts/bench: one measured wrk run of a kind against a contender, with the CPU its
process tree spent, and the one-exchange check made before measuring."""

from __future__ import annotations

import http.client
from typing import Any

from loadtest.bench import wrk
from loadtest.bench.kinds import KINDS
from loadtest.bench.proc_stats import tree_cpu


def check_exchange(host: str, port: int, method: str, path: str, size: int) -> str | None:
    """One exchange with http.client: None when it is what the benchmark expects (200 and the
    whole `size`-byte body; for a POST of `size` bytes, the backend's answer "read SIZE"),
    else what went wrong."""
    body = b"x" * size if method == "POST" else None
    headers = {"Content-Type": "application/octet-stream"} if body else {}
    try:
        conn = http.client.HTTPConnection(host, port, timeout=15)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
    except (OSError, http.client.HTTPException) as err:
        return f"{method} {path}: {err!r}"
    if response.status != 200:
        return f"{method} {path}: HTTP {response.status} {data[:80]!r}"
    if method == "GET" and len(data) != size:
        return f"{method} {path}: {len(data)} body bytes, not {size}"
    if method == "POST" and data.strip() != f"read {size}".encode():
        return f"{method} {path}: the backend answered {data[:80]!r}, not 'read {size}'"
    return None


def measure(server: Any, kind: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run of `kind` against `server`, with the CPU its process tree spent."""
    spec = KINDS[kind]
    pid = server.proc.pid
    before = tree_cpu(pid)
    result = wrk.run(server.url.rstrip("/") + spec.path, connections, seconds,
                     script=spec.wrk_args(), script_args=spec.wrk_script_args())
    cpu = tree_cpu(pid) - before
    if result.get("requests"):
        result["cpu_us_per_request"] = cpu / result["requests"] * 1e6
    result["cpu_seconds"] = cpu
    return result
