"""AJP pools with real `hbfork run` in front of tests.ajp_server (a small AJP/1.3 container):
the FORWARD_REQUEST's fields, bodies both ways, reuse of member connections, CPING, sticky
sessions, and failures (a member that is not AJP, a member that is gone)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.ajp_server import AjpServer
from tests.integration.harness import HBFORK, Process, get, wait_until


@pytest.fixture
def servers() -> Iterator[list[AjpServer]]:
    started = [AjpServer("127.0.0.2", secret="s3cret", route="node1"),
               AjpServer("127.0.0.3", secret="s3cret", route="node2")]
    yield started
    for server in started:
        server.stop()


@pytest.fixture(params=["fast path", "general path"], autouse=True)
def http_path(request, cluster) -> bool:
    """Every test here runs twice: with the fast path on (common GETs take the AJP fast path,
    hbfork.proxy.http.ajp_fast; the rest falls back) and with [http] fast_path = false."""
    fast = request.param == "fast path"
    cluster.http_defaults["fast_path"] = fast
    return fast


def start(cluster, servers, sections=None, **pool):
    members = [{"address": s.address, "route": s.route} for s in servers]
    proxy = cluster.proxy([], pool=[{"name": "tomcat", "protocol": "ajp",
                                     "ajp_secret": "s3cret", "stickysession": "JSESSIONID",
                                     "member": members, **pool}],
                          route=[{"path": "/", "pool": "tomcat"}], **(sections or {}))
    for server in servers:
        beat = Process([*HBFORK, "beat", "--to", proxy.heartbeat_address, "--from", server.ip,
                        "--port", str(server.port), "--ready", "10", "--interval", "0.2"],
                       cluster.tmp / f"beat-{server.ip}.log")
        cluster.processes.append(beat)
    proxy.wait_eligible(*(s.address for s in servers))
    return proxy


def answer(body: bytes) -> dict:
    return json.loads(body)


def test_get_post_and_reuse(cluster, servers):
    proxy = start(cluster, servers)
    response, body, conn = get(proxy.url, "/app/x?a=1&b=2",
                               headers={"Host": "www.example.com", "X-Custom": "v",
                                        "Connection": "keep-alive, X-Hop", "X-Hop": "no"})
    seen = answer(body)
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    assert seen["method"] == "GET" and seen["uri"] == "/app/x" and seen["protocol"] == "HTTP/1.1"
    assert seen["attributes"]["5"] == "a=1&b=2"  # the query string attribute
    assert seen["attributes"]["12"] == "s3cret"
    assert int(seen["attributes"]["AJP_REMOTE_PORT"]) == conn.sock.getsockname()[1]
    assert seen["remote_addr"] == "127.0.0.1" and seen["ssl"] is False
    assert seen["server_name"] == "www.example.com"
    assert seen["headers"]["x-custom"] == "v" and "x-hop" not in seen["headers"]
    assert "connection" not in seen["headers"]
    first = (seen["route"], seen["conn"])
    # a POST with a body larger than a packet: the container asks for it chunk by chunk
    data = bytes(range(256)) * 100
    response, body, conn = get(proxy.url, "/echo", conn=conn, method="POST", body=data,
                               headers={"Content-Type": "application/octet-stream"})
    seen = answer(body)
    assert response.status == 200 and seen["body_length"] == len(data)
    assert seen["headers"]["content-length"] == str(len(data))
    # chunked request body: de-chunked, sent only as asked, ended with an empty packet
    conn.request("PUT", "/echo", body=iter([b"hello ", b"world"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    seen = answer(response.read())
    assert response.status == 200 and seen["body_length"] == 11 and seen["body"] == "hello world"
    assert seen["headers"]["transfer-encoding"] == "chunked"  # as mod_proxy_ajp sends it
    # no Content-Length from the container: chunked to the client
    response, body, conn = get(proxy.url, "/stream", conn=conn)
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert answer(body)["uri"] == "/stream"
    response, body, conn = get(proxy.url, "/echo", conn=conn, method="HEAD")
    assert response.status == 200 and body == b""
    # the member connections were reused: few connections for many requests
    served = []
    for _ in range(20):
        response, body, conn = get(proxy.url, "/x", conn=conn)
        seen = answer(body)
        served.append((seen["route"], seen["conn"], seen["served"]))
    assert max(s for _, _, s in served) > 3
    assert sum(s.connections for s in servers) <= 8, served
    assert first[0] in ("node1", "node2")
    conn.close()


def read_raw(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response as the client's socket received it: (head, body), by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        part = sock.recv(65536)
        assert part
        body += part
    assert len(body) == length
    return head + b"\r\n\r\n", body


def test_common_gets_answer_the_same_on_either_path(cluster, servers, http_path):
    proxy = start(cluster, servers[:1])
    before = proxy.status()["totals"]["fast_path"]
    with socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))) as sock:
        for number in range(6):
            last = number == 5
            sock.sendall(b"GET /x?n=%d HTTP/1.1\r\nHost: front\r\nUser-Agent: t\r\n%s\r\n"
                         % (number, b"Connection: close\r\n" if last else b""))
            head, body = read_raw(sock)
            seen = answer(body)
            # the container's head as it sent it (reason, order, case), our Connection
            assert head == (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\nSet-Cookie: JSESSIONID=abc.node1; Path=/\r\n"
                            b"%s\r\n" % (len(body), b"Connection: close\r\n" if last else b""))
            assert seen["uri"] == "/x" and seen["attributes"]["5"] == f"n={number}"
            assert seen["headers"] == {"host": "front", "user-agent": "t"}
            assert seen["remote_addr"] == "127.0.0.1" and seen["server_name"] == "front"
            assert int(seen["attributes"]["AJP_REMOTE_PORT"]) == sock.getsockname()[1]
            assert seen["attributes"]["12"] == "s3cret"
        assert sock.recv(1) == b""  # closed after the answer to `Connection: close`
    assert servers[0].connections == 1 and seen["served"] == 6  # one member connection
    # The first request dialed (the general path's); the others found it in the pool.
    if http_path:
        wait_until(lambda: proxy.status()["totals"]["fast_path"] - before >= 5, 5,
                   message="the fast path to be counted")
    else:
        assert proxy.status()["totals"]["fast_path"] == before


def test_an_answer_written_in_pieces(cluster, servers, http_path):
    """A container that writes its head first (Tomcat may) and the rest later: the fast path
    holds the beginning and answers once it is whole; the general path relays as it comes."""
    proxy = start(cluster, servers[:1])
    response, body, conn = get(proxy.url, "/x")  # dials: the general path's
    before = proxy.status()["totals"]["fast_path"]
    for _ in range(3):
        response, body, conn = get(proxy.url, "/split", conn=conn)
        assert response.status == 200 and answer(body)["uri"] == "/split"
        assert response.getheader("Content-Length") == str(len(body))
    conn.close()
    assert servers[0].connections == 1  # reused throughout
    expected = 3 if http_path else 0
    wait_until(lambda: proxy.status()["totals"]["fast_path"] - before == expected, 5,
               message="the pieced answers to be counted")


def test_a_connection_the_container_does_not_reuse_is_closed(cluster, servers):
    proxy = start(cluster, servers[:1])
    response, body, conn = get(proxy.url, "/close")
    assert response.status == 200 and answer(body)["served"] == 1
    response, body, conn = get(proxy.url, "/x", conn=conn)
    assert response.status == 200 and answer(body)["served"] == 1  # a fresh connection
    conn.close()


def test_cping_before_reuse(cluster, servers):
    proxy = start(cluster, servers[:1], ajp_ping=2)
    conn = None
    for _ in range(5):
        response, _body, conn = get(proxy.url, "/x", conn=conn)
        assert response.status == 200
    assert servers[0].pings >= 3
    conn.close()


def test_a_pooled_connection_without_cpong_is_replaced(cluster, servers):
    proxy = start(cluster, servers[:1], ajp_ping=0.5, retries=0)
    response, body, conn = get(proxy.url, "/x")
    assert response.status == 200 and answer(body)["conn"] == 1
    servers[0].answer_pings = False
    started = time.monotonic()
    for _ in range(3):  # on a kept connection, each goes through a CPING first
        response, body, conn = get(proxy.url, "/x", conn=conn)
        assert response.status == 200
        if answer(body)["conn"] > 1:
            break
    assert answer(body)["served"] == 1  # a fresh connection took it
    assert servers[0].pings >= 1 and time.monotonic() - started >= 0.5
    conn.close()


def test_sticky_sessions_by_jvm_route(cluster, servers):
    proxy = start(cluster, servers)
    for route in ("node1", "node2"):
        for _ in range(20):
            _response, body, conn = get(proxy.url, "/x",
                                       headers={"Cookie": f"JSESSIONID=abc.{route}"})
            assert answer(body)["route"] == route
            conn.close()


def test_wrong_secret_and_bad_members(cluster, servers):
    servers[0].secret = "other"
    proxy = start(cluster, servers[:1], retries=0)
    response, _, conn = get(proxy.url, "/x")
    assert response.status == 403  # the container's own answer
    conn.close()
    servers[0].secret = "s3cret"
    response, _, conn = get(proxy.url, "/garbage")
    assert response.status == 502
    conn.close()
    servers[0].stop()
    response, _body, conn = get(proxy.url, "/x")
    assert response.status in (502, 503)
    conn.close()


def test_ajp_and_http_pools_alternate_on_one_client_connection(cluster, servers):
    http_member = cluster.backend("web", 10, ip="127.0.0.4")
    ajp = servers[0]
    proxy = cluster.proxy([], pool=[
        {"name": "tomcat", "protocol": "ajp", "ajp_secret": "s3cret", "members": [ajp.address]},
        {"name": "web", "members": [http_member.address]}],
        route=[{"path": "/java", "pool": "tomcat"}, {"path": "/", "pool": "web"}])
    cluster.processes.append(Process(
        [*HBFORK, "beat", "--to", proxy.heartbeat_address, "--from", ajp.ip, "--port",
         str(ajp.port), "--ready", "10", "--interval", "0.2"], cluster.tmp / "beat.log"))
    cluster.processes.append(Process(
        [*HBFORK, "beat", "--to", proxy.heartbeat_address, "--from", http_member.ip, "--port",
         str(http_member.port), "--ready", "10", "--interval", "0.2"], cluster.tmp / "beat2.log"))
    proxy.wait_eligible(ajp.address, http_member.address)
    conn = None
    for number in range(30):  # the HTTP ones take the fast path, the AJP ones the general
        response, body, conn = get(proxy.url, "/java/x" if number % 3 else "/plain", conn=conn)
        assert response.status == 200
        if number % 3:
            assert answer(body)["uri"] == "/java/x"
        else:
            assert response.getheader("X-Backend") == "web"
    conn.request("POST", "/plain", body=b"x" * 100_000)
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("X-Backend") == "web"
    response.read()
    response, body, conn = get(proxy.url, "/java/echo", conn=conn, method="POST",
                               body=b"y" * 50_000)
    assert response.status == 200 and answer(body)["body_length"] == 50_000
    conn.close()
    assert ajp.connections <= 2  # one per worker at most: reused throughout
    # a body the container does not read: its answer comes, and that member connection
    # (which Tomcat would reuse) is not, since the rest of the body was never sent
    response, body, conn = get(proxy.url, "/java/x", method="POST", body=b"z" * 50_000)
    assert response.status == 200 and answer(body)["body_length"] == 0
    conn.close()
    response, body, conn = get(proxy.url, "/java/x")
    assert response.status == 200 and answer(body)["served"] >= 1
    conn.close()


def test_a_head_larger_than_the_packet_size(cluster, servers):
    big = {"Cookie": "c=" + "x" * 12_000}
    proxy = start(cluster, servers[:1])
    response, body, conn = get(proxy.url, "/x", headers=big)
    assert response.status == 431 and b"packetSize" in body  # not the member's fault
    conn.close()
    assert proxy.member(servers[0].address)["eligible"]
    cluster.stop()
    proxy = start(cluster, servers[:1], ajp_packet_size=65536)
    response, body, conn = get(proxy.url, "/x", headers=big)
    assert response.status == 200 and len(answer(body)["headers"]["cookie"]) == 12_002
    conn.close()


def test_header_rules_and_the_request_id_reach_ajp_members(cluster, servers):
    proxy = start(cluster, servers[:1], {"request_id": {"enabled": True}},
                  request_headers=["set X-Env prod", "unset X-Debug"],
                  response_headers=["set X-Frame-Options DENY"])
    response, body, conn = get(proxy.url, "/x", headers={"X-Debug": "1"})
    seen = answer(body)
    assert response.status == 200 and response.getheader("X-Frame-Options") == "DENY"
    assert seen["headers"]["x-env"] == "prod" and "x-debug" not in seen["headers"]
    assert seen["headers"]["x-request-id"] == response.getheader("X-Request-ID")
    conn.close()
