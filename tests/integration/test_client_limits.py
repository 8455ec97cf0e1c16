"""Per-client limits ([limits]) with real hbfork processes: counted across all workers."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
import time
from typing import Any

import pytest

from tests.integration.harness import get, wait_until


def start(cluster: Any, workers: int = 4, fast_path: bool = True, mode: str = "http",
          **limits: Any) -> Any:
    proxy = cluster.proxy([], heartbeat={"discover": True}, limits=limits,
                          proxy={"workers": workers, "mode": mode},
                          http={"fast_path": fast_path})
    backend = cluster.backend("b1", 200, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    return proxy


def connection(proxy: Any, source: str = "127.0.0.1") -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10,
                                      source_address=(source, 0))


def hammer(proxy: Any, seconds: float, threads: int = 8,
           headers: dict[str, str] | None = None) -> list[tuple[float, float, int, str]]:
    """Requests as fast as `threads` clients go, for `seconds`, each on a new connection
    every 5 (so that every worker gets some): (sent at, answered at, status, Retry-After)."""
    rows: list[tuple[float, float, int, str]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        conn = connection(proxy)
        mine = []
        while (sent := time.monotonic()) < stop_at:
            if len(mine) % 5 == 4:
                conn.close()
                conn = connection(proxy)
            response, _, conn = get(proxy.url, conn=conn, headers=headers)
            mine.append((sent, time.monotonic(), response.status,
                         response.getheader("Retry-After") or ""))
        conn.close()
        with lock:
            rows.extend(mine)

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(seconds + 30)
    return rows


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "general-path"])
def test_a_rate_of_n_per_second_holds_within_ten_percent_with_four_workers(
        cluster: Any, fast_path: bool) -> None:
    rate, burst = 40, 10
    proxy = start(cluster, fast_path=fast_path, requests_per_second=rate, burst=burst)
    before = {w["pid"]: w["requests"] for w in proxy.workers()}
    rows = hammer(proxy, 3.0)
    statuses = {status for _, _, status, _ in rows}
    assert statuses == {200, 429}, statuses
    assert all(retry == "1" for _, _, status, retry in rows if status == 429)
    # The window the proxy saw: from the first request sent to the last one answered.
    window = max(answered for _, answered, _, _ in rows) - min(sent for sent, _, _, _ in rows)
    allowed = sum(1 for _, _, status, _ in rows if status == 200)
    expected = burst + rate * window
    assert abs(allowed - expected) <= 0.1 * expected, (allowed, expected, len(rows))
    assert len(rows) > 3 * expected  # the client asked for far more than the limit
    # Every worker served some of them (a per-worker count would have let 4x through).
    served = [w for w in proxy.workers() if w["requests"] > before.get(w["pid"], 0)]
    assert len(served) >= 3, proxy.workers()
    totals = proxy.status()["totals"]
    assert totals["limited_requests"] == len(rows) - allowed
    assert totals["responses"]["4xx"] >= len(rows) - allowed
    assert (totals["fast_path"] >= allowed // 2) if fast_path else totals["fast_path"] == 0
    metrics = get(f"http://127.0.0.1:{proxy.status_port}", "/metrics")[1].decode()
    assert f"hbfork_limited_requests_total {len(rows) - allowed}" in metrics
    page = get(f"http://127.0.0.1:{proxy.status_port}", "/")[1].decode()
    assert f"<b>{len(rows) - allowed}</b> limited" in page


def test_header_key_counts_each_key_apart(cluster: Any) -> None:
    proxy = start(cluster, workers=2, requests_per_second=0.01, burst=2,
                  key="header:X-Api-Key")
    conn = connection(proxy)
    seen = []
    for key in ("alpha", "alpha", "alpha", "beta", "beta", "beta", "alpha"):
        response, _, conn = get(proxy.url, conn=conn, headers={"X-Api-Key": key})
        seen.append(response.status)
    assert seen == [200, 200, 429, 200, 200, 429, 429]
    # Without the header, a request is counted under its address.
    statuses = [get(proxy.url, conn=conn)[0].status for _ in range(3)]
    assert statuses == [200, 200, 429]
    conn.close()


def test_exempt_cidr_is_never_limited(cluster: Any) -> None:
    proxy = start(cluster, workers=2, requests_per_second=0.01, burst=1,
                  exempt=["127.0.0.0/24"])
    conn = connection(proxy, "127.0.0.1")
    assert [get(proxy.url, conn=conn)[0].status for _ in range(20)] == [200] * 20
    conn.close()
    other = connection(proxy, "127.0.3.9")  # outside the exempt network
    assert [get(proxy.url, conn=other)[0].status for _ in range(3)] == [200, 429, 429]
    other.close()


def answered(sock: socket.socket) -> bytes:
    """What the proxy says to one request on `sock` (b"": closed without a word)."""
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    except OSError:
        return b""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def raw(proxy: Any, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10,
                                    source_address=(source, 0))
    return sock


@pytest.mark.parametrize("mode", ["http", "tcp"])
def test_connection_limit_holds_across_workers(cluster: Any, mode: str) -> None:
    proxy = start(cluster, workers=4, mode=mode, connections_per_client=3)
    held = [raw(proxy) for _ in range(3)]
    for sock in held:  # each one served (so open, on whichever worker took it)
        assert answered(sock).startswith(b"HTTP/1.1 200")
    wait_until(lambda: proxy.status()["totals"]["connections"] == 3, 5,
               message="three open connections")
    for _ in range(4):  # each lands on some worker: every one of them knows the count
        extra = raw(proxy)
        reply = answered(extra)
        extra.close()
        if mode == "http":
            assert reply.startswith(b"HTTP/1.1 429") or reply == b"", reply
        else:
            assert reply == b"", reply
    refused = proxy.status()["totals"]["limited_connections"]
    assert refused == 4
    other = raw(proxy, "127.0.4.4")  # another client is not affected
    assert answered(other).startswith(b"HTTP/1.1 200")
    other.close()
    held.pop().close()

    def admitted() -> bool:
        sock = raw(proxy)
        try:
            return answered(sock).startswith(b"HTTP/1.1 200")
        finally:
            sock.close()

    wait_until(admitted, 5, message="a connection once one closed")
    for sock in held:
        sock.close()


def test_tcp_mode_rate_closes_new_connections(cluster: Any) -> None:
    proxy = start(cluster, workers=2, mode="tcp", requests_per_second=0.01, burst=2)
    replies = []
    for _ in range(4):
        sock = raw(proxy)
        replies.append(answered(sock))
        sock.close()
    assert [r.startswith(b"HTTP/1.1 200") for r in replies] == [True, True, False, False]
    assert replies[2:] == [b"", b""]
    assert proxy.status()["totals"]["limited_requests"] == 2


def test_a_reload_turns_limits_on_and_an_invalid_one_keeps_them(cluster: Any) -> None:
    proxy = start(cluster, workers=2)
    conn = connection(proxy)
    assert [get(proxy.url, conn=conn)[0].status for _ in range(5)] == [200] * 5
    conn.close()
    proxy.config["limits"] = {"requests_per_second": 0.01, "burst": 2}
    proxy.write_config()
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: proxy.status()["master"]["config_generation"] == 2, 10,
               message="the reload")
    wait_until(lambda: all(w["generation"] == 2 for w in proxy.workers()), 10,
               message="the new generation's workers alone")
    conn = connection(proxy)
    assert [get(proxy.url, conn=conn)[0].status for _ in range(3)] == [200, 200, 429]
    conn.close()
    proxy.config["limits"] = {"requests_per_second": -5}
    proxy.write_config()
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: "[limits] requests_per_second" in proxy.output(), 10,
               message="the refused reload's error")
    assert proxy.status()["master"]["config_generation"] == 2
    conn = connection(proxy)
    assert get(proxy.url, conn=conn)[0].status == 429  # the old limits, same shared counts
    conn.close()


def test_connection_limit_on_a_tls_listener(cluster: Any, tmp_path: Any) -> None:
    """Counted from accept, through the handshake, to the session's end; a handshake that
    fails is uncounted too."""
    from tests.integration.test_tls import TlsFront

    front = TlsFront(cluster, tmp_path, limits={"connections_per_client": 2},
                     proxy={"workers": 2})

    def served() -> bool:
        conn = front.connection()
        try:
            conn.request("GET", "/")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    first = front.connection()
    first.request("GET", "/")
    assert first.getresponse().status == 200
    silent = socket.create_connection(("127.0.0.1", front.port), timeout=10)  # no handshake
    wait_until(lambda: front.proxy.status()["totals"]["connections"] >= 2, 5,
               message="both connections open")
    assert not served()  # the third: closed before its handshake
    assert front.proxy.status()["totals"]["limited_connections"] >= 1
    silent.close()  # its handshake fails ("closed"): uncounted within a second
    wait_until(served, 5, message="a connection once the silent one left")
    first.close()


def test_a_killed_workers_connections_are_uncounted(cluster: Any) -> None:
    proxy = start(cluster, workers=1, connections_per_client=2)
    held = [raw(proxy), raw(proxy)]
    for sock in held:
        assert answered(sock).startswith(b"HTTP/1.1 200")
    extra = raw(proxy)
    assert not answered(extra).startswith(b"HTTP/1.1 200")
    extra.close()
    (victim,) = [w["pid"] for w in proxy.workers()]
    os.kill(victim, signal.SIGKILL)  # it cannot uncount its two connections itself
    for sock in held:
        sock.close()
    wait_until(lambda: [w["pid"] for w in proxy.workers() if w["state"] == "ready"]
               not in ([], [victim]), 15, message="a new worker")
    fresh = [raw(proxy), raw(proxy)]
    assert all(answered(sock).startswith(b"HTTP/1.1 200") for sock in fresh)
    for sock in fresh:
        sock.close()


def test_more_clients_than_slots_evict_and_are_counted(cluster: Any) -> None:
    proxy = start(cluster, workers=2, requests_per_second=100, burst=100,
                  key="header:X-Api-Key", slots=1024)
    conn = connection(proxy)
    statuses = set()
    for n in range(3000):
        response, _, conn = get(proxy.url, conn=conn, headers={"X-Api-Key": f"k{n}"})
        statuses.add(response.status)
    conn.close()
    assert statuses == {200}
    evictions = proxy.status()["totals"]["limit_evictions"]
    assert 3000 - 1024 <= evictions < 3000
    metrics = get(f"http://127.0.0.1:{proxy.status_port}", "/metrics")[1].decode()
    assert f"hbfork_limit_evictions_total {evictions}" in metrics
