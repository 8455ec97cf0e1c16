"""hbfork on its own over real multicast, in the namespace lab (no Apache needed):
`hbfork backend` + `hbfork beat` on two hosts multicast to the group; the hbfork front on a
third host joins it and routes by what it hears."""

from __future__ import annotations

import sys

import pytest
from labkit import GROUP, Launcher, hbfork_config, wait_for

from hbfork.core.members import ELIGIBLE

pytestmark = [pytest.mark.netns]

HBFORK = [sys.executable, "-m", "hbfork"]
READY = {"b1": 10, "b2": 30}
PORT = 8081


def test_multicast_heartbeats_route_traffic(launcher: Launcher) -> None:
    lab = launcher.lab
    members = []
    for host, ready in READY.items():
        address = lab.host(host).address
        members.append(f"{address}:{PORT}")
        launcher.process(host, f"backend-{host}", [
            *HBFORK, "backend", "--listen", f"{address}:{PORT}", "--name", host])
        launcher.process(host, f"beat-{host}", [
            *HBFORK, "beat", "--to", GROUP, "--from", address, "--port", str(PORT),
            "--ready", str(ready), "--interval", "0.3"])
    listen = f"{lab.host('front').address}:8080"
    front = launcher.hbfork("front", "hbfork-front",
                            lambda d: hbfork_config(d, listen, members, mode="http"))

    def all_eligible() -> dict[str, int] | None:
        found = front.members()
        records = [found.get(m) for m in members]
        if all(r is not None and r.reason == ELIGIBLE for r in records):
            return {m: r.ready for m, r in zip(members, records, strict=True)}
        return None

    ready = wait_for(all_eligible, 10, lambda: f"members: {front.members()}\n{front.output()}")
    assert sorted(ready.values()) == [10, 30]
    result = launcher.client("front", "fetch", f"http://{listen}/", "400")
    assert result["errors"] == {} and result["statuses"] == {"200": 400}
    share_b2 = result["backends"].get("b2", 0) / 400
    assert abs(share_b2 - 0.75) < 0.08, result
