"""Real Tomcat 10 (Debian's tomcat10) behind hbfork, beating over HTTP as it beats to Apache.

Each Tomcat is a private instance (CATALINA_HOME=/usr/share/tomcat10, its own CATALINA_BASE in
a scratch directory, the server.xml of docs/tomcat.md) whose
`org.apache.catalina.ha.backend.HeartbeatListener` has `proxyList` set: its TcpSender POSTs
`v=1&ready=N&busy=M&port=P` to hbfork's client listener at /HeartbeatListener, over a
kept-alive HTTP/1.0 connection bound to the connector's own address (the listener's `host`),
once per `periodicEventDelay`. tomcat1 has an HTTP connector and beats its HTTP port;
tomcat2 has an AJP and an HTTP connector and beats the AJP port (8009's role), so hbfork
must match its beats to the HTTP member by IP alone.

The JVMs start slowly: one pair serves the whole module, and the test that kills one runs last.
Under CI=true a missing tomcat10 fails instead of skipping.
"""

from __future__ import annotations

import signal
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Process, Proxy, free_port, get, wait_until
from tests.interop.tomcat_kit import STARTUP, prepare_base, require_tomcat

pytestmark = pytest.mark.tomcat

BEAT_PATH = "/HeartbeatListener"
IPS = ("127.0.0.81", "127.0.0.82")
MAX_THREADS = 20


def server_xml(ip: str, http_port: int, proxy: str, ajp_port: int | None) -> str:
    """The server.xml of docs/tomcat.md, for one private instance."""
    beat_port = ajp_port if ajp_port is not None else http_port
    ajp = textwrap.indent(textwrap.dedent(f"""\
        <Connector protocol="AJP/1.3" address="{ip}" port="{ajp_port}"
                   secretRequired="false" maxThreads="{MAX_THREADS}"/>
        """), "    ") if ajp_port is not None else ""
    return textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <Server port="-1" shutdown="SHUTDOWN" periodicEventDelay="1">
          <Listener className="org.apache.catalina.ha.backend.HeartbeatListener"
                    host="{ip}" port="{beat_port}"
                    proxyList="{proxy}" proxyURL="{BEAT_PATH}"/>
          <Service name="Catalina">
            <Connector protocol="HTTP/1.1" address="{ip}" port="{http_port}"
                       maxThreads="{MAX_THREADS}" connectionTimeout="20000"/>
        """) + ajp + textwrap.dedent("""\
            <Engine name="Catalina" defaultHost="localhost">
              <Host name="localhost" appBase="webapps" unpackWARs="false"
                    autoDeploy="false"/>
            </Engine>
          </Service>
        </Server>
        """)


class Tomcat(Process):
    """One private Tomcat: its own CATALINA_BASE, run in the foreground by pid (the JVM).
    Made first (its ports are needed for hbfork's config), started once hbfork listens."""

    def __init__(self, base: Path, name: str, ip: str, ajp: bool) -> None:
        self.name, self.ip, self.base = name, ip, base
        self.http_port = free_port(ip)
        self.ajp_port = free_port(ip) if ajp else None

    def start(self, proxy: str) -> None:
        args = prepare_base(self.base, self.name,
                            server_xml(self.ip, self.http_port, proxy, self.ajp_port))
        base = self.base
        super().__init__(args, base / "tomcat.log", cwd=base)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.http_port}"

    def answers(self) -> bool:
        if not self.alive():
            raise AssertionError(f"Tomcat {self.name} exited:\n{self.output()[-4000:]}")
        try:
            response, body, conn = get(f"http://{self.address}", "/", timeout=2)
        except OSError:
            return False
        conn.close()
        return response.status == 200 and body == f"{self.name}\n".encode()


class Pair:
    def __init__(self, proxy: Proxy, tomcats: list[Tomcat]) -> None:
        self.proxy, self.tomcats = proxy, tomcats


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """hbfork (heartbeats by POST on its client listener) and two Tomcats beating to it."""
    require_tomcat()
    tmp = tmp_path_factory.mktemp("tomcat")
    tomcats = [Tomcat(tmp / "tomcat1", "tomcat1", IPS[0], ajp=False),
               Tomcat(tmp / "tomcat2", "tomcat2", IPS[1], ajp=True)]
    home = tmp / "hbfork"
    home.mkdir()
    started: list[Process] = []
    try:
        proxy = Proxy(home, [{"address": t.address} for t in tomcats], proxy={"workers": 2},
                      heartbeat={"http_path": BEAT_PATH, "startup_grace": 0, "max_age": 5,
                                 "forget_after": 30, "allow": ["127.0.0.0/8"]},
                      http={"connect_timeout": 2, "retries": 2})
        started.append(proxy)
        proxy.wait_ready()
        for tomcat in tomcats:
            tomcat.start(f"127.0.0.1:{proxy.port}")  # TcpSender posts to the client port
            started.append(tomcat)
        for tomcat in tomcats:
            wait_until(tomcat.answers, STARTUP, interval=0.5,
                       message=f"Tomcat {tomcat.name} to serve")
        yield Pair(proxy, tomcats)
    finally:
        for proc in reversed(started):
            proc.stop()


def test_tcp_sender_beats_are_received_and_the_member_used(pair: Pair) -> None:
    proxy, (tomcat1, _) = pair.proxy, pair.tomcats
    proxy.wait_eligible(tomcat1.address, timeout=30)
    member = proxy.member(tomcat1.address)
    assert 0 < member["ready"] <= MAX_THREADS
    assert proxy.status()["heartbeats"].get("accepted", 0) >= 1
    # Tomcat's own log says nothing of a failed send (a non-200 answer would be logged).
    assert "tcpSender" not in tomcat1.output() and "Unable to send" not in tomcat1.output()
    seen = _bodies(proxy, 40)
    assert seen["tomcat1\n"] > 0, seen


def test_a_tomcat_beating_its_ajp_port_is_matched_by_ip_alone(pair: Pair) -> None:
    proxy, (_, tomcat2) = pair.proxy, pair.tomcats
    assert tomcat2.ajp_port is not None
    assert f'port="{tomcat2.ajp_port}"' in (tomcat2.base / "conf" / "server.xml").read_text()
    proxy.wait_eligible(tomcat2.address, timeout=30)
    assert proxy.member(tomcat2.address)["ready"] > 0
    assert f"heartbeats from {tomcat2.ip} say port={tomcat2.ajp_port}" in proxy.output()
    assert "matched by IP alone" in proxy.output()
    wait_until(lambda: _bodies(proxy, 40)["tomcat2\n"] > 0, 10,
               message="tomcat2 to get requests")


def test_a_tomcat_killed_under_load_costs_no_client_errors(pair: Pair) -> None:
    """Runs last in the module: tomcat2 does not come back."""
    proxy, (tomcat1, tomcat2) = pair.proxy, pair.tomcats
    proxy.wait_eligible(tomcat1.address, tomcat2.address, timeout=30)
    stop = threading.Event()
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        conn = None
        while not stop.is_set():
            try:
                response, body, conn = get(proxy.url, "/", conn=conn, timeout=10)
                outcome = body.decode() if response.status == 200 else f"HTTP {response.status}"
            except OSError as err:
                outcome, conn = f"error {err!r}", None
            with lock:
                results[outcome] += 1

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: results["tomcat2\n"] >= 20 and results["tomcat1\n"] >= 20, 20,
                   message="load to reach both Tomcats")
        tomcat2.send_signal(signal.SIGKILL)
        tomcat2.proc.wait(10)
        killed_at = sum(results.values())
        wait_until(lambda: sum(results.values()) >= killed_at + 300, 30,
                   message="load to go on after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    errors = {k: v for k, v in results.items() if k not in ("tomcat1\n", "tomcat2\n")}
    assert errors == {}, (errors, results)
    late = _bodies(proxy, 30)
    assert late == Counter({"tomcat1\n": 30}), late


def _bodies(proxy: Proxy, requests: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    conn = None
    for _ in range(requests):
        response, body, conn = get(proxy.url, "/", conn=conn)
        seen[body.decode() if response.status == 200 else f"HTTP {response.status}"] += 1
    if conn is not None:
        conn.close()
    return seen


def test_server_xml_of_the_docs_is_the_tested_one() -> None:
    """docs/tomcat.md shows the server.xml these tests run (with example addresses)."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "tomcat.md").read_text()
    shown = server_xml("10.0.0.11", 8080, "10.0.0.1:80", 8009)
    assert shown.strip() in docs
