"""Routing follows heartbeats: real `hbfork run` and real `hbfork backend` processes."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.harness import free_port, get, spread, wait_until

SHARE_TOLERANCE = 0.05  # 2,000 picks: one standard deviation is at most 1.1 points


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {name: count / total for name, count in counts.items()}


@pytest.mark.parametrize("mode", ["http", "tcp"])
def test_shares_follow_ready_counts(cluster, mode):
    proxy = cluster.proxy([], proxy={"mode": mode}, heartbeat={"discover": True})
    backends = [cluster.backend(name, capacity, heartbeat=proxy.heartbeat_address)
                for name, capacity in (("a", 10), ("b", 30), ("c", 60))]
    proxy.wait_eligible(*(b.address for b in backends))
    counts = spread(proxy.url, 2000, keep_alive=(mode == "http"))
    shares = _shares(counts)
    assert set(counts) == {"a", "b", "c"}, counts
    for name, expected in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        assert abs(shares[name] - expected) < SHARE_TOLERANCE, (name, shares)


def test_each_keepalive_request_is_balanced(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backends = [cluster.backend(n, 10, heartbeat=proxy.heartbeat_address) for n in "ab"]
    proxy.wait_eligible(*(b.address for b in backends))
    _, _, conn = get(proxy.url)
    seen = set()
    for _ in range(100):
        response, _, conn = get(proxy.url, conn=conn)
        seen.add(response.getheader("X-Backend"))
    sock = conn.sock
    conn.close()
    assert seen == {"a", "b"}  # one connection, both members: per-request picks
    assert sock is None or sock.fileno() == -1


def test_member_that_stops_beating_gets_nothing_after_max_age(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True, "max_age": 1.5})
    quiet = cluster.backend("quiet", 50, heartbeat=proxy.heartbeat_address)
    steady = cluster.backend("steady", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(quiet.address, steady.address)
    quiet.pause_heartbeats()
    stopped_at = time.monotonic()
    wait_until(lambda: proxy.member(quiet.address)["state"] == "stale", 5,
               message="the quiet member to go stale")
    assert time.monotonic() - stopped_at >= 1.2  # not before max_age (minus a beat)
    counts = spread(proxy.url, 200)
    assert counts == {"steady": 200}
    quiet.resume_heartbeats()
    proxy.wait_eligible(quiet.address)
    assert "quiet" in spread(proxy.url, 200)


def test_new_member_gets_traffic_after_its_first_heartbeat(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    first = cluster.backend("first", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(first.address)
    assert spread(proxy.url, 50) == {"first": 50}
    late = cluster.backend("late", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(late.address)
    assert "late" in spread(proxy.url, 200)


def test_static_members_on_one_ip_are_told_apart_by_port(cluster):
    # Two backends on one IP: port= in the heartbeat tells them apart (Apache cannot).
    ip = "127.0.0.20"
    ports = [free_port(ip), free_port(ip)]
    proxy = cluster.proxy([{"address": f"{ip}:{port}"} for port in ports])
    one = cluster.backend("one", 10, ip=ip, port=ports[0], heartbeat=proxy.heartbeat_address)
    three = cluster.backend("three", 30, ip=ip, port=ports[1],
                            heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(one.address, three.address)
    assert proxy.member(one.address)["ready"] == 10
    assert proxy.member(three.address)["ready"] == 30
    shares = _shares(spread(proxy.url, 1000))
    assert abs(shares["three"] - 0.75) < SHARE_TOLERANCE, shares


def test_unknown_sender_is_rejected_without_discovery(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.21:9"}])
    stranger = cluster.backend("stranger", 10, heartbeat=proxy.heartbeat_address)
    wait_until(lambda: proxy.status()["heartbeats"]["unknown_source"] >= 2, 5,
               message="the stranger's heartbeats to be counted as unknown")
    assert all(m["address"] != stranger.address for m in proxy.status()["members"])


def test_ready_zero_gets_nothing(cluster):
    proxy = cluster.proxy([], heartbeat={"discover": True})
    idle = cluster.backend("full", 0, heartbeat=proxy.heartbeat_address)
    busy = cluster.backend("open", 5, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(busy.address)
    wait_until(lambda: proxy.member(idle.address)["state"] == "ready 0", 5,
               message="the full member to report ready 0")
    assert spread(proxy.url, 300) == {"open": 300}


def test_no_eligible_member_is_503_with_retry_after(cluster):
    # Grace off: during the startup grace a member never heard from is tried (502 here).
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}], heartbeat={"startup_grace": 0})
    response, body, conn = get(proxy.url)
    conn.close()
    assert response.status == 503
    assert response.getheader("Retry-After") == "1"
    assert b"no member" in body


def test_tcp_mode_without_member_closes_and_counts(cluster):
    proxy = cluster.proxy([{"address": "127.0.0.9:9"}], proxy={"mode": "tcp"},
                          heartbeat={"startup_grace": 0})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert sock.recv(100) == b""  # closed, nothing relayed
        except ConnectionResetError:
            pass  # closed with our bytes unread: the kernel answers with a reset
    wait_until(lambda: proxy.status()["totals"]["no_member"] >= 1, 5,
               message="the refused connection to be counted")


@pytest.mark.parametrize("mode", ["http", "tcp"])
def test_killed_backend_fails_over_without_client_errors(cluster, mode):
    proxy = cluster.proxy([], proxy={"mode": mode, "retry": 30},
                          heartbeat={"discover": True, "max_age": 30})
    alive = cluster.backend("alive", 10, heartbeat=proxy.heartbeat_address)
    doomed = cluster.backend("doomed", 90, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(alive.address, doomed.address)
    doomed.stop()  # its last heartbeat stays fresh for max_age: only connects can tell
    counts = spread(proxy.url, 200, keep_alive=(mode == "http"))
    assert counts == {"alive": 200}
    member = proxy.member(doomed.address)
    assert member["state"] == "in error"
    assert member["connect_failures"] >= 1
    assert proxy.status()["totals"]["retries"] >= 1


def test_ipv6_listener(cluster):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")
    port = free_port("::1")
    proxy = cluster.proxy([], proxy={"listen": [f"[::1]:{port}"]},
                          heartbeat={"discover": True})
    backend = cluster.backend("six", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    response, body, conn = get(f"http://[::1]:{port}")
    conn.close()
    assert response.status == 200 and body == b"six\n"
