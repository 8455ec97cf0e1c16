"""hbfork in front of real Tomcat 10 over AJP/1.3 (Debian's tomcat10, a private CATALINA_BASE per
Tomcat, secretRequired on the connector, jvmRoute node1/node2): GET, POST bodies (Content-Length
and chunked), a response without Content-Length, the wrong secret refused by Tomcat, and
JSESSIONID sticky sessions across two Tomcats.

Skips when tomcat10 is missing; fails instead under CI=true (the real server must be there)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomcat_ajp_kit as tomcat_kit
from tomcat_ajp_kit import SECRET, Tomcat

from tests.integration.conftest import Cluster
from tests.integration.harness import HBFORK, Process, free_port, get

pytestmark = pytest.mark.tomcat

IPS = ("127.0.0.71", "127.0.0.72")


def fields(body: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def tomcats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Tomcat]]:
    reason = tomcat_kit.unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"real Tomcat required under CI: {reason}")
        pytest.skip(f"real Tomcat unavailable: {reason}")
    root = tmp_path_factory.mktemp("tomcat")
    classes = tomcat_kit.build_servlet(root / "servlet")
    started: list[Tomcat] = []
    try:
        for number, ip in enumerate(IPS, 1):
            started.append(Tomcat(root / f"node{number}", classes, ip, free_port(ip),
                                  f"node{number}"))
        for tomcat in started:
            tomcat.wait_ready()
        yield started
    finally:
        for tomcat in started:
            tomcat.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def front(cluster: Cluster, tomcats: list[Tomcat], secret: str = SECRET):
    members = [{"address": t.address, "route": t.route} for t in tomcats]
    proxy = cluster.proxy([], pool=[{"name": "tomcat", "protocol": "ajp", "ajp_secret": secret,
                                     "ajp_ping": 2, "stickysession": "JSESSIONID|jsessionid",
                                     "member": members}],
                          route=[{"path": "/", "pool": "tomcat"}])
    for tomcat in tomcats:
        cluster.processes.append(Process(
            [*HBFORK, "beat", "--to", proxy.heartbeat_address, "--from", tomcat.ip, "--port",
             str(tomcat.port), "--ready", "20", "--interval", "0.2"],
            cluster.tmp / f"beat-{tomcat.route}.log"))
    proxy.wait_eligible(*(t.address for t in tomcats))
    return proxy


def test_get_and_post_through_ajp(cluster, tomcats):
    proxy = front(cluster, tomcats)
    response, body, conn = get(proxy.url, "/app/page?a=1&b=x%20y",
                               headers={"Host": "shop.example.com"})
    seen = fields(body)
    assert response.status == 200, body
    assert seen["method"] == "GET" and seen["uri"] == "/app/page"
    assert seen["query"] == "a=1&b=x%20y" and seen["host"] == "shop.example.com"
    assert seen["remote"] == "127.0.0.1" and seen["secure"] == "false"
    assert int(seen["port"]) == conn.sock.getsockname()[1]  # AJP_REMOTE_PORT
    data = os.urandom(300_000)
    response, body, conn = get(proxy.url, "/upload", conn=conn, method="POST", body=data,
                               headers={"Content-Type": "application/octet-stream"})
    seen = fields(body)
    assert response.status == 200 and int(seen["body"]) == len(data)
    assert int(seen["crc"]) == zlib.crc32(data)
    conn.request("PUT", "/chunked", body=iter([data[:70_000], data[70_000:100_000]]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    seen = fields(response.read())
    assert response.status == 200 and int(seen["body"]) == 100_000
    assert int(seen["crc"]) == zlib.crc32(data[:100_000])
    response, body, conn = get(proxy.url, "/s?stream=1", conn=conn)
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert fields(body)["uri"] == "/s"
    for _ in range(50):  # keep-alive both sides, CPING before each reuse
        response, body, conn = get(proxy.url, "/again", conn=conn)
        assert response.status == 200
    conn.close()


def test_sticky_sessions_on_two_tomcats(cluster, tomcats):
    proxy = front(cluster, tomcats)
    sessions = {}
    for _ in range(20):
        response, body, conn = get(proxy.url, "/login?session=1")
        seen = fields(body)
        cookie = response.getheader("Set-Cookie")
        assert cookie and cookie.startswith("JSESSIONID=")
        sessions[seen["name"]] = seen["session"]
        conn.close()
        if len(sessions) == 2:
            break
    assert set(sessions) == {"node1", "node2"}
    for node, session in sessions.items():
        assert session.endswith("." + node)
        for _ in range(25):
            response, body, conn = get(proxy.url, "/cart",
                                       headers={"Cookie": f"JSESSIONID={session}"})
            seen = fields(body)
            assert seen["name"] == node and seen["session"] == session
            conn.close()
        response, body, conn = get(proxy.url, f"/cart;jsessionid={session}")
        assert fields(body)["name"] == node
        conn.close()


def test_the_wrong_secret_is_refused_by_tomcat(cluster, tomcats):
    proxy = front(cluster, tomcats[:1], secret="wrong")
    response, _, conn = get(proxy.url, "/x")
    assert response.status == 403
    conn.close()
