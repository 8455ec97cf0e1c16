"""A real Tomcat 10 stopped gracefully (SIGTERM) under load behind hbfork: no client sees it.

Tomcat's graceful stop closes its kept-alive connections and keeps accepting for a while as it
shuts down, then resets what it accepted (issue 23: each stop cost clients two 502s, hbfork
retrying the closed pooled connection on the same member only). Now a pooled connection the
member closes sends the request to the other Tomcat at once (hbfork.core.retry.
race_goes_elsewhere), a reset one goes there too (`retry_on`), and a Tomcat that takes
requests and answers none is handed on by the no-answer rule (hbfork.core.hang).

Tomcat's own shutdown answers: Tomcat 10.1 answers `400 Bad Request` (an empty one from its
connector, or its HTML error page) to a well-formed request that reaches a kept-alive
connection at the instant its stop pauses the connector. Seen here in about 1 stop in 10; a
packet capture showed request bytes identical to the hundreds answered 200 before them, and
clients talking to Tomcat directly, with no proxy, get the same 400 in 2 stops of 8. A proxy
cannot tell it from an application's 400 (hbfork does not retry 400s unless a pool's
`retry_on` says so), so such an answer, logged with the stopping Tomcat as its member, is
counted apart: at most two per stop; any other error, from hbfork or any member, fails.

The private instances are tests/interop/test_tomcat.py's (same server.xml, beats by POST).
Under CI=true a missing tomcat10 fails instead of skipping.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.harness import Process, Proxy, get, wait_until
from tests.interop.test_tomcat import BEAT_PATH, Tomcat
from tests.interop.tomcat_kit import STARTUP, require_tomcat

pytestmark = pytest.mark.tomcat

IPS = ("127.0.0.83", "127.0.0.84")  # not test_tomcat.py's: both modules may run at once


def test_a_tomcat_stopped_gracefully_under_load_costs_no_client_errors(tmp_path) -> None:
    require_tomcat()
    tomcats = [Tomcat(tmp_path / name, name, ip, ajp=False)
               for name, ip in zip(("tomcat1", "tomcat2"), IPS, strict=True)]
    home = tmp_path / "hbfork"
    home.mkdir()
    started: list[Process] = []
    stop = threading.Event()
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        conn = None
        while not stop.is_set():
            try:
                response, body, conn = get(proxy.url, "/", conn=conn, timeout=10)
                outcome = body.decode() if response.status == 200 else f"HTTP {response.status}"
            except OSError as err:
                outcome, conn = f"error {err!r}", None
            with lock:
                results[outcome] += 1

    threads = [threading.Thread(target=client) for _ in range(6)]
    try:
        proxy = Proxy(home, [{"address": t.address} for t in tomcats], proxy={"workers": 2},
                      heartbeat={"http_path": BEAT_PATH, "startup_grace": 0, "max_age": 5,
                                 "forget_after": 30, "allow": ["127.0.0.0/8"]},
                      http={"connect_timeout": 2, "retries": 2, "response_timeout": 10},
                      log={"access": str(home / "access.log")})
        started.append(proxy)
        proxy.wait_ready()
        for tomcat in tomcats:
            tomcat.start(f"127.0.0.1:{proxy.port}")
            started.append(tomcat)
        for tomcat in tomcats:
            wait_until(tomcat.answers, STARTUP, interval=0.5,
                       message=f"Tomcat {tomcat.name} to serve")
        proxy.wait_eligible(*(t.address for t in tomcats), timeout=30)
        for thread in threads:
            thread.start()
        wait_until(lambda: results["tomcat1\n"] >= 50 and results["tomcat2\n"] >= 50, 30,
                   message="load to reach both Tomcats")
        leaving = tomcats[1]
        leaving.send_signal(signal.SIGTERM)  # Tomcat's graceful stop (the shutdown hook)
        wait_until(lambda: not leaving.alive(), 60, message="tomcat2 to stop")
        stopped_at = sum(results.values())
        wait_until(lambda: sum(results.values()) >= stopped_at + 300, 30,
                   message="load to go on after the stop")
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(15)
        for proc in reversed(started):
            proc.stop()
    errors = {k: v for k, v in results.items() if k not in ("tomcat1\n", "tomcat2\n")}
    not_200 = answers_not_200(home / "access.log")
    tomcats_own = [line for line in not_200
                   if '" 400 ' in line and f"member={tomcats[1].address} " in line]
    if 0 < errors.get("HTTP 400", 0) == len(tomcats_own) <= 2:
        del errors["HTTP 400"]  # the stopping Tomcat's own answers (see the docstring)
    assert errors == {}, (errors, results, not_200)


def answers_not_200(access_log: Path) -> list[str]:
    """The proxy's access-log lines of answers other than 200 (each names its member)."""
    if not access_log.exists():
        return []
    return [line for line in access_log.read_text(errors="replace").splitlines()
            if '" 200 ' not in line]
