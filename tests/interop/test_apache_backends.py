"""Real Apache backends (mod_heartbeat, multicast) -> an hbfork front, in the namespace lab.

Three Apache httpd instances, one per backend namespace, each with a different number of
threads so each reports a different ready count; hbfork runs in the front namespace. The tests
run in order and share these processes: the last one stops a backend.
"""

from __future__ import annotations

import time

import pytest
from labkit import BACKEND_CONF, GROUP, Hbfork, Launcher, hbfork_config, wait_for

from hbfork.core.members import ELIGIBLE, STALE

pytestmark = [pytest.mark.netns, pytest.mark.apache]

THREADS = {"b1": 3, "b2": 4, "b3": 5}   # an idle backend reports ready=threads, busy=0
MAX_AGE = 3.0
PROXY_PORT = 8080


@pytest.fixture(scope="module")
def backends(apache: None, module_launcher: Launcher) -> dict[str, str]:
    """Start the Apache backends; {host name: its address}."""
    lab = module_launcher.lab
    addresses = {}
    for host, threads in THREADS.items():
        address = lab.host(host).address
        module_launcher.apache(host, f"apache-{host}", BACKEND_CONF, HB_ADDR=address,
                               HB_GROUP=GROUP, HB_THREADS=str(threads))
        addresses[host] = address
    return addresses


@pytest.fixture(scope="module")
def front(backends: dict[str, str], module_launcher: Launcher) -> Hbfork:
    listen = f"{module_launcher.lab.host('front').address}:{PROXY_PORT}"
    members = [f"{address}:80" for address in backends.values()]
    return module_launcher.hbfork(
        "front", "hbfork-front",
        lambda directory: hbfork_config(directory, listen, members, max_age=MAX_AGE))


def eligible(front: Hbfork, backends: dict[str, str]) -> dict[str, tuple[int, int]] | None:
    """{ip: (ready, busy)} once every backend is eligible in hbfork's table, else None."""
    members = front.members()
    records = [members.get(f"{address}:80") for address in backends.values()]
    if all(r is not None and r.reason == ELIGIBLE for r in records):
        return {str(r.ip): (r.ready, r.busy) for r in records}
    return None


def test_table_shows_what_apache_reports(front: Hbfork, backends: dict[str, str],
                                         module_launcher: Launcher) -> None:
    wait_for(lambda: eligible(front, backends), 10,
             lambda: f"not all backends eligible: {front.members()}\n{front.output()}")
    # What Apache actually sends, seen by a second listener next to hbfork on the front.
    heard = module_launcher.client("front", "sniff", GROUP, "2.5")
    for host, address in backends.items():
        assert address in heard, f"no heartbeat from {host} ({address}) reached the front"
        last = heard[address]["payloads"][-1]
        assert last == f"v=1&ready={THREADS[host]}&busy=0", \
            f"{host} sent {last!r}: mod_heartbeat's format or the idle count changed"
    # hbfork's table: each backend's IP with the ready/busy Apache reports (all idle).
    table = eligible(front, backends)
    assert table == {address: (THREADS[host], 0) for host, address in backends.items()}
    counters = front.heartbeat_counters()
    assert counters["accepted"] >= 3
    assert counters["malformed"] == 0 and counters["unknown_source"] == 0


def test_traffic_reaches_every_apache(front: Hbfork, backends: dict[str, str],
                                      module_launcher: Launcher) -> None:
    wait_for(lambda: eligible(front, backends), 10, "backends not eligible")
    url = f"http://{module_launcher.lab.host('front').address}:{PROXY_PORT}/who.txt"
    # One connection per request: in tcp mode hbfork balances per connection.
    result = module_launcher.client("front", "fetch", url, "90")
    assert result["errors"] == {} and result["statuses"] == {"200": 90}, result
    # Weights 3:4:5 over 90 picks: each backend is missed with probability < 1e-10.
    assert set(result["backends"]) == {f"apache-{host}" for host in backends}, result


def test_stopped_apache_leaves_within_max_age(front: Hbfork, backends: dict[str, str],
                                              module_launcher: Launcher) -> None:
    wait_for(lambda: eligible(front, backends), 10, "backends not eligible")
    victim = next(s for s in module_launcher.services if s.name == "apache-b3")
    gone = f"{backends['b3']}:80"
    victim.stop()
    stopped_at = time.monotonic()
    # No traffic meanwhile: the member must leave because its heartbeats stopped, not because
    # a connect failed.
    record = wait_for(lambda: (r := front.members()[gone]).reason != ELIGIBLE and r,
                      MAX_AGE + 3, lambda: f"{gone} still eligible: {front.members()[gone]}")
    elapsed = time.monotonic() - stopped_at
    assert record.reason == STALE, record
    assert elapsed <= MAX_AGE + 0.5, f"{gone} left after {elapsed:.2f}s (max_age {MAX_AGE}s)"
    url = f"http://{module_launcher.lab.host('front').address}:{PROXY_PORT}/who.txt"
    result = module_launcher.client("front", "fetch", url, "30")
    assert result["errors"] == {} and result["statuses"] == {"200": 30}, result
    assert set(result["backends"]) == {"apache-b1", "apache-b2"}, result
    assert front.members()[gone].errors == 0, "a request was sent to the stopped backend"
