"""Real Tomcat 10 beating over multicast, in the namespace lab: two Tomcats on two lab hosts,
each with `org.apache.catalina.ha.backend.HeartbeatListener` and no `proxyList` (so its
MultiCastSender sends `v=1&ready=N&busy=M&port=P` to the group every second, as it would to
Apache's mod_heartmonitor); the hbfork front on a third host joins the group and balances over
them. Multicast never leaves the lab's namespaces."""

from __future__ import annotations

import textwrap

import pytest
from labkit import GROUP, Launcher, hbfork_config, wait_for

from hbfork.core.members import ELIGIBLE
from tests.interop.tomcat_kit import STARTUP, prepare_base, require_tomcat

pytestmark = [pytest.mark.netns, pytest.mark.tomcat]

PORT = 8080
MAX_THREADS = 12


def multicast_server_xml(address: str) -> str:
    group, group_port = GROUP.rsplit(":", 1)
    return textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <Server port="-1" shutdown="SHUTDOWN" periodicEventDelay="1">
          <Listener className="org.apache.catalina.ha.backend.HeartbeatListener"
                    host="{address}" port="{PORT}" group="{group}"
                    multiport="{group_port}" ttl="4"/>
          <Service name="Catalina">
            <Connector protocol="HTTP/1.1" address="{address}" port="{PORT}"
                       maxThreads="{MAX_THREADS}" connectionTimeout="20000"/>
            <Engine name="Catalina" defaultHost="localhost">
              <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
            </Engine>
          </Service>
        </Server>
        """)


def test_tomcat_multicast_beats_route_traffic(launcher: Launcher) -> None:
    require_tomcat()
    lab = launcher.lab
    members = []
    for host in ("b1", "b2"):
        address = lab.host(host).address
        members.append(f"{address}:{PORT}")
        base = launcher.workdir / f"tomcat-{host}"
        launcher.process(host, f"tomcat-{host}", prepare_base(base, host,
                                                              multicast_server_xml(address)))
    listen = f"{lab.host('front').address}:8080"
    front = launcher.hbfork("front", "hbfork-front",
                            lambda d: hbfork_config(d, listen, members, mode="http"))

    def all_eligible() -> dict[str, int] | None:
        found = front.members()
        records = [found.get(m) for m in members]
        if all(r is not None and r.reason == ELIGIBLE for r in records):
            return {m: r.ready for m, r in zip(members, records, strict=True)}
        return None

    # The JVMs start slowly; a member is eligible once its Tomcat's beats arrive.
    ready = wait_for(all_eligible, STARTUP, lambda: f"members: {front.members()}\n"
                     f"{launcher.output()}", interval=0.5)
    assert all(0 < r <= MAX_THREADS for r in ready.values()), ready
    result = launcher.client("front", "fetch", f"http://{listen}/", "200", timeout=120)
    assert result["errors"] == {} and result["statuses"] == {"200": 200}, result
    assert set(result["backends"]) == {"b1", "b2"}, result
