"""`[proxy] resolve_interval` with a real `hbfork run` and the system's resolver: hbfork runs in
a private mount namespace whose /etc/hosts is a file this test rewrites, so a member's host
name moves from one address to another (and stops resolving) under a running front."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Process, Proxy, free_port, spread, wait_until

NAME = "hbfork-member"
OLD_IP, NEW_IP = "127.0.0.83", "127.0.0.84"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare (a private /etc/hosts)")


class _WithOwnHosts(Process):
    """Runs its command in a new mount namespace with `hosts` bound over /etc/hosts (the pid
    is still the command's own: unshare and sh exec it)."""

    hosts: Path

    def __init__(self, args: list[str], log: Path, cwd: Path | None = None) -> None:
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        super().__init__(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          script, str(self.hosts), *args], log, cwd)


class NamedProxy(Proxy, _WithOwnHosts):
    def __init__(self, tmp: Path, hosts: Path, **sections: Any) -> None:
        self.hosts = hosts
        super().__init__(tmp, [], **sections)


def _set_hosts(path: Path, ip: str | None) -> None:
    """Rewrite in place (the bind mount holds the inode)."""
    with open(path, "w") as handle:
        handle.write("127.0.0.1 localhost\n" + (f"{ip} {NAME}\n" if ip else ""))


def _port_free_on_both() -> int:
    for _ in range(50):
        port = free_port(OLD_IP)
        with socket.socket() as probe:
            try:
                probe.bind((NEW_IP, port))
            except OSError:
                continue
        return port
    raise AssertionError("no port free on both addresses")


def test_a_member_name_that_moves_is_followed_and_a_failure_keeps_it(cluster, tmp_path):
    hosts = tmp_path / "hosts"
    _set_hosts(hosts, OLD_IP)
    port = _port_free_on_both()
    home = tmp_path / "named"
    home.mkdir()
    proxy = NamedProxy(home, hosts, proxy={"resolve_interval": 1},
                       pool=[{"name": "default", "members": [f"{NAME}:{port}"]}])
    cluster.processes.append(proxy)
    cluster.segments.append(proxy.segment())
    proxy.wait_ready()
    old = cluster.backend("old", 10, heartbeat=proxy.heartbeat_address, ip=OLD_IP, port=port)
    new = cluster.backend("new", 10, heartbeat=proxy.heartbeat_address, ip=NEW_IP, port=port)
    proxy.wait_eligible(old.address)
    assert spread(proxy.url, 10) == {"old": 10}
    assert proxy.member(old.address)["name"] == NAME

    _set_hosts(hosts, NEW_IP)
    wait_until(lambda: {m["address"] for m in proxy.status()["members"]} == {new.address}, 15,
               message="the member to move to the name's new address")
    proxy.wait_eligible(new.address)
    assert spread(proxy.url, 10) == {"new": 10}
    assert f"{NAME} -> {NEW_IP} (was {OLD_IP})" in proxy.output()

    _set_hosts(hosts, None)  # the name stops resolving: its last address stays
    wait_until(lambda: "cannot resolve member host name" in proxy.output(), 10,
               message="the failure to be logged")
    reloads = proxy.output().count("reloading")
    _holds(lambda: proxy.output().count("cannot resolve member host name") == 1 and
           proxy.output().count("reloading") == reloads, 3.5)  # said once, nothing reloaded
    assert {m["address"] for m in proxy.status()["members"]} == {new.address}
    assert spread(proxy.url, 10) == {"new": 10}

    _set_hosts(hosts, NEW_IP)  # back, same address: said, and no reload
    wait_until(lambda: "resolves again" in proxy.output(), 10, message="the recovery")
    assert proxy.output().count("reloading") == reloads


def _holds(predicate: Callable[[], bool], seconds: float) -> None:
    """`predicate` stays true for `seconds` (several resolve intervals), polled throughout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate()
        time.sleep(0.1)
    assert predicate()
