"""Short runs of the load-test kit (scripts/loadtest) so CI keeps it working.

Each run starts its own hbfork and three backends on loopback, drives them with Locust for a
few seconds and checks the scenario's failure allowance (scripts/loadtest's exit status):
reload allows 0 failures; member-down allows at most one per user (the requests in flight on
the member when it is killed); overload's burst (16 users on members with 6 workers in all)
must be absorbed by the front queue: 0 failures, and requests did wait. Speed is not
asserted here; that is scripts/bench's job.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USERS = 8
DURATION = 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                       reason="locust is not installed (pip install -e '.[loadtest]')"),
]


def run_loadtest(tmp_path: Path, scenario: str, users: int = USERS,
                 duration: int = DURATION) -> tuple[int, str]:
    # Its own session, so that if it hangs, the kit and everything it started (hbfork,
    # backends, Locust processes) can be stopped together and nothing outlives the test.
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "loadtest"), "--scenario", scenario,
         "--duration", str(duration), "--users", str(users), "--results", str(tmp_path),
         "--download-size", "65536"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)
            try:
                output, _ = proc.communicate(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        raise AssertionError(f"scripts/loadtest --scenario {scenario} did not finish in 90 s")
    return proc.returncode, output


def failures(output: str) -> int:
    match = re.search(r"^requests (\d+) \(.*\), failures (\d+)$", output, re.MULTILINE)
    assert match, f"no summary in the output:\n{output}"
    assert int(match.group(1)) > 0, output
    return int(match.group(2))


def test_reload_loses_nothing(tmp_path: Path) -> None:
    code, output = run_loadtest(tmp_path, "reload")
    assert code == 0, output
    assert failures(output) == 0, output
    assert output.count("SIGHUP pid=") >= 2, output


def test_member_down_within_allowance(tmp_path: Path) -> None:
    code, output = run_loadtest(tmp_path, "member-down")
    assert code == 0, output
    assert failures(output) <= USERS, output
    assert "SIGKILL member" in output, output


def test_overload_burst_waits_in_the_queue_not_503(tmp_path: Path) -> None:
    code, output = run_loadtest(tmp_path, "overload", users=16, duration=5)
    assert code == 0, output
    assert failures(output) == 0, output
    match = re.search(r"^front queue, pool default: (\d+) requests waited", output, re.MULTILINE)
    assert match and int(match.group(1)) > 0, output
    # the cross-worker hand-overs are reported too (how many depends on how the kernel
    # spread the users' connections over the workers)
    assert re.search(r"; \d+ places a worker freed went to an older waiter of another worker",
                     output), output
