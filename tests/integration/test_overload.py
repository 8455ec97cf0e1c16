"""Overload: member capacity from heartbeats, and the front queue, with real processes."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import pytest

from tests.integration.harness import free_port, get, wait_until


def parallel(url: str, paths: list[str], timeout: float = 20) -> list[tuple[int, str, float]]:
    """Send the requests at once, each on its own connection: (status, backend, seconds)."""
    results: list[tuple[int, str, float]] = []
    lock = threading.Lock()

    def one(path: str) -> None:
        started = time.monotonic()
        try:
            response, _, conn = get(url, path, timeout=timeout)
            conn.close()
            row = (response.status, response.getheader("X-Backend") or "",
                   time.monotonic() - started)
        except OSError as err:
            row = (0, repr(err), time.monotonic() - started)
        with lock:
            results.append(row)

    threads = [threading.Thread(target=one, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return results


def pool_state(proxy) -> dict:
    return next(p for p in proxy.status()["pools"] if p["name"] == "default")


def start(cluster, capacity: int, *, count: int = 1, delay_ms: float = 300, **sections):
    proxy = cluster.proxy([], heartbeat={"discover": True}, **sections)
    backends = [cluster.backend(f"b{n}", capacity, heartbeat=proxy.heartbeat_address,
                                delay_ms=delay_ms) for n in range(count)]
    proxy.wait_eligible(*(b.address for b in backends))
    wait_until(lambda: all(m["capacity"] == capacity for m in proxy.status()["members"]), 5,
               message="capacities from the heartbeats")
    return proxy, backends


def test_requests_beyond_capacity_wait_then_are_served(cluster):
    proxy, _ = start(cluster, 2, delay_ms=300)
    results = parallel(proxy.url, ["/"] * 6)
    assert Counter(status for status, _, _ in results) == {200: 6}
    # two at a time: the last pair waited for two rounds of 300 ms
    assert max(seconds for _, _, seconds in results) >= 0.8
    pool = pool_state(proxy)
    assert pool["dequeued"] >= 4 and pool["queued"] == 0
    assert proxy.status()["totals"]["queue_wait"]["count"] >= 4


def test_queue_timeout_is_503_with_retry_after(cluster):
    proxy, _ = start(cluster, 1, delay_ms=1500, balance={"queue_timeout": 0.3})
    results = parallel(proxy.url, ["/", "/"])
    assert sorted(status for status, _, _ in results) == [200, 503]
    response, body, conn = get(proxy.url, "/?delay=0")  # the queue is empty again by now
    conn.close()
    assert response.status == 200
    threads = [threading.Thread(target=lambda: get(proxy.url, "/")[2].close())]
    threads[0].start()
    wait_until(lambda: proxy.member(next(iter(_members(proxy))))["in_flight"] == 1, 5,
               message="the slow request to be in flight")
    response, body, conn = get(proxy.url, "/")
    conn.close()
    threads[0].join(10)
    assert response.status == 503 and response.getheader("Retry-After") == "1"
    assert b"queue_timeout" in body
    assert pool_state(proxy)["queue_rejected"]["timeout"] >= 2


def _members(proxy) -> dict[str, dict]:
    return {m["address"]: m for m in proxy.status()["members"]}


def test_queue_timeout_zero_is_apache_503(cluster):
    proxy, _ = start(cluster, 1, delay_ms=1000,
                     balance={"queue_timeout": 0, "weighting": "reported"})
    results = parallel(proxy.url, ["/", "/"])
    assert sorted(status for status, _, _ in results) == [200, 503]
    assert min(seconds for status, _, seconds in results if status == 503) < 0.5


def test_a_client_that_leaves_while_queued_sends_nothing(cluster):
    proxy, (backend,) = start(cluster, 1, delay_ms=1500)
    slow = threading.Thread(target=lambda: get(proxy.url, "/")[2].close())
    slow.start()
    wait_until(lambda: _members(proxy)[backend.address]["in_flight"] == 1, 5,
               message="the slow request to be in flight")
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(b"GET /left HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: pool_state(proxy)["queued"] == 1, 5, message="the second to wait")
    sock.close()
    wait_until(lambda: pool_state(proxy)["queue_rejected"]["gone"] == 1, 5,
               message="the waiter to leave")
    slow.join(10)
    assert pool_state(proxy)["queued"] == 0
    assert _members(proxy)[backend.address]["requests"] == 1  # only the first reached it


def test_a_member_that_dies_while_requests_wait_loses_none(cluster):
    proxy, backends = start(cluster, 1, count=2, delay_ms=600,
                            proxy={"retry": 5}, http={"retries": 3})
    results: list[tuple[int, str, float]] = []
    runner = threading.Thread(target=lambda: results.extend(parallel(proxy.url, ["/"] * 6)))
    runner.start()
    wait_until(lambda: pool_state(proxy)["queued"] >= 2, 5, message="requests to wait")
    backends[0].stop()  # its in-flight request fails; the waiting ones go to the other
    runner.join(30)
    statuses = Counter(status for status, _, _ in results)
    served = Counter(name for status, name, _ in results if status == 200)
    assert statuses[200] >= 5 and set(statuses) <= {200, 502}, results
    assert served["b1"] >= 4


def test_tcp_connections_wait_for_room(cluster):
    proxy = cluster.proxy([], proxy={"mode": "tcp"}, heartbeat={"discover": True})
    backend = cluster.backend("t", 1, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    first = socket.create_connection(("127.0.0.1", proxy.port))
    first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.recv(100).startswith(b"HTTP/1.1 200")
    second = socket.create_connection(("127.0.0.1", proxy.port))
    second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    second.settimeout(0.5)
    try:
        early = second.recv(100)
    except TimeoutError:
        early = b""
    assert early == b""  # waiting: the member's one connection is taken
    assert pool_state(proxy)["queued"] == 1
    first.close()
    second.settimeout(5)
    assert second.recv(100).startswith(b"HTTP/1.1 200")
    second.close()
    assert pool_state(proxy)["dequeued"] == 1


def test_capacity_is_capped_for_absurd_reports(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True}, balance={"max_capacity": 50})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.9", 0))
    port = free_port("127.0.0.9")
    sock.sendto(b"v=1&ready=1000000000&busy=1000000000&port=%d" % port,
                ("127.0.0.1", proxy.heartbeat_port))
    sock.close()
    wait_until(lambda: _members(proxy).get(f"127.0.0.9:{port}", {}).get("capacity") == 50, 5,
               message="the capacity to be capped")


def test_waiters_of_both_workers_are_served_in_arrival_order(cluster):
    """Issue 28: with two workers, requests go to the member in the order they arrived at
    the front, whichever worker holds each (a room made in one worker goes to the other's
    older waiter, which is woken for it), and none waits an idle round longer."""
    proxy, _ = start(cluster, 1, delay_ms=150)
    by_worker: dict[int, list] = {}
    before = {}
    for _ in range(60):   # idle keep-alive connections; which worker holds each
        _, _, conn = get(proxy.url, "/")
        now = {w["pid"]: w["connections"] for w in proxy.status()["workers"]
               if w["state"] == "ready"}
        grown = [pid for pid, n in now.items() if n > before.get(pid, 0)]
        before = now
        if len(grown) == 1:
            by_worker.setdefault(grown[0], []).append(conn)
        if len(by_worker) >= 2 and all(len(c) >= 3 for c in by_worker.values()):
            break
    else:
        pytest.skip(f"the connections did not spread over two workers: {before}")
    first, second = (conns[:3] for conns in list(by_worker.values())[:2])
    order = [first[0], second[0], first[1], second[1], first[2], second[2]]
    done: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one(n: int, conn) -> None:
        response, _, _ = get(proxy.url, "/", conn=conn)
        with lock:
            done.append((n, time.monotonic()))
        assert response.status == 200

    threads = []
    started = time.monotonic()
    for n, conn in enumerate(order):   # the workers alternate
        thread = threading.Thread(target=one, args=(n, conn))
        thread.start()
        threads.append(thread)
        time.sleep(0.04)    # arrivals 40 ms apart, far above the 2 ms yield margin
    for thread in threads:
        thread.join(20)
    assert [n for n, _ in sorted(done, key=lambda d: d[1])] == list(range(6))
    # one place at the member, 150 ms a request: ~0.9 s for the six, not an idle poll round
    # (or a 100 ms margin) more per waiter
    assert max(t for _, t in done) - started < 1.6
    # each of the five places that went from one worker to the other's older waiter was
    # handed over (its worker woken for it) when the request before it ended
    assert pool_state(proxy)["handed_over"] >= 5
    for conns in by_worker.values():
        for conn in conns:
            conn.close()
