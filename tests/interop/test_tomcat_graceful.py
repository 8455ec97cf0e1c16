"""A real Tomcat 10 stopped gracefully (SIGTERM) under load behind hbfork: no client sees it.

Tomcat's graceful stop closes its kept-alive connections and keeps accepting for a while as it
shuts down, then resets what it accepted (issue 23: each stop cost clients two 502s, hbfork
retrying the closed pooled connection on the same member only). Now a pooled connection the
member closes sends the request to the other Tomcat at once (hbfork.core.retry.
race_goes_elsewhere), a reset one goes there too (`retry_on`), and a Tomcat that takes
requests and answers none is handed on by the no-answer rule (hbfork.core.hang).

The private instances are tests/interop/test_tomcat.py's (same server.xml, beats by POST).
Under CI=true a missing tomcat10 fails instead of skipping.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter

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
                      http={"connect_timeout": 2, "retries": 2, "response_timeout": 10})
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
    assert errors == {}, (errors, results)
