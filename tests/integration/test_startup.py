"""No 503s at start or restart: the startup grace and the restored hb.dat (issue 17, part 1).

Requests are fired from the first moment the proxy's port accepts, before any heartbeat can
have arrived: the backends' heartbeats are paused, so only the grace (or the restored table)
can route them."""

from __future__ import annotations

import http.client
import socket
import time
from collections import Counter
from pathlib import Path

from tests.integration.conftest import Cluster
from tests.integration.harness import Proxy, free_port, wait_until

BURST_SECONDS = 1.5  # well inside the 3 s grace (max_age 3)


def fire_from_start(proxy: Proxy, seconds: float = BURST_SECONDS) -> Counter[str]:
    """Connect as soon as the port accepts, then send requests (a new connection each) for
    `seconds`; counts statuses and client-side errors."""
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
            break
        except ConnectionRefusedError:
            assert proxy.alive(), proxy.output()
            assert time.monotonic() < deadline, "the proxy never accepted"
            time.sleep(0.001)  # pacing the probe, not waiting for a state
    results: Counter[str] = Counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            results[str(response.status)] += 1
        except (OSError, http.client.HTTPException) as err:
            results[type(err).__name__] += 1
        finally:
            conn.close()
    return results


def silent_backends(cluster: Cluster, heartbeat_port: int, count: int = 2):
    """Backends that beat to `heartbeat_port` but are paused: no heartbeat will arrive."""
    backends = [cluster.backend(f"b{i}", capacity=10,
                                heartbeat=f"127.0.0.1:{heartbeat_port}") for i in range(count)]
    for backend in backends:
        backend.pause_heartbeats()
    return backends


def start_proxy(cluster: Cluster, members: list[dict], heartbeat_port: int, **heartbeat
                ) -> Proxy:
    home = cluster.tmp / f"proxy{len(cluster.processes)}"
    home.mkdir()
    proxy = Proxy(home, members, heartbeat={"listen": f"127.0.0.1:{heartbeat_port}",
                                            **heartbeat})
    cluster.processes.append(proxy)
    cluster.segments.append(proxy.segment())
    return proxy


def test_requests_from_the_first_millisecond_get_no_503(cluster: Cluster) -> None:
    port = free_port(kind=socket.SOCK_DGRAM)
    backends = silent_backends(cluster, port)
    proxy = start_proxy(cluster, [{"address": b.address} for b in backends], port)
    results = fire_from_start(proxy)
    assert set(results) == {"200"}, results
    assert sum(results.values()) > 20, results
    states = {m["address"]: m["state"] for m in proxy.status()["members"]}
    # The grace did it: no member was ever heard from. (On a loaded machine a member may
    # also have been put "in error" by one refused or reset connect of the burst, whose
    # request went to the other: still no heartbeat, and the client saw a 200.)
    assert "startup grace" in states.values(), states
    assert set(states.values()) <= {"startup grace", "in error"}, states


def test_without_the_grace_the_same_start_answers_503(cluster: Cluster) -> None:
    """The control experiment: it shows the test above measures the grace."""
    port = free_port(kind=socket.SOCK_DGRAM)
    backends = silent_backends(cluster, port)
    proxy = start_proxy(cluster, [{"address": b.address} for b in backends], port,
                        startup_grace=0)
    results = fire_from_start(proxy, 0.5)
    assert results["503"] == sum(results.values()) > 0, results


def test_a_member_down_at_start_fails_over_without_client_errors(cluster: Cluster) -> None:
    port = free_port(kind=socket.SOCK_DGRAM)
    backends = silent_backends(cluster, port)
    down = f"127.0.0.9:{free_port('127.0.0.9')}"  # nothing listens there
    members = [{"address": down}] + [{"address": b.address} for b in backends]
    proxy = start_proxy(cluster, members, port)
    results = fire_from_start(proxy)
    assert set(results) == {"200"}, results
    dead = proxy.member(down)
    assert dead["connect_failures"] >= 1 and dead["requests"] == 0, dead


def test_a_restart_restores_the_table_from_hb_dat(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port(kind=socket.SOCK_DGRAM)
    storage = str(tmp_path / "hb.dat")
    backends = [cluster.backend(f"b{i}", capacity=10 + 10 * i,
                                heartbeat=f"127.0.0.1:{port}") for i in range(2)]
    members = [{"address": b.address} for b in backends]
    first = start_proxy(cluster, members, port, storage=storage, startup_grace=0)
    first.wait_ready()
    first.wait_eligible(*(b.address for b in backends))
    for backend in backends:
        backend.pause_heartbeats()
    assert first.stop() == 0  # a graceful stop writes hb.dat one last time
    # Grace off: only the restored table can route the first requests.
    second = start_proxy(cluster, members, port, storage=storage, startup_grace=0)
    results = fire_from_start(second, 0.5)
    assert set(results) == {"200"}, results
    restored = {m["address"]: (m["state"], m["ready"]) for m in second.status()["members"]}
    assert restored == {backends[0].address: ("eligible", 10),
                        backends[1].address: ("eligible", 20)}, restored
    assert "restored 2 members" in second.output()
    # Restored state ages like any other: with no heartbeat the members go stale.
    wait_until(lambda: all(m["state"] == "stale" for m in second.status()["members"]), 10,
               message="restored members to go stale without heartbeats")
