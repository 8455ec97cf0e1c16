"""Active health checks with real processes: `hbfork run` checking real `hbfork backend`s
whose /health answers as a file says (--health-file), while their heartbeats stay healthy.
Passive outlier detection is off, so only the checks take members out."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.integration.harness import HBFORK, spread, wait_until

INTERVAL, FAILS, PASSES, TIMEOUT = 0.5, 2, 2, 1.0
CHECKS = {"hcmethod": "get", "hcuri": "/health", "hcinterval": INTERVAL, "hcfails": FAILS,
          "hcpasses": PASSES, "hctimeout": TIMEOUT}


def start(cluster, checks=None, healthy=("a", "b")):
    """Healthy members `healthy` and a member "bad" whose /health we steer, all discovered."""
    proxy = cluster.proxy([], heartbeat={"discover": True}, outlier={"enabled": False},
                          pool=[{"name": "default", "discover": True, **(checks or CHECKS)}])
    health = cluster.tmp / "bad.health"
    good = [cluster.backend(name, 10, heartbeat=proxy.heartbeat_address,
                            extra=("--health-file", str(cluster.tmp / f"{name}.health")))
            for name in healthy]
    bad = cluster.backend("bad", 10, heartbeat=proxy.heartbeat_address,
                          extra=("--health-file", str(health)))
    proxy.wait_eligible(*(b.address for b in (*good, bad)))
    wait_until(lambda: proxy.member(bad.address)["check"] == "passing", 5,
               message="a first passed check")
    return proxy, good, bad, health


def wait_state(proxy, address: str, state: str, timeout: float = 10) -> float:
    """Seconds until the member's state is `state`."""
    began = time.monotonic()
    wait_until(lambda: proxy.member(address)["state"] == state, timeout,
               message=f"{address} to be {state}")
    return time.monotonic() - began


def test_a_member_whose_health_url_fails_is_out_and_comes_back(cluster):
    proxy, _, bad, health = start(cluster)
    health.write_text("500")
    out = took = wait_state(proxy, bad.address, "check failed")
    # hcfails checks, one interval apart, the first within one interval of the failure.
    assert took <= FAILS * INTERVAL + 1.0, took
    member = proxy.member(bad.address)
    assert member["heartbeat_age_seconds"] < 2  # its heartbeat is fresh all along
    assert member["check"] == "failing" and member["check_fails"] >= FAILS
    assert "answered 500" in member["why"] and member["check_result"] == "answered 500"
    counts = spread(proxy.url, 200)
    assert set(counts) == {"a", "b"}, counts  # its traffic goes to the others
    assert "fails its active check (GET /health: answered 500" in proxy.output()
    health.unlink()
    took = wait_state(proxy, bad.address, "eligible")
    assert took <= PASSES * INTERVAL + 1.0, took
    assert proxy.member(bad.address)["check_passes"] >= PASSES
    wait_until(lambda: "bad" in spread(proxy.url, 200), 15, message="traffic back to bad")
    assert "passes its active check again" in proxy.output()
    print(f"measured: out {out:.2f}s after its /health began to fail, back {took:.2f}s "
          "after it recovered")


def test_a_hanging_check_times_out_and_the_master_does_not_stall(cluster):
    proxy, good, bad, health = start(cluster)
    health.write_text("hang")
    worst_age = 0.0
    began = time.monotonic()
    while proxy.member(bad.address)["state"] != "check failed":
        assert time.monotonic() - began < 10, "the hanging member never went out"
        a = proxy.member(good[0].address)
        # Heartbeats are processed while checks hang: the other member stays fresh.
        assert a["eligible"], a
        worst_age = max(worst_age, a["heartbeat_age_seconds"])
        time.sleep(0.05)
    took = time.monotonic() - began
    assert proxy.member(bad.address)["check_result"] == "timed out"
    assert worst_age < 1.0, worst_age  # backends beat every 0.2 s
    # Each check lasts hctimeout; hcfails of them in a row, one interval apart at best.
    assert took <= FAILS * max(INTERVAL, TIMEOUT) + INTERVAL + 1.0, took
    assert set(spread(proxy.url, 100)) == {"a", "b"}
    assert "Traceback" not in proxy.output()


@pytest.mark.parametrize("expect, state", [(None, "eligible"), ([200], "check failed")],
                         ids=["2xx-3xx pass", "only 200 passes"])
def test_a_redirect_counts_as_the_expected_statuses_say(cluster, expect, state):
    checks = {**CHECKS, **({"hcexpect_status": expect} if expect else {})}
    proxy, _, bad, health = start(cluster, checks)
    health.write_text("302")
    wait_until(lambda: proxy.member(bad.address)["check_result"].endswith(
        "(302)" if state == "eligible" else "answered 302"), 5, message="a check of the 302")
    time.sleep(FAILS * INTERVAL + 0.3)
    assert proxy.member(bad.address)["state"] == state


def test_a_body_without_the_expected_text_fails(cluster):
    proxy, _, bad, health = start(cluster, {**CHECKS, "hcexpect_body": "OK"})
    health.write_text("203")  # a 2xx whose body is "FAIL"
    wait_state(proxy, bad.address, "check failed")
    assert "without the expected text" in proxy.member(bad.address)["why"]


def test_tcp_checks_pass_while_the_member_listens(cluster):
    proxy, _, bad, _ = start(cluster, {"hcmethod": "tcp", "hcinterval": INTERVAL})
    wait_until(lambda: proxy.member(bad.address)["check_result"] == "passed", 5,
               message="a TCP check")
    assert proxy.member(bad.address)["state"] == "eligible"


def test_a_check_config_error_names_file_key_and_problem(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[proxy]\nlisten = ["127.0.0.1:1"]\n[heartbeat]\ndiscover = true\n'
                      '[[pool]]\nname = "default"\ndiscover = true\nhcmethod = "head"\n'
                      'hcexpect_body = "OK"\n')
    result = subprocess.run([*HBFORK, "check", "-c", str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert str(config) in result.stderr and "[[pool]] 'default' hcexpect_body" in \
        result.stderr and 'needs hcmethod = "get"' in result.stderr
    assert "Traceback" not in result.stderr
