"""The namespace lab itself: multicast floods the bridge, the root namespace is untouched, and
`down` leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys

import pytest
from labkit import GROUP, LABCLIENT, Launcher, netlab, stop_process, wait_for

pytestmark = pytest.mark.netns


def test_hosts_have_addresses_and_a_multicast_route(lab: netlab.Lab) -> None:
    for host in lab.hosts.values():
        addresses = lab.run(host.name, ["ip", "-brief", "addr", "show", netlab.HOST_IFACE])
        assert f"{host.address}/24" in addresses.stdout, addresses
        routes = lab.run(host.name, ["ip", "route", "show", netlab.MULTICAST_ROUTE])
        assert netlab.HOST_IFACE in routes.stdout, routes
    assert [h.address for h in lab.backends] == ["10.213.0.11", "10.213.0.12", "10.213.0.13"]


def test_root_namespace_is_untouched(lab: netlab.Lab) -> None:
    links = subprocess.run(["ip", "-brief", "link"], capture_output=True, text=True).stdout
    names = {line.split()[0].split("@")[0] for line in links.splitlines() if line.strip()}
    assert not names & {host.port_name for host in lab.hosts.values()}


def test_multicast_from_one_host_reaches_all_others(lab: netlab.Lab,
                                                    launcher: Launcher) -> None:
    listeners = {name: lab.popen(name, [sys.executable, str(LABCLIENT), "sniff", GROUP, "2"],
                                 stdout=subprocess.PIPE, text=True)
                 for name in ("front", "b2", "b3")}
    try:
        # Sends for longer than the listeners listen, so their windows overlap it.
        launcher.client("b1", "send", GROUP, "v=1&ready=1&busy=0", "30", "0.1")
        for name, proc in listeners.items():
            out, _ = proc.communicate(timeout=10)
            assert lab.host("b1").address in out, f"{name} heard nothing: {out}"
    finally:
        for proc in listeners.values():
            stop_process(proc)


def test_down_stops_processes_and_removes_namespaces() -> None:
    if netlab.unavailable_reason():
        pytest.skip(netlab.unavailable_reason() or "")
    prefix = netlab.unique_prefix("hbd")
    lab = netlab.Lab(prefix=prefix, backends=1).up()
    try:
        proc = lab.popen("b1", ["sleep", "60"])
        wait_for(lambda: proc.pid in netlab.namespace_pids(f"{prefix}-b1"), 5,
                 "sleep did not show up in the namespace")
        assert set(netlab.lab_namespaces(prefix)) == {f"{prefix}-br", f"{prefix}-front",
                                                      f"{prefix}-b1"}
        assert netlab.down(prefix)
        assert proc.wait(5) is not None
        assert netlab.lab_namespaces(prefix) == []
        assert netlab.down(prefix) == []  # idempotent
    finally:
        lab.down()
