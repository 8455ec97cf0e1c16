"""Gray failures: members whose heartbeats say "idle" while their application fails. Real
`hbfork run` and real `hbfork backend` processes; the failing backend uses --fault, which
keeps its heartbeats healthy (ready = capacity) whatever its answers are."""

from __future__ import annotations

import http.client
import time
from collections import Counter

import pytest

from tests.integration.harness import get, spread, wait_until

FAST_EJECTION = {"eject_time": 30, "consecutive_5xx": 5, "consecutive_gateway_failures": 5}


def start(cluster, fault: str, *, outlier=None, pool=None, http=None, fault_args=(),
          healthy=("a", "b")):
    """Healthy members `healthy` and a member "bad" failing with `fault`, all discovered."""
    proxy = cluster.proxy([], heartbeat={"discover": True}, outlier=outlier or FAST_EJECTION,
                          http=http or {}, pool=[{"name": "default", "discover": True,
                                                  **(pool or {})}])
    good = [cluster.backend(name, 10, heartbeat=proxy.heartbeat_address) for name in healthy]
    bad = cluster.backend("bad", 10, heartbeat=proxy.heartbeat_address,
                          extra=("--fault", fault, *fault_args))
    proxy.wait_eligible(*(b.address for b in (*good, bad)))
    return proxy, good, bad


def outcomes(proxy, requests: int, method: str = "GET", body: bytes | None = None,
             fresh: bool = False) -> Counter[str]:
    """X-Backend of 200s, "HTTP nnn" of the rest, over sequential requests."""
    counts: Counter[str] = Counter()
    conn = None
    for _ in range(requests):
        try:
            response, _, conn = get(proxy.url, conn=None if fresh else conn, method=method,
                                    body=body)
        except (http.client.HTTPException, OSError):
            counts["connection failed"] += 1
            conn = None
            continue
        counts[response.getheader("X-Backend") if response.status == 200
               else f"HTTP {response.status}"] += 1
        if fresh or response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
    return counts


def wait_ejected(proxy, address: str, cause: str) -> dict:
    wait_until(lambda: proxy.member(address)["state"] == "ejected", 10,
               message=f"{address} to be ejected")
    member = proxy.member(address)
    assert member["eject_reason"] == cause, member
    assert cause in member["why"] and member["eject_seconds_left"] > 0
    return member


@pytest.mark.parametrize("fresh", [False, True], ids=["keep-alive", "new connections"])
def test_a_member_answering_500_is_ejected(cluster, fresh):
    proxy, _, bad = start(cluster, "status")
    counts = outcomes(proxy, 400, fresh=fresh)
    wait_ejected(proxy, bad.address, "consecutive 5xx")
    # Each worker (2) sees at most consecutive_5xx of them before asking for the ejection.
    assert counts["HTTP 500"] <= 2 * FAST_EJECTION["consecutive_5xx"], counts
    after = outcomes(proxy, 300, fresh=fresh)
    assert set(after) <= {"a", "b"}, after  # nothing reaches the ejected member
    assert "ejected for" in proxy.output() and "consecutive 5xx" in proxy.output()


def test_retry_on_a_status_spares_the_client_every_500(cluster):
    proxy, _, bad = start(cluster, "status",
                          pool={"retry_on": ["reset", "timeout", "500-504"]})
    counts = outcomes(proxy, 400)
    assert set(counts) <= {"a", "b"}, counts
    wait_ejected(proxy, bad.address, "consecutive 5xx")
    assert proxy.status()["totals"]["retries"] >= 1


def test_a_fraction_of_502s_trips_the_failure_rate(cluster):
    outlier = {**FAST_EJECTION, "consecutive_5xx": 0, "failure_rate": 0.2,
               "failure_rate_min_requests": 20}
    proxy, _, bad = start(cluster, "status", outlier=outlier,
                          fault_args=("--fault-rate", "0.4", "--fault-status", "502"))
    outcomes(proxy, 400)
    wait_ejected(proxy, bad.address, "failure rate")
    assert set(outcomes(proxy, 200)) <= {"a", "b"}


def test_a_member_that_never_answers_costs_the_client_nothing(cluster):
    proxy, _, bad = start(cluster, "hang", http={"response_timeout": 0.5})
    counts = outcomes(proxy, 200)
    assert set(counts) <= {"a", "b"}, counts  # each timed-out GET went to another member
    wait_ejected(proxy, bad.address, "consecutive gateway failures")
    assert proxy.status()["totals"]["upstream_timeouts"] >= 1


def test_a_member_that_resets_costs_the_client_nothing(cluster):
    proxy, _, bad = start(cluster, "reset")
    counts = outcomes(proxy, 300)
    assert set(counts) <= {"a", "b"}, counts
    wait_ejected(proxy, bad.address, "consecutive gateway failures")


def test_a_post_is_never_replayed(cluster):
    """A request with a body may have had its effect: the client gets the 502."""
    proxy, _, bad = start(cluster, "reset")
    counts = outcomes(proxy, 200, method="POST", body=b"x" * 100)
    assert counts["HTTP 502"] >= 1, counts
    assert set(counts) <= {"a", "b", "HTTP 502"}, counts
    wait_ejected(proxy, bad.address, "consecutive gateway failures")


def test_panic_a_pool_of_failing_members_is_still_served(cluster):
    """Every member ejected: they serve anyway (an answer beats a 503 for everyone)."""
    outlier = {**FAST_EJECTION, "max_ejected_share": 1.0}
    proxy, _, bad = start(cluster, "status", outlier=outlier, healthy=())
    outcomes(proxy, 50)
    wait_ejected(proxy, bad.address, "consecutive 5xx")
    counts = outcomes(proxy, 50)
    assert counts == {"HTTP 500": 50}, counts  # the member's own answers, not 503s


def test_the_cap_keeps_a_share_of_the_pool_in(cluster):
    """Two of three members failing, max_ejected_share 0.5: only one may be out."""
    proxy = cluster.proxy([], heartbeat={"discover": True}, outlier=FAST_EJECTION)
    cluster.backend("a", 10, heartbeat=proxy.heartbeat_address)
    bad = [cluster.backend(name, 10, heartbeat=proxy.heartbeat_address,
                           extra=("--fault", "status")) for name in ("x", "y")]
    proxy.wait_eligible(*(b.address for b in bad))
    outcomes(proxy, 300)
    wait_until(lambda: "stays in" in proxy.output(), 10, message="a refused ejection")
    states = sorted(proxy.member(b.address)["state"] for b in bad)
    assert states == ["ejected", "eligible"], states


def test_an_ejected_member_comes_back_when_its_time_is_up(cluster):
    outlier = {**FAST_EJECTION, "eject_time": 1, "slow_start": 0}
    proxy, _, bad = start(cluster, "status", outlier=outlier)
    outcomes(proxy, 200)
    wait_ejected(proxy, bad.address, "consecutive 5xx")
    started = time.monotonic()
    wait_until(lambda: proxy.member(bad.address)["state"] == "eligible", 10,
               message="the member to come back")
    assert time.monotonic() - started < 5
    assert proxy.member(bad.address)["ejections"] == 1


def test_ejections_are_in_the_metrics(cluster):
    proxy, _, bad = start(cluster, "status")
    outcomes(proxy, 200)
    wait_ejected(proxy, bad.address, "consecutive 5xx")
    conn = http.client.HTTPConnection("127.0.0.1", proxy.status_port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    assert f'hbfork_member_ejected{{member="{bad.address}"}} 1' in text
    assert "hbfork_member_ejections_total{" in text


def test_detection_off_keeps_apaches_behaviour(cluster):
    proxy, _, bad = start(cluster, "status", outlier={"enabled": False})
    counts = outcomes(proxy, 300)
    assert counts["HTTP 500"] > 20, counts  # Apache's lbmethod_heartbeat sends it its share
    assert proxy.member(bad.address)["state"] == "eligible"
    assert spread(proxy.url, 1)  # still serving


def test_every_member_failing_at_once_is_no_ejection_storm(cluster):
    """A bug in every member (or in the front): the cap keeps most of the pool in, and
    clients get the members' own answers, as from Apache, not 503s for everything."""
    proxy = cluster.proxy([], heartbeat={"discover": True}, outlier=FAST_EJECTION)
    bad = [cluster.backend(name, 10, heartbeat=proxy.heartbeat_address,
                           extra=("--fault", "status")) for name in ("x", "y", "z")]
    proxy.wait_eligible(*(b.address for b in bad))
    counts = outcomes(proxy, 300)
    assert counts == {"HTTP 500": 300}, counts
    states = Counter(proxy.member(b.address)["state"] for b in bad)
    assert states["ejected"] <= 1, states  # max_ejected_share 0.5 of three
