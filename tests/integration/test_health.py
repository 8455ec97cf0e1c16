"""/healthz, `hbfork health` and `hbfork ctl drain-front` against a real proxy (issue 17)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
import time
from collections import Counter

from tests.integration.conftest import Cluster
from tests.integration.harness import HBFORK, Proxy, wait_until


def healthz(proxy: Proxy) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.status_port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def health_cli(config: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HBFORK, "health", "-c", config], capture_output=True, text=True,
                          timeout=20)


def test_healthz_and_health_follow_the_heartbeats(cluster: Cluster) -> None:
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backends = [cluster.backend(f"b{i}", heartbeat=proxy.heartbeat_address) for i in range(2)]
    proxy.wait_eligible(*(b.address for b in backends))
    assert healthz(proxy) == (200, "healthy: 2 workers, 2 of 2 members usable\n")
    done = health_cli(str(proxy.config_path))
    assert (done.returncode, done.stdout) == (0, "healthy: 2 workers, 2 of 2 members usable\n")
    for backend in backends:
        backend.pause_heartbeats()
    # Silent for max_age (3 s): the front says so rather than serve an ageing table.
    wait_until(lambda: healthz(proxy)[0] == 503, 10, message="/healthz to fail")
    status, body = healthz(proxy)
    assert status == 503 and body.startswith("unhealthy: no heartbeat accepted for "), body
    done = health_cli(str(proxy.config_path))
    assert done.returncode == 1 and done.stdout.startswith("unhealthy: no heartbeat"), done
    backends[0].resume_heartbeats()
    wait_until(lambda: healthz(proxy)[0] == 200, 10, message="/healthz to recover")
    assert healthz(proxy)[1] == "healthy: 2 workers, 1 of 2 members usable\n"


def test_health_without_a_master_or_a_config(cluster: Cluster) -> None:
    proxy = cluster.proxy([], heartbeat={"discover": True})
    proxy.stop()
    done = health_cli(str(proxy.config_path))
    assert done.returncode == 1, done
    assert done.stdout.startswith("unhealthy: no hbfork master is running"), done
    missing = health_cli(str(cluster.tmp / "nowhere.toml"))
    assert missing.returncode == 2, missing
    assert "nowhere.toml" in missing.stderr and "Traceback" not in missing.stderr, missing


def test_drain_front_fails_health_then_closes_then_finishes_in_flight(
        cluster: Cluster) -> None:
    proxy = cluster.proxy([], heartbeat={"discover": True}, proxy={"drain_delay": 1.5})
    backends = [cluster.backend(f"b{i}", heartbeat=proxy.heartbeat_address, delay_ms=200)
                for i in range(2)]
    proxy.wait_eligible(*(b.address for b in backends))
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            try:
                conn.connect()
            except ConnectionRefusedError:
                outcomes.append((started, "refused"))
                return  # the listeners are closed: this client is done
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                response = conn.getresponse()
                response.read()
                outcomes.append((started, str(response.status)))
            except (OSError, http.client.HTTPException) as err:
                outcomes.append((started, type(err).__name__))
            finally:
                conn.close()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(outcomes) >= 12, 10, message="load to flow")
        began = time.monotonic()
        done = subprocess.run([*HBFORK, "ctl", "-c", str(proxy.config_path), "drain-front"],
                              capture_output=True, text=True, timeout=20)
        assert done.returncode == 0 and done.stdout.startswith("ok draining"), done
        status, body = healthz(proxy)
        assert (status, body) == (503, "unhealthy: draining: handing over to another front\n")
        assert health_cli(str(proxy.config_path)).returncode == 1
        assert proxy.proc.wait(30) == 0  # in-flight requests finished, then the master left
        ended = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
    counts = Counter(outcome for _, outcome in outcomes)
    assert set(counts) == {"200", "refused"}, counts  # nothing failed; refused once closed
    served_after = [t for t, outcome in outcomes if outcome == "200" and t > began + 1.0]
    assert served_after, "requests kept being served during drain_delay"
    first_refused = min(t for t, outcome in outcomes if outcome == "refused")
    assert began + 1.4 <= first_refused <= ended, (began, first_refused)


def test_health_asks_the_master_and_a_stuck_master_is_unhealthy(cluster: Cluster) -> None:
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backend = cluster.backend("b", heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    control = f"{proxy.config['proxy']['pidfile']}.ctl"
    for args in (["--socket", control], ["-c", str(proxy.config_path), "--from-table"]):
        done = subprocess.run([*HBFORK, "health", *args], capture_output=True, text=True,
                              timeout=20)
        assert (done.returncode, done.stdout) == (0, "healthy: 2 workers, 1 of 1 members "
                                                     "usable\n"), (args, done)
    assert "control: health" not in proxy.output()  # asked every second: not logged
    os.kill(proxy.pid, signal.SIGSTOP)  # a master loop that does not run any more
    try:
        done = subprocess.run([*HBFORK, "health", "--socket", control, "--timeout", "0.5"],
                              capture_output=True, text=True, timeout=20)
    finally:
        os.kill(proxy.pid, signal.SIGCONT)
    assert done.returncode == 1
    assert done.stdout == "unhealthy: the master did not answer within 0.5s\n"


def test_the_status_page_answers_every_poll_across_reloads(cluster: Cluster) -> None:
    """A draining worker stops accepting status requests (the new generation answers them):
    before, one it had accepted as it exited was cut (a reset, seen by a test polling
    /status.json right after a reload on a loaded machine)."""
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}])
    stop = threading.Event()
    outcomes: Counter[str] = Counter()

    def poll() -> None:
        while not stop.is_set():
            try:
                status = proxy.status()
                outcomes["ok" if "members" in status else "odd"] += 1
            except (OSError, http.client.HTTPException, ValueError) as err:
                outcomes[type(err).__name__] += 1

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for generation in (2, 3, 4):
            proxy.send_signal(signal.SIGHUP)
            wait_until(lambda g=generation: proxy.status()["master"]["config_generation"] == g,
                       10, message=f"reload {generation}")
            # until the old workers are gone: their exit is where a poll was cut
            wait_until(lambda g=generation: all(w["generation"] == g
                                   for w in proxy.status()["workers"]), 15,
                       message="the old workers to exit")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert set(outcomes) == {"ok"} and outcomes["ok"] > 20, outcomes
