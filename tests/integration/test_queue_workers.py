"""The front queue across workers and generations, with real processes (issue 28): a place
freed in one worker goes to the front's oldest waiter wherever it waits, and a worker that
goes away (killed, or an old generation after a reload) leaves no place owed to it."""

from __future__ import annotations

import http.client
import os
import signal
import threading
from typing import Any

import pytest

from tests.integration.harness import get, wait_until
from tests.integration.test_overload import parallel, pool_state, start


def connections_by_worker(proxy, each: int = 2) -> dict[int, list[http.client.HTTPConnection]]:
    """Idle keep-alive connections, grouped by the pid of the worker that holds each, until two
    workers hold `each` (the kernel spreads accepts; which worker got one is seen from the
    status page's per-worker connection counts)."""
    by_worker: dict[int, list[http.client.HTTPConnection]] = {}
    before: dict[int, int] = {}
    spare = []
    for _ in range(80):
        _, _, conn = get(proxy.url, "/?delay=0")
        now = {w["pid"]: w["connections"] for w in proxy.status()["workers"]
               if w["state"] == "ready"}
        grown = [pid for pid, n in now.items() if n > before.get(pid, 0)]
        before = now
        if len(grown) == 1:
            by_worker.setdefault(grown[0], []).append(conn)
        else:
            spare.append(conn)
        if len(by_worker) >= 2 and all(len(c) >= each for c in by_worker.values()):
            break
    else:
        pytest.skip(f"the connections did not spread over two workers: {before}")
    for conn in spare:
        conn.close()
    return by_worker


class Request(threading.Thread):
    """One request on a given connection, in the background: its status (0: failed)."""

    def __init__(self, conn: http.client.HTTPConnection, path: str = "/") -> None:
        super().__init__(daemon=True)
        self.conn, self.path = conn, path
        self.status = -1
        self.backend = ""

    def run(self) -> None:
        try:
            response, _, _ = get("", self.path, conn=self.conn)
            self.status = response.status
            self.backend = response.getheader("X-Backend") or ""
        except (OSError, http.client.HTTPException):
            self.status = 0


def test_a_killed_worker_leaves_no_place_owed_to_its_waiter(cluster):
    """The front's oldest waiter is in worker X; X is killed (its client loses that request).
    The place freed in worker Y must go to Y's own waiter, not stay owed to X's dead one (with
    queue_timeout 30 s, places left to the dead worker's published arrival until it counts as
    a leftover would hold Y's waiter past the client's 10 s timeout): the master frees the
    dead worker's record, and failing that the hand-over grace serves Y's waiter; nothing
    stays counted as waiting (the freed record)."""
    proxy, (backend,) = start(cluster, 1, delay_ms=600, balance={"queue_timeout": 30})
    by_worker = connections_by_worker(proxy)
    (x, x_conns), (_, y_conns) = list(by_worker.items())[:2]
    first = Request(y_conns[0])          # Y's request takes the one place
    first.start()
    wait_until(lambda: proxy.member(backend.address)["in_flight"] == 1, 5,
               message="Y's request in flight")
    doomed = Request(x_conns[0])         # X's waiter: the oldest of the front
    doomed.start()
    wait_until(lambda: pool_state(proxy)["queued"] == 1, 5, message="X's request to wait")
    second = Request(y_conns[1])         # Y's waiter, younger
    second.start()
    wait_until(lambda: pool_state(proxy)["queued"] == 2, 5, message="Y's request to wait")
    os.kill(x, signal.SIGKILL)
    for request in (first, doomed, second):
        request.join(15)
    assert (first.status, doomed.status, second.status) == (200, 0, 200)
    assert proxy.member(backend.address)["requests"] >= 2
    wait_until(lambda: pool_state(proxy)["queued"] == 0, 5, message="no waiter left counted")
    for conns in by_worker.values():
        for conn in conns:
            conn.close()


def test_requests_waiting_across_a_reload_are_all_served(cluster):
    """SIGHUP while requests wait: the old generation's waiters are served as its places free,
    the new generation's requests after them; no 503, nothing left counted as waiting, and
    the old workers exit."""
    proxy, (backend,) = start(cluster, 1, delay_ms=300)
    results: list[tuple[int, str, float]] = []
    old = threading.Thread(target=lambda: results.extend(parallel(proxy.url, ["/"] * 4)))
    old.start()
    wait_until(lambda: pool_state(proxy)["queued"] >= 2, 5, message="requests to wait")
    generation = proxy.status()["master"]["config_generation"]
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: sum(w["generation"] > generation and w["state"] == "ready"
                           for w in proxy.workers()) == 2, 15,
               message="the new generation to serve")
    new = parallel(proxy.url, ["/"] * 3)
    old.join(20)
    statuses: dict[Any, int] = {}
    for status, _, _ in [*results, *new]:
        statuses[status] = statuses.get(status, 0) + 1
    assert statuses == {200: 7}, (results, new)
    wait_until(lambda: all(w["generation"] > generation for w in proxy.workers()), 20,
               message="the old generation to exit")
    assert pool_state(proxy)["queued"] == 0
    assert proxy.member(backend.address)["requests"] >= 7
