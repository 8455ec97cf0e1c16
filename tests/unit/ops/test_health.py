"""The health verdict (hbfork.ops.health): a snapshot in, healthy or a reason out."""

from __future__ import annotations

from typing import Any

import pytest

from hbfork.ops.health import WORKER_TICK_LIMIT, http_response, verdict


def snapshot(members: list[dict[str, Any]] | None = None, workers: list[dict[str, Any]] | None
             = None, **master: Any) -> dict[str, Any]:
    return {
        "master": {"heartbeat_silence_seconds": 0.5, "front_draining": False, **master},
        "workers": ([{"state": "ready", "tick_age_seconds": 0.2, "pid": 101}]
                    if workers is None else workers),
        "members": [member(5), member(0)] if members is None else members,
    }


def member(weight: int) -> dict[str, Any]:
    return {"weight": weight}


def test_healthy_says_what_it_counted() -> None:
    result = verdict(snapshot(), max_age=3)
    assert result.ok
    assert result.line == "healthy: 1 workers, 1 of 2 members usable"


@pytest.mark.parametrize(("data", "alive", "reason"), [
    (snapshot(), False, "the master is not running"),
    (snapshot(front_draining=True), True, "draining: handing over to another front"),
    (snapshot(workers=[]), True, "no worker is serving"),
    (snapshot(workers=[{"state": "booting", "tick_age_seconds": 0.1}]), True,
     "no worker is serving"),
    (snapshot(workers=[{"state": "ready", "tick_age_seconds": WORKER_TICK_LIMIT}]), True,
     "no worker is serving"),
    (snapshot(members=[]), True, "no members"),
    (snapshot(members=[member(0), member(0)]), True, "no eligible member"),
    (snapshot(heartbeat_silence_seconds=3.0), True,
     "no heartbeat accepted for 3.0s (max_age 3s): is the heartbeat socket receiving?"),
])
def test_unhealthy_with_a_reason(data: dict[str, Any], alive: bool, reason: str) -> None:
    result = verdict(data, max_age=3, master_alive=alive)
    assert not result.ok
    assert result.reason == reason


def test_a_worker_whose_process_is_gone_does_not_count_however_fresh_its_tick() -> None:
    workers = [{"state": "ready", "tick_age_seconds": 0.1, "pid": 101},
               {"state": "ready", "tick_age_seconds": 0.1, "pid": 102}]
    assert verdict(snapshot(workers=workers), 3, live_pids={102}).line.startswith(
        "healthy: 1 workers")
    result = verdict(snapshot(workers=workers), 3, live_pids=set())
    assert result.reason == "no worker is serving"


def test_a_worker_that_has_not_ticked_yet_is_serving() -> None:
    assert verdict(snapshot(workers=[{"state": "ready", "tick_age_seconds": None}]), 3).ok


def pools(**members: list[int]) -> list[dict[str, Any]]:
    return [{"name": name, "members": [member(w) for w in weights]}
            for name, weights in members.items()]


def test_every_pool_needs_an_eligible_member() -> None:
    ok = snapshot(members=[member(1), member(2)])
    ok["pools"] = pools(web=[1], api=[0, 2])
    assert verdict(ok, 3).ok
    bad = snapshot(members=[member(1), member(2)])
    bad["pools"] = pools(web=[1], api=[0], img=[0, 0])
    assert verdict(bad, 3).reason == "no eligible member in pool api, img"


def test_the_silence_check_precedes_the_members_it_would_leave_stale() -> None:
    # A deaf heartbeat socket is named as the cause, not its symptom (everyone stale).
    data = snapshot(members=[member(0)], heartbeat_silence_seconds=12.0)
    assert verdict(data, 10).reason.startswith("no heartbeat accepted for 12.0s")


def test_http_response_codes_and_methods() -> None:
    good, bad = verdict(snapshot(), 3), verdict(snapshot(workers=[]), 3)
    assert http_response(good, b"GET").startswith(b"HTTP/1.1 200 OK\r\n")
    assert http_response(good, b"GET").endswith(b"\r\n\r\nhealthy: 1 workers, 1 of 2 members "
                                                b"usable\n")
    response = http_response(bad, b"GET")
    assert response.startswith(b"HTTP/1.1 503 ") and response.endswith(b"no worker is serving\n")
    assert http_response(bad, b"HEAD").endswith(b"\r\n\r\n")
    assert http_response(good, b"POST").startswith(b"HTTP/1.1 405 ")
